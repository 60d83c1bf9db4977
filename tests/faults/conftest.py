"""Fixtures of the fault tests: a real driver process that never outlives its test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
import subprocess

from driver_procs import Driver, StartDriver, driver_command, driver_env
import pytest


@pytest.fixture
def start_driver(tmp_path: Path) -> Iterator[StartDriver]:
    """Start ``resume_driver.py`` on a SQLite study in ``tmp_path`` (its output piped, for the
    test to read); a driver the test left running is killed at its end.

    ``start_driver(*options, preexec_fn=None)`` passes ``options`` to the driver, and
    ``preexec_fn`` to ``subprocess.Popen``.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str, preexec_fn: Callable[[], None] | None = None) -> Driver:
        url = f"sqlite:///{tmp_path / 'seer.db'}"
        command = driver_command(url, tmp_path, *options)
        process = subprocess.Popen(
            command,
            env=driver_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        started.append(process)
        return Driver(url, command, process)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
