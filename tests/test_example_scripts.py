"""The example scripts run as their docstrings show, and their --help says what they do.

examples/digits_study.py's default storage is ``sqlite:///runs/seer.db`` and ``runs/`` is
git-ignored, so a fresh clone has no such folder: the example used to stop with SQLAlchemy's
"unable to open database file" traceback before the first trial.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from elastic_support import REPO
import optuna
import pytest


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(180)
def test_digits_study_makes_the_folder_of_its_sqlite_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _load("digits_study")
    db = tmp_path / "runs" / "seer.db"  # runs/ does not exist yet, as in a fresh clone
    argv = [
        "--deadline", "20s",
        "--budget", "0.01",
        "--workers", "1",
        "--max-epochs", "3",
        "--max-configs", "3",
        "--storage", f"sqlite:///{db}",
        "--study-name", "digits-test",
    ]  # fmt: skip
    example.main(argv)
    printed = capsys.readouterr().out
    assert "best trial" in printed
    study = optuna.load_study(study_name="digits-test", storage=f"sqlite:///{db}")
    assert study.trials


EXAMPLES = ["digits_study", "fabric_digits", "lightning_digits", "optimize_elastic", "torch_digits"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_help_says_its_whole_first_sentence(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # fabric_digits' summary spans two docstring lines; its --help once ended mid-sentence
    # ("... DDP on k CPU processes (or GPUs) on scikit-learn's").
    example = _load(name)
    with pytest.raises(SystemExit) as stopped:
        example.main(["--help"])
    assert stopped.value.code == 0
    doc = example.__doc__
    assert doc is not None
    summary = " ".join(doc.split("\n\n")[0].split())
    first_sentence = summary.split(". ")[0].rstrip(".:")
    assert first_sentence in " ".join(capsys.readouterr().out.split())
