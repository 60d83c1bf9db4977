"""The one place that reaches into Optuna's private API.

SEER keeps its state in the study's storage, as Optuna's own pruners do, so it needs a study's
storage and id and a trial's id, which Optuna does not expose publicly; sharing a storage with
worker processes needs what a storage wraps (an RDB behind Optuna's cache, a journal file, a
gRPC proxy's address). Every such access goes
through these functions, so an Optuna release that renames them changes this file only.
Checked against Optuna 4.2 (the floor in pyproject.toml) to 5.x.
"""

from __future__ import annotations

import bisect
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
import datetime
import functools
import json
import sqlite3
import threading
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

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


def trials_not_in(trials: Iterable[FrozenTrial], ids: Container[int]) -> list[FrozenTrial]:
    """The ``trials`` whose storage id is not in ``ids``, in order: what a per-process cache
    of finished trials has yet to look at (a study of 10,000 trials is walked at every trial
    start: one comprehension here, no call per trial)."""
    return [t for t in trials if t._trial_id not in ids]


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
    """Write several user attrs of a trial (see :func:`set_trial_attrs`)."""
    set_trial_attrs(storage, trial_id, user=attrs)


def set_trial_attrs(
    storage: BaseStorage,
    trial_id: int,
    *,
    system: Mapping[str, Any] | None = None,
    user: Mapping[str, Any] | None = None,
) -> None:
    """Write system and user attrs of a trial that has not finished, as the storage's
    ``set_trial_system_attr`` and ``set_trial_user_attr`` would one by one: on an RDB storage
    in one transaction (Optuna's public API commits each attr on its own and looks the trial
    up for each, a millisecond apiece on SQLite), else one call each.

    Raises what those calls raise: ``KeyError`` for an unknown trial,
    :data:`UpdateFinishedTrialError` for a finished one.
    """
    system, user = dict(system or {}), dict(user or {})
    if not system and not user:
        return
    backend = unwrap_storage(storage)
    if isinstance(backend, optuna.storages.RDBStorage) and _rdb_write(
        backend, trial_id, system, user
    ):
        return
    for key, value in system.items():
        storage.set_trial_system_attr(trial_id, key, value)
    for key, value in user.items():
        storage.set_trial_user_attr(trial_id, key, value)


def fresh_trials(storage: BaseStorage, study_id: int) -> list[FrozenTrial]:
    """The study's trials by number, as fresh as a trial's admission needs: every trial not
    finished read now, the finished ones as this process read them once (a storage refuses
    to change a finished trial); what ``get_all_trials(study_id, deepcopy=False)`` returns.

    On an RDB storage it reads only what SEER's admission and dead-trial scan use, through
    three small queries (Optuna re-reads each unfinished trial whole through its ORM, several
    milliseconds on SQLite): the trials' number, state and start and end times, system attrs
    and intermediate values. Their params, distributions, user attrs and values are left
    empty; do not hand them to code that reads those. Other storages: ``get_all_trials``.
    """
    backend = unwrap_storage(storage)
    if isinstance(backend, optuna.storages.RDBStorage):
        census = _census(backend, study_id)
        if census is not None:
            return census.read()
    return storage.get_all_trials(study_id, deepcopy=False)


# ------------------------------------------------------------------ RDB internals
# Optuna's table definitions (``optuna.storages._rdb.models``) are read through SQLAlchemy
# Core: the tables and columns have kept their names since Optuna 2. Anything missing (another
# Optuna layout) falls back to the public API above.


