"""A XANES sweep through bluesky-queueserver: redis-server and the RE manager on loopback.

The startup module (``thermoxanes.profiles.qserver.startup``) loads the ``sim`` profile
(32x32 frames); the plan is the package's ``xanes_sweep``, unchanged, submitted with
device names through the bluesky-queueserver-api client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.devices.ca_env import _free_port

pytestmark = pytest.mark.system

REDIS = shutil.which("redis-server")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (CI installs Debian's "
                                          "redis-server via .ci/system-deps.sh)")
def test_xanes_sweep_through_queue_server(tmp_path):
    pytest.importorskip("bluesky_queueserver")
    from bluesky_queueserver_api import BPlan
    from bluesky_queueserver_api.zmq import REManagerAPI

    from thermoxanes.profiles.qserver import qserver_file

    redis_port, control_port, info_port = _free_port(), _free_port(), _free_port()
    procs = []
    redis_log = open(tmp_path / "redis.log", "w")  # noqa: SIM115
    procs.append(subprocess.Popen(
        [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)], stdout=redis_log, stderr=redis_log))
    plans_yaml = tmp_path / "existing_plans_and_devices.yaml"
    shutil.copy(qserver_file("existing_plans_and_devices.yaml"), plans_yaml)
    env = dict(os.environ, THERMOXANES_PROFILE="sim", THERMOXANES_SIZE="32",
               THERMOXANES_DATA_DIR=str(tmp_path / "raw"))
    manager_log = open(tmp_path / "manager.log", "w")  # noqa: SIM115
    manager = [
        str(Path(sys.executable).parent / "start-re-manager"),
        "--startup-module", "thermoxanes.profiles.qserver.startup",
        "--existing-plans-devices", str(plans_yaml),
        "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
        "--user-group-permissions", str(qserver_file("user_group_permissions.yaml")),
        "--redis-addr", f"127.0.0.1:{redis_port}",
        "--redis-name-prefix", f"thermoxanes_test_{redis_port}",
        "--zmq-control-addr", f"tcp://127.0.0.1:{control_port}",
        "--zmq-info-addr", f"tcp://127.0.0.1:{info_port}",
        "--zmq-publish-console", "OFF",
    ]
    procs.append(subprocess.Popen(manager, env=env, stdout=manager_log,
                                  stderr=subprocess.STDOUT))
    RM = REManagerAPI(zmq_control_addr=f"tcp://127.0.0.1:{control_port}",
                      zmq_info_addr=f"tcp://127.0.0.1:{info_port}")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                RM.status()
                break
            except Exception:
                assert procs[-1].poll() is None, (tmp_path / "manager.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "RE manager did not answer in 60 s"
                time.sleep(0.5)
        RM.environment_open()
        RM.wait_for_idle(timeout=120)
        assert RM.status()["worker_environment_exists"], \
            (tmp_path / "manager.log").read_text()[-3000:]
        plans = RM.plans_allowed()["plans_allowed"]
        assert {"xanes_sweep", "heating_program"} <= set(plans)
        RM.item_add(BPlan("xanes_sweep", "camera", "mono", "sample_x", "shutter",
                          [8300.0, 8340.0, 8350.0], readables=["heater", "clock", "ring"],
                          n_darks=1, n_flats=1, md={"via": "queueserver"}))
        RM.queue_start()
        RM.wait_for_idle(timeout=120)
        history = RM.history_get()["items"]
        assert history, "nothing ran"
        result = history[-1]["result"]
        assert result["exit_status"] == "completed", result
        assert len(result["run_uids"]) == 1
        assert len(list((tmp_path / "raw").glob("*.h5"))) == 1
        RM.item_add(BPlan("heating_program",
                          [{"kind": "ramp", "target_c": 40.0, "rate_c_per_min": 10.0},
                           {"kind": "hold", "duration_s": 60.0, "sweeps": 1}],
                          [8330.0, 8350.0], n_darks=1))
        RM.queue_start()
        RM.wait_for_idle(timeout=120)
        result = RM.history_get()["items"][-1]["result"]
        assert result["exit_status"] == "completed", result
        assert len(result["run_uids"]) == 2      # the sweep and the heater_safe_state record
        RM.environment_close()
        RM.wait_for_idle(timeout=60)
    finally:
        RM.close()
        for proc in reversed(procs):
            _stop(proc)
        redis_log.close()
        manager_log.close()
