"""Channel Access on loopback for tests: private ports, IOC subprocesses.

pyepics reads its environment once, when libca starts, so the ports are chosen when this
module is first imported (test collection, before any test talks CA) and serve every test
of the session: ``SERVER_PORTS[0]`` for the thermoxanes IOC, ``SERVER_PORTS[1]`` for
caproto's fake motor record IOC. Parallel pytest sessions get different ports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path


def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port


SERVER_PORTS = (_free_port(), _free_port())
REPEATER_PORT = _free_port()
MAX_ARRAY_BYTES = "100000000"


def server_env(port: int) -> dict[str, str]:
    """Environment of an IOC subprocess serving on ``port`` (loopback only)."""
    env = dict(os.environ)
    env.update({
        "EPICS_CA_ADDR_LIST": "127.0.0.1", "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(port), "EPICS_CA_REPEATER_PORT": str(REPEATER_PORT),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO", "EPICS_CAS_BEACON_PORT": str(REPEATER_PORT),
        "EPICS_CA_MAX_ARRAY_BYTES": MAX_ARRAY_BYTES, "PYTHONUNBUFFERED": "1",
    })
    return env


def _libca_started() -> bool:
    ca = sys.modules.get("epics.ca")
    return ca is not None and getattr(ca, "libca", None) is not None


def configure_client() -> None:
    """Point this process's pyepics at the test IOCs (before libca starts)."""
    global LIBCA_STARTED_EARLY
    LIBCA_STARTED_EARLY = _libca_started()
    os.environ.update({
        "EPICS_CA_ADDR_LIST": " ".join(f"127.0.0.1:{p}" for p in SERVER_PORTS),
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CA_SERVER_PORT": str(SERVER_PORTS[0]),
        "EPICS_CA_REPEATER_PORT": str(REPEATER_PORT),
        "EPICS_CA_MAX_ARRAY_BYTES": MAX_ARRAY_BYTES,
    })


LIBCA_STARTED_EARLY = False
configure_client()


def start_ioc(args: list[str], port: int, ready_pv: str, log_path: Path,
              timeout_s: float = 120.0) -> subprocess.Popen:
    """Start an IOC subprocess and wait until ``ready_pv`` answers (or fail, naming it).

    The thermoxanes IOC compiles its numba kernels before it serves any PV (tens of
    seconds on a fresh checkout of a loaded machine), hence the generous ``timeout_s``.
    """
    import ophyd  # noqa: F401, I001 - first: pyepics PVs cached here must be ophyd's class
    import epics  # noqa: I001

    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, *args], env=server_env(port), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_file = log
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.close()
            raise RuntimeError(f"IOC exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # "timed out" while it starts
            if epics.caget(ready_pv, timeout=0.5, connection_timeout=0.5) is not None:
                return proc
    stop_ioc(proc)
    if LIBCA_STARTED_EARLY:
        raise RuntimeError(f"IOC PV {ready_pv} not found: pyepics had started Channel Access "
                           "before tests/devices/ca_env.py could point it at the test ports")
    raise RuntimeError(f"IOC PV {ready_pv} not up within {timeout_s} s: "
                       f"{log_path.read_text()[-2000:]}")


def stop_ioc(proc: subprocess.Popen) -> None:
    """Terminate an IOC started by :func:`start_ioc`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    log = getattr(proc, "log_file", None)
    if log is not None:
        log.close()
