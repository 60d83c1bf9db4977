"""The watchdog that ends a local launch when its driver dies (real processes: a stand-in
driver is a real process that is SIGKILLed; the worker is a real Python process)."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading

from driver_procs import ROOT
import pytest

from optuna_seer.worker.driver_watch import (
    ENV_DRIVER_PID,
    ENV_DRIVER_STARTED,
    driver_env,
    process_start_ticks,
    watch_driver,
)

WORKER = (
    "import time\n"
    "from optuna_seer.worker.driver_watch import watch_driver\n"
    "watch_driver()\n"
    "print('watching', flush=True)\n"
    "time.sleep(120)\n"
)


def _stand_in_driver() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _worker(env: dict[str, str]) -> subprocess.Popen[str]:
    full = {**os.environ, "PYTHONPATH": ROOT, **env}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        env=full,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # as LocalBackend starts a launch
    )
    return worker


def test_no_driver_named_means_no_watchdog() -> None:
    assert watch_driver({}) is None


def test_a_malformed_driver_pid_is_named() -> None:
    with pytest.raises(RuntimeError, match=r"SEER_DRIVER_PID='x1' is not a whole number"):
        watch_driver({ENV_DRIVER_PID: "x1"})


def test_driver_env_names_this_process_and_its_start_time() -> None:
    env = driver_env()
    assert env[ENV_DRIVER_PID] == str(os.getpid())
    if Path("/proc").is_dir():
        assert env[ENV_DRIVER_STARTED] == str(process_start_ticks(os.getpid()))


def test_the_watchdog_fires_when_the_driver_is_killed() -> None:
    driver = _stand_in_driver()
    gone = threading.Event()
    try:
        env = {ENV_DRIVER_PID: str(driver.pid)}
        ticks = process_start_ticks(driver.pid)
        if ticks is not None:
            env[ENV_DRIVER_STARTED] = str(ticks)
        watch_driver(env, on_gone=gone.set)
        assert not gone.wait(0.5)
        driver.kill()
        assert gone.wait(10)
    finally:
        driver.kill()
        driver.wait()


def test_a_worker_process_ends_itself_when_its_driver_is_sigkilled() -> None:
    driver = _stand_in_driver()
    try:
        worker = _worker({ENV_DRIVER_PID: str(driver.pid)})
        assert worker.stdout is not None and worker.stdout.readline() == "watching\n"
        assert worker.poll() is None
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()  # reaped: the pid may even be reused, the worker must still notice
        assert worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        driver.kill()
        driver.wait()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="start times come from /proc")
def test_a_reused_pid_is_not_taken_for_the_driver() -> None:
    # This process is alive, but it did not start at the recorded time: not the driver.
    ticks = process_start_ticks(os.getpid())
    assert ticks is not None
    worker = _worker({ENV_DRIVER_PID: str(os.getpid()), ENV_DRIVER_STARTED: str(ticks + 1)})
    assert worker.wait(timeout=30) == -signal.SIGKILL