def _rdb_write(
    backend: optuna.storages.RDBStorage,
    trial_id: int,
    system: dict[str, Any],
    user: dict[str, Any],
) -> bool:
    """:func:`set_trial_attrs` on an RDB storage in one transaction, ``False`` if it cannot
    (Optuna's internals differ): the trial looked up once and each attr table upserted in one
    statement where the database has an upsert SEER knows (those Optuna upserts attrs on),
    else Optuna's own per-attr writer in one session."""
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
        from sqlalchemy import exc
    except ImportError:  # pragma: no cover - another Optuna layout
        return False
    engine = backend.engine
    if not _has_upsert(engine.name):
        writer = getattr(backend, "_set_trial_attr_without_commit", None)
        if writer is None:  # pragma: no cover - another Optuna layout
            return False
        with _create_scoped_session(backend.scoped_session, True) as session:
            for key, value in system.items():
                writer(session, models.TrialSystemAttributeModel, trial_id, key, value)
            for key, value in user.items():
                writer(session, models.TrialUserAttributeModel, trial_id, key, value)
        return True
    select_state = _select_state()
    try:
        with engine.begin() as connection:
            state = connection.execute(select_state, {"trial_id": trial_id}).scalar_one_or_none()
            if state is None:
                raise KeyError(f"No trial with trial_id {trial_id} exists.")
            backend.check_trial_is_updatable(trial_id, TrialState(state))
            for model, attrs in (
                (models.TrialSystemAttributeModel, system),
                (models.TrialUserAttributeModel, user),
            ):
                if attrs:
                    rows = [
                        {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                        for key, value in attrs.items()
                    ]
                    connection.execute(_upsert(engine.name, model.__table__), rows)
    except exc.SQLAlchemyError as error:
        raise optuna.exceptions.StorageInternalError(
            f"writing the attrs of trial id {trial_id} failed: {error!r}"
        ) from error
    return True


@functools.cache
def _select_state() -> Any:
    """The state of trial ``trial_id``, a statement built once (compiled once per engine)."""
    from optuna.storages._rdb import models
    import sqlalchemy

    trials = models.TrialModel.__table__
    return sqlalchemy.select(trials.c.state).where(
        trials.c.trial_id == sqlalchemy.bindparam("trial_id")
    )


def _has_upsert(dialect: str) -> bool:
    return dialect in ("postgresql", "mysql") or (
        dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0)
    )


@functools.cache
def _upsert(dialect: str, table: Any) -> Any:
    """``INSERT ... ON CONFLICT (trial_id, key) DO UPDATE`` into an attr table (see
    :func:`_has_upsert`), built once per database and table and executed with rows of
    ``trial_id``, ``key`` and ``value_json`` (the value as JSON, as Optuna stores it)."""
    if dialect == "mysql":
        from sqlalchemy.dialects import mysql

        my = mysql.insert(table)
        return my.on_duplicate_key_update(value_json=my.inserted.value_json)
    from sqlalchemy.dialects import postgresql, sqlite

    insert = (sqlite if dialect == "sqlite" else postgresql).insert(table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.trial_id, table.c.key],
        set_={"value_json": insert.excluded.value_json},
    )


@dataclass
class _Census:
    """What :func:`fresh_trials` keeps of one study of one RDB storage in this process: the
    finished trials it read (they never change), the ids of those it must read again, and
    the highest id of a finished one (every trial above it is read), as Optuna's own cache
    does (``_CachedStorage``)."""

    backend: optuna.storages.RDBStorage  # held, so that the id keying this census is not reused
    study_id: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: dict[int, FrozenTrial] = field(default_factory=dict)
    unfinished: set[int] = field(default_factory=set)
    finished_above: int = -1

    ordered: list[FrozenTrial] = field(default_factory=list)  # the finished ones, by number
    numbers: list[int] = field(default_factory=list)  # their numbers

    def read(self) -> list[FrozenTrial]:
        with self.lock:
            fresh = _read_rdb_trials(
                self.backend, self.study_id, self.unfinished, self.finished_above
            )
            self.unfinished = set()
            running = []
            for trial in fresh:
                trial_id = trial._trial_id
                if not trial.state.is_finished():
                    self.unfinished.add(trial_id)
                    running.append(trial)
                elif trial_id not in self.finished:
                    self.finished[trial_id] = trial
                    self.finished_above = max(self.finished_above, trial_id)
                    at = bisect.bisect(self.numbers, trial.number)
                    self.numbers.insert(at, trial.number)
                    self.ordered.insert(at, trial)
            trials = list(self.ordered)
            for placed, trial in enumerate(sorted(running, key=lambda t: t.number)):
                trials.insert(bisect.bisect(self.numbers, trial.number) + placed, trial)
            return trials


_censuses: dict[tuple[int, int], _Census] = {}
_censuses_lock = threading.Lock()


def _census(backend: optuna.storages.RDBStorage, study_id: int) -> _Census | None:
    """This process's census of ``study_id`` in ``backend``, ``None`` where Optuna's tables
    are not where SEER reads them (another Optuna layout)."""
    if _RDB_TABLES is None:
        return None
    key = (id(backend), study_id)
    with _censuses_lock:
        census = _censuses.get(key)
        if census is None or census.backend is not backend:
            census = _Census(backend, study_id)
            _censuses[key] = census
        return census


