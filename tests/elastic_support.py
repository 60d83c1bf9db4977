"""Shared pieces of the elastic-executor tests: real launches of the digits example.

The local S3 server they use is the ``s3_server`` fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState

REPO = Path(__file__).resolve().parent.parent
DIGITS_TRAIN = f"{REPO / 'examples' / 'lightning_digits.py'}:train"
FIXED_PARAMS: dict[str, Any] = {"lr": 0.05, "hidden": 48, "weight_decay": 1e-4}


def run_launches(backend: Backend, specs: list[LaunchSpec], timeout_s: float = 240) -> None:
    """Start ``specs`` together and wait; fail with the worker's log if one does not succeed."""
    handles = [backend.start(spec) for spec in specs]
    pending = list(handles)
    budget = timeout_s
    while pending and budget > 0:
        done = backend.wait(pending, 2.0)
        budget -= 2.0
        pending = [h for h in pending if h not in done]
    assert not pending, f"launches still running after {timeout_s} s"
    for handle in handles:
        status = backend.poll(handle)
        assert status.state is LaunchState.SUCCEEDED, status.message


def worker_env() -> dict[str, str]:
    """Small epochs for tests: one copy of the digits."""
    return {"DIGITS_REPEATS": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
