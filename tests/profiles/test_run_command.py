"""``thermoxanes run`` and ``thermoxanes ioc``: bad input gives one line and exit 2."""

import pytest

from thermoxanes.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["run", "xanes", "--profile", "nope"], "unknown profile"),
    (["run", "xanes", "--energies", "8300"], "at least 2"),
    (["run", "xanes", "--energies", "a,b"], "--energies"),
    (["run", "heating", "--program", "/no/such.toml"], "does not exist"),
    (["run", "xanes", "--profile", "sim-epics", "--size", "32"], "--size"),
    (["ioc", "--profile", "fxi-18id"], "no simulated IOC"),
    (["ioc", "--profile", "sim-epics", "--speed", "0"], "speed"),
])
def test_bad_input_one_line_exit_2(argv, needle, capsys, tmp_path):
    rc = main([*argv, *(["--out", str(tmp_path)] if argv[0] == "run" else [])])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_program_file(tmp_path):
    from thermoxanes.commands.run import load_program, parse_energies

    assert len(parse_energies("full")) == 68 and len(parse_energies("whiteline")) == 21
    path = tmp_path / "p.toml"
    path.write_text('segments = [{kind = "ramp", target_c = 150, rate_c_per_min = 5},\n'
                    '            {kind = "hold", duration_s = 600, sweeps = 2}]\n')

    class Args:
        program = str(path)

    assert load_program(Args()).num_sweeps == 2
    path.write_text('segments = [{kind = "soak", duration_s = 600}]\n')
    with pytest.raises(ValueError, match="soak"):
        load_program(Args())
