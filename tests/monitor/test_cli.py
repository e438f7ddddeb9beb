"""``thermoxanes monitor`` on the command line: bad input, and serving BokehJS itself."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from thermoxanes.cli import main


@pytest.mark.parametrize("argv", [
    ["monitor"],
    ["monitor", "--maps-endpoint", "nonsense"],
    ["monitor", "--maps-endpoint", "tcp://127.0.0.1:99999"],
    ["monitor", "--data-endpoint", "tcp://127.0.0.1:5577", "--host", "0.0.0.0"],
    ["monitor", "--data-endpoint", "tcp://127.0.0.1:5577", "--port", "70000"],
    ["monitor", "--data-endpoint", "tcp://127.0.0.1:5577", "--pixel-size-um", "-1"],
    ["monitor", "--data-endpoint", "tcp://127.0.0.1:5577",
     "--maps-snapshot-endpoint", "tcp://127.0.0.1:5591"],
    ["monitor", "--maps-endpoint", "tcp://127.0.0.1:5590", "--maps-snapshot-endpoint", "x"],
])
def test_bad_input_exits_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("thermoxanes monitor: error:")


@pytest.mark.system
def test_serves_page_and_bokehjs_from_the_package(tmp_path, publishers):
    maps_pub, data_pub = publishers
    url_file = tmp_path / "url"
    proc = subprocess.Popen(
        [sys.executable, "-m", "thermoxanes.cli", "monitor", "--maps-endpoint", maps_pub.endpoint,
         "--data-endpoint", data_pub.endpoint, "--port", "0", "--url-file", str(url_file),
         "--duration-s", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not url_file.exists() or not url_file.read_text().strip():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "no URL within 120 s"
            time.sleep(0.1)
        url = url_file.read_text().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=60) as response:
            page = response.read().decode()
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
        assert scripts and all(s.startswith("/") or s.startswith(url.rstrip("/"))
                               for s in scripts), scripts
        bokeh_js = next(s for s in scripts if "bokeh.min.js" in s)
        with urllib.request.urlopen(url.rstrip("/") + bokeh_js if bokeh_js.startswith("/")
                                    else bokeh_js, timeout=60) as response:
            assert len(response.read()) > 100_000
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