def _rdb_tables() -> tuple[Any, Any, Any, Any] | None:
    """Optuna's trial, system-attr and intermediate-value tables and its model module."""
    try:
        from optuna.storages._rdb import models
    except ImportError:  # pragma: no cover - another Optuna layout
        return None
    return (
        models.TrialModel.__table__,
        models.TrialSystemAttributeModel.__table__,
        models.TrialIntermediateValueModel.__table__,
        models,
    )


_RDB_TABLES = _rdb_tables()


def _read_rdb_trials(
    backend: optuna.storages.RDBStorage, study_id: int, ids: set[int], above: int
) -> list[FrozenTrial]:
    """The trials of ``study_id`` whose id is in ``ids`` or above ``above``, narrowly (see
    :func:`fresh_trials`)."""
    select_trials, select_attrs, select_steps = _statements(by_id=above >= 0)
    chosen = {"study_id": study_id, "above": above, "ids": sorted(ids)}
    with backend.engine.connect() as connection:
        rows = connection.execute(select_trials, chosen).all()
        if not rows:
            return []
        attr_rows = connection.execute(select_attrs, chosen).all()
        step_rows = connection.execute(select_steps, chosen).all()
    system: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in attr_rows:
        system.setdefault(trial_id, {})[key] = json.loads(value_json)
    intermediate: dict[int, dict[int, float]] = {}
    assert _RDB_TABLES is not None
    to_value = _RDB_TABLES[3].TrialIntermediateValueModel.stored_repr_to_intermediate_value
    for trial_id, step, value, kind in step_rows:
        intermediate.setdefault(trial_id, {})[step] = to_value(value, kind)
    return [
        FrozenTrial(
            number=number,
            state=TrialState(state),
            value=None,
            values=None,
            datetime_start=_stored_time(start),
            datetime_complete=_stored_time(complete),
            params={},
            distributions={},
            user_attrs={},
            system_attrs=system.get(trial_id, {}),
            intermediate_values=intermediate.get(trial_id, {}),
            trial_id=trial_id,
        )
        for trial_id, number, state, start, complete in rows
    ]


@functools.cache
def _statements(by_id: bool) -> tuple[Any, Any, Any]:
    """The three queries of :func:`_read_rdb_trials`, built once (SQLAlchemy then compiles
    each once per engine): the chosen trials' columns, their system attrs, their
    intermediate values; parameters ``study_id``, ``above`` and ``ids``. ``by_id``: the
    trials are looked up by id (above a bound, or listed) and then checked for the study
    (``study_id + 0`` keeps the database from walking the study's index over all its trials
    instead); else through the study's index (the first read, and while no trial finished)."""
    import sqlalchemy

    assert _RDB_TABLES is not None
    trials, attrs, steps, _ = _RDB_TABLES
    study = trials.c.study_id + 0 if by_id else trials.c.study_id
    chosen = sqlalchemy.and_(
        study == sqlalchemy.bindparam("study_id"),
        sqlalchemy.or_(
            trials.c.trial_id > sqlalchemy.bindparam("above"),
            trials.c.trial_id.in_(sqlalchemy.bindparam("ids", expanding=True)),
        ),
    )
    chosen_ids = sqlalchemy.select(trials.c.trial_id).where(chosen)
    return (
        sqlalchemy.select(
            trials.c.trial_id,
            trials.c.number,
            trials.c.state,
            trials.c.datetime_start,
            trials.c.datetime_complete,
        ).where(chosen),
        sqlalchemy.select(attrs.c.trial_id, attrs.c.key, attrs.c.value_json).where(
            attrs.c.trial_id.in_(chosen_ids)
        ),
        sqlalchemy.select(
            steps.c.trial_id,
            steps.c.step,
            steps.c.intermediate_value,
            steps.c.intermediate_value_type,
        ).where(steps.c.trial_id.in_(chosen_ids)),
    )


def _stored_time(moment: datetime.datetime | None) -> datetime.datetime | None:
    """A trial's time as Optuna's RDB storage hands it out: stored in UTC and handed out in
    this process's local time since Optuna 5 (the model then keeps the column as
    ``_datetime_start_utc``), stored and handed out as written before."""
    if moment is None or _RDB_TABLES is None:
        return moment
    if not hasattr(_RDB_TABLES[3].TrialModel, "_datetime_start_utc"):
        return moment  # pragma: no cover - Optuna 4
    return moment.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)
