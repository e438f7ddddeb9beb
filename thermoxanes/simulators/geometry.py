"""3D geometry of secondary particles: shape, central hole, grains, cracks, protrusions.

Every particle lives in its own cubic voxel box (voxel size ``voxel_um``). Time-dependent
features are encoded as *level* fields so that the state of the whole particle follows
from a few scalars:

- ``crack_level``: a voxel of NMC is a crack (void) once the crack-opening state ``c``
  reaches its level; cracks are radial planes whose width grows with ``c`` and whose tips
  advance outward, and later cracks nucleate at higher levels.
- ``protrusion_level``: a voxel outside the particle holds Li compound (Li2CO3/LiOH/Li2O,
  no Ni edge) once the protrusion-growth state ``p`` reaches its level: lumps (NMC622,
  seed 000 Fig. 4) or whiskers (NMC442, Fig. 6) rooted on the surface.
- ``density``: NMC solid fraction (0 outside and in the hole, <1 at grain boundaries).
- ``depth_um``: distance below the (outer or inner) surface, for surface reactions.

Grains are Voronoi cells: isotropic for "gravel", radially elongated for "rod".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class ParticleSpec:
    """Geometry of one secondary particle (lengths in um, position relative to the axis).

    ``center_um`` is (x, y, z): x across the detector, y up the detector (rows), z along
    the beam; the rotation axis is the y axis through x = z = 0.
    """

    center_um: tuple[float, float, float]
    radius_um: float
    hole_radius_um: float = 0.0
    #: Inner radius of a hollow shell (um); 0 for a dense particle.
    shell_inner_um: float = 0.0
    grain: str = "gravel"
    grain_size_um: float = 0.6
    n_cracks: int = 8
    #: Half-width of an initial crack (um) at crack state c = 1.
    crack_half_width_um: float = 0.07
    protrusion: str = "lump"
    n_protrusions: int = 6
    protrusion_size_um: float = 1.0
    #: Relative roughness of the outer surface.
    roughness: float = 0.04


@dataclass
class ParticleVolume:
    """Voxel fields of one particle; arrays are (z, y, x) float32 of side ``n``."""

    spec: ParticleSpec
    voxel_um: float
    density: np.ndarray
    crack_level: np.ndarray
    protrusion_level: np.ndarray
    depth_um: np.ndarray
    grain_id: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.density.shape[0]

    def solid(self, crack_state: float) -> np.ndarray:
        """Boolean NMC mask (z, y, x) at crack state ``crack_state``."""
        return (self.density > 0) & (self.crack_level > crack_state)

    def li_compound(self, protrusion_state: float) -> np.ndarray:
        """Boolean Li-compound mask (z, y, x) at protrusion state ``protrusion_state``."""
        return self.protrusion_level <= protrusion_state


def correlated_field(
    shape: tuple[int, ...], length_vox: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian random field, zero mean, unit variance, correlation length ``length_vox``."""
    f = gaussian_filter(rng.standard_normal(shape), max(length_vox, 0.5), mode="wrap")
    f -= f.mean()
    sd = f.std()
    return (f / (sd if sd > 0 else 1.0)).astype(np.float32)


