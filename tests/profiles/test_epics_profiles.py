"""Every built-in profile loads and builds in mock mode (no IOC, no Channel Access)."""

import pytest
from bluesky.protocols import Movable, Readable, Stageable, Triggerable

from thermoxanes.profiles.beamline import build_beamline
from thermoxanes.profiles.schema import builtin_profiles, load_profile

PROFILES = builtin_profiles()


def test_builtin_profiles():
    assert {"sim", "sim-epics", "fxi-18id", "ssrl-6-2c"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_builds_in_mock_mode_and_satisfies_protocols(name, tmp_path):
    profile = load_profile(name)
    beamline = build_beamline(profile, tmp_path, size=16, mock=True)
    beamline.wait_for_connection(0.1)          # mock and sim: returns at once
    for role, device in beamline.devices.items():
        assert isinstance(device, Readable), role
    for device in (beamline.mono, beamline.sample_x, beamline.shutter, beamline.heater,
                   beamline.clock, beamline.rotation):
        assert isinstance(device, Movable), device.name
    assert isinstance(beamline.camera, Triggerable) and isinstance(beamline.camera, Stageable)
    assert {"energy_ev", "temperature_c", "theta_deg"} == set(beamline.header_keys)
    assert hasattr(beamline.heater.ramp_rate_c_per_min, "set")
    assert beamline.heater.max_temperature_c.get() == profile.heater.max_temperature_c


@pytest.mark.parametrize("text,key", [
    ('[epics.heater]\nmodel = "lakeshore336"\nprefx = "X:"\n', "epics.heater.prefx"),
    ('[epics.heater]\nmodel = "lakeshore999"\nprefix = "X:"\n', "epics.heater.model"),
    ('[ioc]\nsped = 3\n', "ioc.sped"),
])
def test_epics_profile_typos_are_named(tmp_path, text, key):
    from importlib import resources

    src = tmp_path / "p.toml"
    good = (resources.files("thermoxanes.profiles") / "sim-epics.toml").read_text()
    section = text.split("]")[0] + "]"
    # replace that section of the good profile by the broken one
    head, _, tail = good.partition(section + "\n")
    rest = tail.split("\n[", 1)
    src.write_text(head + text + ("\n[" + rest[1] if len(rest) > 1 else ""))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_profile(src)


def test_kind_sections_checked(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('name = "x"\nkind = "epics"\n')
    with pytest.raises(ValueError, match="needs an \\[epics\\] section"):
        load_profile(path)
    path.write_text('name = "x"\nkind = "sim"\n[ioc]\nspeed = 2\n')
    with pytest.raises(ValueError, match="takes no"):
        load_profile(path)
