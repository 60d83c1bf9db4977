"""A command that only reads a study refuses a SQLite or journal file that is not there.

Opening ``sqlite:///path.db`` creates an empty database, so ``report`` or ``provisioning``
pointed at a mistyped path used to leave a new empty file behind and then say the study was
not in it. Now each read-only storage option goes through ``open_existing_storage``: exit 2,
one line naming the path, nothing created.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from optuna_seer.cli.main import main

READERS: dict[str, Callable[[str], list[str]]] = {
    "report": lambda url: ["report", "--storage", url, "--study", "run"],
    "report-with-plan": lambda url: [
        "report", "--plan", "plan.json", "--storage", url, "--study", "run"
    ],
    "provisioning": lambda url: ["provisioning", "--storage", url, "--study", "run"],
    "profile-from-study": lambda url: [
        "profile", "--update", "profile.json", "--from-study", url, "--study-name", "run",
        "--out", "out.json",
    ],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(READERS))
@pytest.mark.parametrize("form", ["absolute", "relative", "journal"])
def test_a_reading_command_refuses_a_missing_storage_file(
    command: str,
    form: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    url, missing = {
        "absolute": (f"sqlite:///{tmp_path / 'nope.db'}", tmp_path / "nope.db"),
        "relative": ("sqlite:///runs/nope.db", tmp_path / "runs" / "nope.db"),
        "journal": ("nope.log", tmp_path / "nope.log"),
    }[form]
    if command == "report-with-plan":
        _write_plan(tmp_path / "plan.json")
    code = main(READERS[command](url))
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert str(missing.relative_to(tmp_path)) in lines[0] and "no such file" in lines[0]
    assert not missing.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["plan.json"] if command == "report-with-plan" else []
    )


def _write_plan(path: Path) -> None:
    profile = path.parent / "profile.json"
    profile.write_text('{"epoch_seconds": 600, "scaling": "linear"}')
    argv = [
        "plan", "--deadline", "20h", "--budget", "500", "--profile", str(profile),
        "--configs", "9", "--max-epochs", "9", "--price-per-slot-hour", "0.5",
        "--samples", "20", "--out", str(path),
    ]  # fmt: skip
    assert main(argv) == 0
    profile.unlink()


def test_an_existing_database_still_opens(tmp_path: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'seer.db'}"
    optuna.create_study(storage=url, study_name="run")
    from optuna_seer.storage.urls import open_existing_storage

    assert [s.study_name for s in open_existing_storage(url).get_all_studies()] == ["run"]


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:////tmp/x.db", "/tmp/x.db"),
        ("sqlite+pysqlite:///x.db?timeout=3", "x.db"),
        ("sqlite:///file:x.db?mode=ro&uri=true", "x.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql://u:pw@h/db", None),
        ("grpc://10.0.0.1:13000", None),
        ("redis://h:6379", None),
        ("nosuchdialect://u:pw@host/db", None),
        ("runs/seer.log", "runs/seer.log"),
    ],
)
def test_local_file_of(url: str, path: str | None) -> None:
    from optuna_seer.storage.urls import local_file_of

    assert local_file_of(url) == path