def _unit_vectors(k: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((k, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build_particle(
    spec: ParticleSpec, voxel_um: float, rng: np.random.Generator, margin_um: float = 0.0
) -> ParticleVolume:
    """Voxelize one particle with its grains, cracks and protrusion sites.

    Parameters
    ----------
    spec : ParticleSpec
    voxel_um : float
        Voxel edge (um).
    rng : numpy.random.Generator
    margin_um : float
        Extra room around the particle (um) for protrusions; defaults to their full size.
    """
    r_um = spec.radius_um
    reach_um = margin_um or (spec.protrusion_size_um if spec.n_protrusions else 0.0)
    n = int(np.ceil(2 * (r_um * (1 + 2 * spec.roughness) + reach_um) / voxel_um)) + 2
    c = (n - 1) / 2.0
    ax = (np.arange(n, dtype=np.float32) - c) * voxel_um
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    # Outer surface with smooth roughness: level 1 on the surface.
    rough = correlated_field((n, n, n), 1.2 / voxel_um, rng) * spec.roughness
    level = r / r_um + rough
    inside = level <= 1.0
    if spec.hole_radius_um > 0:
        inside &= r > spec.hole_radius_um * (1 + 0.5 * rough)
    if spec.shell_inner_um > 0:
        inside &= r > spec.shell_inner_um * (1 + 0.5 * rough)
    depth = np.where(inside, (1.0 - level) * r_um, 0.0)
    if spec.shell_inner_um > 0:
        depth = np.minimum(depth, np.where(inside, r - spec.shell_inner_um, 0.0))
    depth = np.maximum(depth, 0.0).astype(np.float32)

    # Grains (Voronoi), isotropic or radially elongated.
    pts = np.stack([x[inside], y[inside], z[inside]], axis=1)
    volume_um3 = pts.shape[0] * voxel_um**3
    n_grains = max(8, int(volume_um3 / spec.grain_size_um**3))
    seeds = pts[rng.integers(0, pts.shape[0], n_grains)] + rng.uniform(
        -0.5, 0.5, (n_grains, 3)
    ) * voxel_um
    if spec.grain == "rod":
        # Radially packed rods: cells elongated along the radius (anisotropic metric).
        def embed(p: np.ndarray) -> np.ndarray:
            rr = np.linalg.norm(p, axis=1, keepdims=True) + 1e-6
            return np.concatenate([p / rr * r_um, rr * 0.25], axis=1)

        tree_pts, seed_pts = embed(pts), embed(seeds)
    else:
        tree_pts, seed_pts = pts, seeds
    dist, idx = cKDTree(seed_pts).query(tree_pts, k=2)
    grain_id = np.full((n, n, n), -1, dtype=np.int32)
    grain_id[inside] = idx[:, 0]
    boundary = (dist[:, 1] - dist[:, 0]) < 0.6 * voxel_um
    density = np.zeros((n, n, n), dtype=np.float32)
    dens_in = np.ones(pts.shape[0], dtype=np.float32)
    dens_in[boundary] = 0.85
    density[inside] = dens_in

    # Cracks: radial planes through the core; level grows with distance from the plane,
    # with the radius beyond the initial tip, and with a nucleation offset.
    crack_level = np.full((n, n, n), np.inf, dtype=np.float32)
    normals = _unit_vectors(spec.n_cracks, rng)
    # A crack is at least half a voxel wide at c = 1, whatever the voxel size.
    half_width = max(spec.crack_half_width_um, 0.5 * voxel_um)
    for i in range(spec.n_cracks):
        nrm = normals[i]
        d = np.cross(nrm, _unit_vectors(1, rng)[0])
        d /= np.linalg.norm(d)
        half_angle = rng.uniform(0.35, 0.9)
        tip = rng.uniform(0.35, 0.75)
        offset = 0.0 if i < spec.n_cracks // 2 else rng.uniform(0.3, 0.9)
        dp = np.abs(x * nrm[0] + y * nrm[1] + z * nrm[2])
        proj = x * nrm[0] + y * nrm[1] + z * nrm[2]
        qx = x - proj * nrm[0]
        qy = y - proj * nrm[1]
        qz = z - proj * nrm[2]
        rho = np.sqrt(qx * qx + qy * qy + qz * qz) + 1e-6
        cos_ang = (qx * d[0] + qy * d[1] + qz * d[2]) / rho
        in_sector = cos_ang >= np.cos(half_angle)
        lvl = dp / half_width + 2.5 * np.maximum(0.0, rho / r_um - tip) + offset
        lvl = np.where(in_sector & inside, lvl, np.inf)
        np.minimum(crack_level, lvl.astype(np.float32), out=crack_level)

    # Protrusions rooted on the outer surface.
    prot = np.full((n, n, n), np.inf, dtype=np.float32)
    outside = ~(level <= 1.0)
    size = spec.protrusion_size_um
    for m in _unit_vectors(spec.n_protrusions, rng):
        root = m * r_um * 0.97
        px, py, pz = x - root[0], y - root[1], z - root[2]
        if spec.protrusion == "whisker":
            axial = px * m[0] + py * m[1] + pz * m[2]
            perp2 = px * px + py * py + pz * pz - axial * axial
            width = 0.12 + 0.1 * rng.random()
            lvl = np.where((axial >= 0) & (perp2 <= width**2), axial / size, np.inf)
        else:
            lvl = np.sqrt(px * px + py * py + pz * pz) / size
        lvl = np.where(outside, lvl * rng.uniform(0.7, 1.3), np.inf)
        np.minimum(prot, lvl.astype(np.float32), out=prot)

    return ParticleVolume(
        spec=spec,
        voxel_um=voxel_um,
        density=density,
        crack_level=crack_level,
        protrusion_level=prot,
        depth_um=depth,
        grain_id=grain_id,
    )


def porosity(volume: ParticleVolume, crack_state: float) -> float:
    """Void fraction (hole + cracks) inside the particle envelope at ``crack_state``."""
    envelope = volume.depth_um > 0
    hole = _filled_envelope(volume) & ~envelope
    solid = volume.solid(crack_state)
    total = int(hole.sum() + envelope.sum())
    return float(total - solid.sum()) / max(total, 1)


def _filled_envelope(volume: ParticleVolume) -> np.ndarray:
    n = volume.n
    c = (n - 1) / 2.0
    ax = (np.arange(n) - c) * volume.voxel_um
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    return r <= volume.spec.radius_um * 0.98


def crack_surface_um2(volume: ParticleVolume, crack_state: float) -> float:
    """Area (um^2) of the faces between NMC and crack voxels at ``crack_state``."""
    solid = volume.solid(crack_state)
    crack = (volume.density > 0) & ~solid
    area = 0
    for axis in range(3):
        a = np.moveaxis(solid, axis, 0)
        b = np.moveaxis(crack, axis, 0)
        area += int(np.count_nonzero(a[1:] & b[:-1]) + np.count_nonzero(a[:-1] & b[1:]))
    return area * volume.voxel_um**2


def surface_um2(mask: np.ndarray, voxel_um: float) -> float:
    """Total exposed face area (um^2) of a boolean voxel mask."""
    area = 0
    for axis in range(3):
        a = np.moveaxis(mask, axis, 0)
        area += int(np.count_nonzero(a[1:] != a[:-1]))
        area += int(np.count_nonzero(a[0]) + np.count_nonzero(a[-1]))
    return area * voxel_um**2


def morphology_epsilon(mask: np.ndarray, voxel_um: float) -> float:
    """Morphological complexity ``eps = V^(1/3) / S^(1/2)`` of a voxel mask (seed 000).

    Smaller is more complex; a sphere has 0.455 (voxel surfaces overestimate S).
    """
    volume = float(mask.sum()) * voxel_um**3
    return volume ** (1.0 / 3.0) / max(surface_um2(mask, voxel_um), 1e-12) ** 0.5
