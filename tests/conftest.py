"""Shared fixtures: Optuna storages of every kind, real and on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

optuna.logging.set_verbosity(optuna.logging.WARNING)

STORAGE_KINDS = ["inmemory", "sqlite", "journal"]


def make_storage(kind: str, directory: Path) -> optuna.storages.BaseStorage | str | None:
    """A real storage of ``kind``: ``None`` is Optuna's in-memory storage."""
    if kind == "inmemory":
        return None
    if kind == "sqlite":
        return f"sqlite:///{directory / 'study.db'}"
    if kind == "journal":
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(directory / "journal.log"))
        )
    raise ValueError(kind)


@pytest.fixture(params=STORAGE_KINDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    yield make_storage(request.param, tmp_path)
