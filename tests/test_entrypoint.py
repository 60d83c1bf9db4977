"""Resolving what a worker runs: a script, a function in a file, a function in a module."""

from __future__ import annotations

from pathlib import Path

import pytest

from optuna_seer.execution.tuner import entrypoint_of
from optuna_seer.worker.entrypoint import resolve_target


def test_forms(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        "import json, os\n"
        "def train():\n    return 'called'\n"
        "if __name__ == '__main__':\n    os.environ['SEER_TEST_RAN'] = 'main'\n"
    )
    assert resolve_target(f"{script}:train")() == "called"
    resolve_target(str(script))()
    import os

    assert os.environ.pop("SEER_TEST_RAN") == "main"
    assert resolve_target("optuna_seer.worker.entrypoint:main") is not None
    assert entrypoint_of(f"{script}:train") == f"{script.resolve()}:train"
    assert entrypoint_of(test_forms).endswith("test_entrypoint.py:test_forms")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("", "must be 'script.py'"),
        ("missing.py", "does not exist"),
        ("no_such_module_xyz:train", "cannot be imported"),
        ("optuna_seer.worker.entrypoint:nothing", "has no function 'nothing'"),
    ],
)
def test_bad_targets(target: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_target(target)


def test_nested_functions_are_refused() -> None:
    def inner() -> None:
        pass

    with pytest.raises(ValueError, match="module-level function"):
        entrypoint_of(inner)
    with pytest.raises(TypeError, match="must be a script path"):
        entrypoint_of(3)  # type: ignore[arg-type]
