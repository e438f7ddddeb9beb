"""Input checks shared by the analysis API: each raises a one-line ``ValueError``."""

from __future__ import annotations

import numpy as np


def check_energies(energies_ev: np.ndarray, *, name: str = "energies_ev") -> np.ndarray:
    """Return ``energies_ev`` as float64 (E,), strictly increasing, or raise ``ValueError``."""
    e = np.asarray(energies_ev)
    if e.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {e.shape}")
    if not np.issubdtype(e.dtype, np.number) or np.issubdtype(e.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real numbers, got dtype {e.dtype}")
    e = e.astype(np.float64)
    if e.size < 2:
        raise ValueError(f"{name}: need at least 2 energies, got {e.size}")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    d = np.diff(e)
    if np.any(d == 0):
        dup = np.unique(e[1:][d == 0])
        raise ValueError(f"{name}: duplicate energies {dup.tolist()} eV")
    if np.any(d < 0):
        i = int(np.argmax(d < 0))
        raise ValueError(f"{name}: not increasing ({e[i]} eV is followed by {e[i + 1]} eV)")
    return e


def check_stack(stack: np.ndarray, n_energies: int, *, name: str = "absorbance") -> None:
    """Raise ``ValueError`` unless ``stack`` is a real (E, H, W) array with E = n_energies."""
    if not isinstance(stack, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(stack).__name__}")
    if stack.ndim != 3:
        raise ValueError(f"{name}: expected shape (E, H, W), got {stack.shape}")
    if not (np.issubdtype(stack.dtype, np.floating) or np.issubdtype(stack.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real dtype, got {stack.dtype}")
    if stack.shape[0] != n_energies:
        raise ValueError(
            f"{name}: {stack.shape[0]} frames but {n_energies} energies"
        )
    if stack.shape[1] < 1 or stack.shape[2] < 1:
        raise ValueError(f"{name}: empty frames, shape {stack.shape}")


def check_frames(sample: np.ndarray, flat: np.ndarray, dark: np.ndarray) -> None:
    """Raise ``ValueError`` unless flat and dark broadcast to the sample's shape."""
    for label, a in (("sample", sample), ("flat", flat), ("dark", dark)):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{label}: expected a real dtype, got {a.dtype}")
    for label, a in (("flat", flat), ("dark", dark)):
        try:
            shape = np.broadcast_shapes(a.shape, sample.shape)
        except ValueError:
            shape = None
        if shape != sample.shape:
            raise ValueError(
                f"{label}: frame shape {a.shape} does not match sample shape {sample.shape}"
            )


def check_frame_shape(frame: np.ndarray, frame_shape: tuple[int, int], *, name: str) -> None:
    """Raise ``ValueError`` unless ``frame`` is a real 2-D array of ``frame_shape``."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(frame).__name__}")
    if frame.shape != tuple(frame_shape):
        raise ValueError(f"{name}: frame shape {frame.shape}, expected {tuple(frame_shape)}")
    if not (np.issubdtype(frame.dtype, np.floating) or np.issubdtype(frame.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real dtype, got {frame.dtype}")
