"""Helpers for the killed-driver tests: a real driver process (started by the
``start_driver`` fixture of ``conftest.py`` here), SIGKILLed alone, and the worker processes
of a study found through /proc (by the SEER_STUDY in their environment).
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
from dataclasses import dataclass
import os
from pathlib import Path
import signal
import sqlite3
import subprocess
import sys
import time

import optuna

import optuna_seer

HERE = Path(__file__).resolve().parent
ROOT = str(Path(optuna_seer.__file__).resolve().parent.parent)
STUDY = "resume"  # resume_driver.py's study


def driver_command(url: str, workdir: Path, *options: str) -> list[str]:
    """The argv of a ``resume_driver.py`` run (the same argv resumes it)."""
    return [sys.executable, str(HERE / "resume_driver.py"), url, str(workdir), *options]


def driver_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@dataclass(frozen=True)
class Driver:
    """A ``resume_driver.py`` process on the SQLite study at ``url``, started by ``command``."""

    url: str
    command: list[str]
    process: subprocess.Popen[bytes]

    def rerun(self, timeout_s: float) -> subprocess.CompletedProcess[str]:
        """The same command again, to its end (what a user does after a crash or Ctrl-C)."""
        return subprocess.run(
            self.command, env=driver_env(), capture_output=True, text=True, timeout=timeout_s
        )


StartDriver = Callable[..., Driver]
"""``start_driver(*options, preexec_fn=None)``: the ``start_driver`` fixture's type."""


def proc_env(pid: int) -> dict[str, str] | None:
    """The environment ``pid`` started with, or ``None`` if it is gone (or not ours)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    items = raw.decode(errors="replace").split("\0")
    return dict(item.split("=", 1) for item in items if "=" in item)


def is_live(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped holds nothing and runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def study_pids(study_name: str) -> list[int]:
    """Live worker processes of ``study_name``: the workers, torchrun agents and ranks (they
    carry SEER_STUDY in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            env = proc_env(int(entry.name))
            if env is not None and env.get("SEER_STUDY") == study_name and is_live(int(entry.name)):
                found.append(int(entry.name))
    return found


def wait_until_gone(pids: list[int], timeout_s: float = 30.0) -> list[int]:
    """Poll until none of ``pids`` runs or ``timeout_s`` passes; the ones still running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [pid for pid in pids if is_live(pid)]
        if not left:
            return []
        time.sleep(0.2)
    return [pid for pid in pids if is_live(pid)]


def _study_is_written(url: str) -> bool:
    """Whether the driver has finished creating its SQLite study (checked read-only, so this
    poller never races the driver to create Optuna's schema in a new file)."""
    if not url.startswith("sqlite:///"):
        return True
    path = url[len("sqlite:///") :]
    if not os.path.exists(path):
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("SELECT version_num FROM alembic_version").fetchone()
            row = db.execute("SELECT 1 FROM studies WHERE study_name = ?", (STUDY,)).fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    if not _study_is_written(url):
        return []
    try:
        return optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    except (KeyError, optuna.exceptions.StorageInternalError, ValueError):
        return []  # not created yet, or the file is being created


def kill_driver_when(
    driver: subprocess.Popen[bytes],
    url: str,
    ready: Callable[[list[optuna.trial.FrozenTrial]], bool],
    timeout_s: float = 300,
    signum: signal.Signals = signal.SIGKILL,
) -> float:
    """Send ``signum`` (SIGKILL: kill it) to the driver process alone once ``ready(trials)``
    and wait for it to end; returns when the signal was sent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and driver.poll() is None:
        if ready(trials_of(url)):
            break
        time.sleep(0.2)
    assert driver.poll() is None, (driver.communicate()[0] or b"").decode()[-3000:]
    os.kill(driver.pid, signum)
    killed_at = time.time()
    driver.wait()
    return killed_at
