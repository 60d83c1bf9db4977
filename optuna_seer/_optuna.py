"""The one place that reaches into Optuna's private API.

SEER keeps its state in the study's storage, as Optuna's own pruners do, so it needs a study's
storage and id and a trial's id, which Optuna does not expose publicly; sharing a storage with
worker processes needs what a storage wraps (an RDB behind Optuna's cache, a journal file, a
gRPC proxy's address). Every such access goes
through these functions, so an Optuna release that renames them changes this file only.
Checked against Optuna 4.2 (the floor in pyproject.toml) to 5.x.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial

#: What a storage raises when a finished trial is updated: ``UpdateFinishedTrialError`` since
#: Optuna 4.3, a plain ``RuntimeError`` (its base class) before.
UpdateFinishedTrialError: type[RuntimeError] = getattr(
    optuna.exceptions, "UpdateFinishedTrialError", RuntimeError
)


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage that holds ``study`` (Optuna's ``Study._storage``)."""
    storage: BaseStorage = study._storage
    return storage


def study_id_of(study: optuna.Study) -> int:
    """The storage's id of ``study`` (Optuna's ``Study._study_id``)."""
    study_id: int = study._study_id
    return study_id


def trial_id_of(trial: optuna.Trial | FrozenTrial | Any) -> int:
    """The storage's id of a live or frozen trial (Optuna's ``_trial_id``)."""
    trial_id: int = trial._trial_id
    return trial_id


def unwrap_storage(storage: BaseStorage) -> BaseStorage:
    """The storage behind Optuna's cache layer (``_CachedStorage._backend``), else ``storage``."""
    if type(storage).__name__ == "_CachedStorage":
        inner: BaseStorage = getattr(storage, "_backend", storage)
        return inner
    return storage


def journal_file_of(storage: optuna.storages.JournalStorage) -> str | None:
    """The file a journal storage appends to, or ``None`` when its backend is not a file."""
    backend = getattr(storage, "_backend", None)
    if isinstance(backend, JournalFileBackend):
        return str(backend._file_path)
    return None


def grpc_address_of(proxy: BaseStorage) -> tuple[str, int] | None:
    """``(host, port)`` of an ``optuna.storages.GrpcStorageProxy`` client, if it keeps them."""
    host = getattr(proxy, "_host", None)
    port = getattr(proxy, "_port", None)
    if host is None or port is None:
        return None
    return str(host), int(port)


def set_trial_user_attrs(storage: BaseStorage, trial_id: int, attrs: dict[str, Any]) -> None:
    """Write several user attrs of a trial: in one transaction on an RDB storage (Optuna's
    public API commits each attr on its own, a few milliseconds apiece on SQLite), else one
    call each. Falls back to the public API where Optuna's internals differ."""
    backend = unwrap_storage(storage)
    writer = getattr(backend, "_set_trial_attr_without_commit", None)
    if len(attrs) > 1 and isinstance(backend, optuna.storages.RDBStorage) and writer is not None:
        try:
            from optuna.storages._rdb import models
            from optuna.storages._rdb.storage import _create_scoped_session
        except ImportError:  # pragma: no cover - another Optuna layout
            pass
        else:
            with _create_scoped_session(backend.scoped_session, True) as session:
                for key, value in attrs.items():
                    writer(session, models.TrialUserAttributeModel, trial_id, key, value)
            return
    for key, value in attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)
