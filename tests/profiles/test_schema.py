import pytest

from thermoxanes.profiles.schema import builtin_profiles, load_profile


def test_sim_profile_loads():
    assert "sim" in builtin_profiles()
    profile = load_profile("sim")
    assert profile.kind == "sim"
    assert profile.heater.max_temperature_c > 250


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nkind = "sim"\n[heater]\nmax_temprature_c = 300\n')
    with pytest.raises(ValueError, match=r"heater\.max_temprature_c"):
        load_profile(path)


def test_bad_values_and_names(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nkind = "sim"\n[camera]\nexposure_s = -1\n')
    with pytest.raises(ValueError, match=r"camera\.exposure_s"):
        load_profile(path)
    with pytest.raises(ValueError, match="unknown profile"):
        load_profile("nope")
    (tmp_path / "broken.toml").write_text("name = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_profile(tmp_path / "broken.toml")
