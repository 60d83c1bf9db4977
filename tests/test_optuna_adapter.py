"""The Optuna adapter's own reads and writes (``optuna_seer/_optuna.py``) against Optuna's
public API, on real SQLite, journal and in-memory storages.

``fresh_trials`` reads an RDB storage's trials through three narrow queries instead of
Optuna's ORM, and ``set_trial_attrs`` writes several attrs in one transaction: each must give
what the public API gives, also after another storage object (another process, to the
database) changed the study, and in a time zone other than UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import random
import time

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
import pytest

from optuna_seer import _optuna
from optuna_seer._optuna import (
    UpdateFinishedTrialError,
    fresh_trials,
    set_trial_attrs,
    storage_of,
    study_id_of,
)
from optuna_seer.integration.admission import WidthCount, width_rank
from optuna_seer.integration.keys import TRIAL_BEYOND_PLAN
from tests.conftest import make_storage


def _view(trial: FrozenTrial) -> tuple[object, ...]:
    """What ``fresh_trials`` promises of a trial."""
    return (
        trial._trial_id,
        trial.number,
        trial.state,
        trial.datetime_start,
        trial.datetime_complete,
        trial.system_attrs,
        {step: repr(value) for step, value in trial.intermediate_values.items()},  # nan too
        trial.last_step,
    )


def _agrees(storage: BaseStorage, study_id: int) -> list[FrozenTrial]:
    narrow = fresh_trials(storage, study_id)
    public = storage.get_all_trials(study_id, deepcopy=False)
    assert [_view(t) for t in narrow] == [_view(t) for t in public]
    return narrow


def _second(kind: str, tmp_path: Path, study_name: str) -> optuna.Study:
    """The same study through a storage object of its own, as another process holds it."""
    return optuna.load_study(study_name=study_name, storage=make_storage(kind, tmp_path))


@pytest.fixture
def local_time_zone() -> Iterator[None]:
    """A local time zone hours away from UTC (RDB storages keep UTC, hand out local time)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_fresh_trials_read_what_the_public_api_reads_as_the_study_changes(
    kind: str, tmp_path: Path, local_time_zone: None
) -> None:
    study = optuna.create_study(storage=make_storage(kind, tmp_path), study_name="s")
    storage, study_id = storage_of(study), study_id_of(study)
    assert fresh_trials(storage, study_id) == []
    study.enqueue_trial({"x": 0.5})
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    running = study.ask()
    running.report(0.25, 1)
    running.report(0.5, 3)
    storage.set_trial_system_attr(running._trial_id, "seer:beat", [1.5, 30.0])
    study.enqueue_trial({"x": 0.1})  # waiting
    first = _agrees(storage, study_id)
    assert [t.state for t in first] == [TrialState.COMPLETE] * 3 + [
        TrialState.RUNNING,
        TrialState.WAITING,
    ]

    # Another process finishes the running trial, fails one, starts two and prunes one.
    other = _second(kind, tmp_path, "s")
    other_storage = storage_of(other)
    other_storage.set_trial_system_attr(running._trial_id, "seer:ledger", [3.0, 4.5])
    other.tell(running.number, 0.75)
    failed = other.ask()
    other.tell(failed, state=TrialState.FAIL)
    pruned = other.ask()
    pruned.report(0.1, 1)
    other.tell(pruned, state=TrialState.PRUNED)
    late = other.ask()
    late.report(float("nan"), 1)
    late.report(float("inf"), 2)
    other_storage.set_trial_system_attr(late._trial_id, TRIAL_BEYOND_PLAN, True)
    second = _agrees(storage, study_id)
    assert [t.state for t in second][3:] == [
        TrialState.COMPLETE,
        TrialState.FAIL,  # the waiting one, popped by other.ask()
        TrialState.PRUNED,
        TrialState.RUNNING,
    ]
    # Finished out of order: a running trial below a finished one, then it finishes too.
    below = study.ask()
    other.tell(late, state=TrialState.PRUNED)
    above = other.ask()
    other.tell(above, 0.5)
    assert [t.state for t in _agrees(storage, study_id)][-3:] == [
        TrialState.PRUNED,
        TrialState.RUNNING,
        TrialState.COMPLETE,
    ]
    study.tell(below, 0.25)
    assert {t.state for t in _agrees(storage, study_id)[-3:]} == {
        TrialState.PRUNED,
        TrialState.COMPLETE,
    }


def test_fresh_trials_on_sqlite_read_narrowly(tmp_path: Path) -> None:
    """On an RDB storage the adapter reads the trials itself (not through Optuna's ORM): the
    params, user attrs and values it leaves out are empty."""
    study = optuna.create_study(storage=make_storage("sqlite", tmp_path))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    narrow = fresh_trials(storage_of(study), study_id_of(study))
    assert [(t.params, t.user_attrs, t.values) for t in narrow] == [({}, {}, None)] * 2
    assert all(t.params for t in study.trials)


def test_fresh_trials_sort_running_trials_among_finished_ones(tmp_path: Path) -> None:
    """Trials finish out of order: every read comes back by number, as the public one."""
    study = optuna.create_study(storage=make_storage("sqlite", tmp_path))
    storage, study_id = storage_of(study), study_id_of(study)
    rng = random.Random(0)
    running = [study.ask() for _ in range(6)]
    for _ in range(30):
        if running and rng.random() < 0.5:
            study.tell(running.pop(rng.randrange(len(running))), 1.0)
        else:
            running.append(study.ask())
        _agrees(storage, study_id)


@pytest.mark.parametrize("kind", ["inmemory", "sqlite", "journal"])
def test_set_trial_attrs_writes_what_the_public_api_writes(kind: str, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    batched = optuna.create_study(storage=make_storage(kind, tmp_path / "a"))
    one_by_one = optuna.create_study(storage=make_storage(kind, tmp_path / "b"))
    system = {"seer:ledger": [1.5, 2.0], "seer:flag": True, "none": None}
    user = {"seer.rung": 1, "seer.stop_reason": "why"}
    for study in (batched, one_by_one):
        study.ask()
    set_trial_attrs(storage_of(batched), batched.trials[0]._trial_id, system=system, user=user)
    set_trial_attrs(  # overwrites, as the public API does
        storage_of(batched), batched.trials[0]._trial_id, system={"seer:flag": False}
    )
    trial_id = one_by_one.trials[0]._trial_id
    for key, value in (system | {"seer:flag": False}).items():
        storage_of(one_by_one).set_trial_system_attr(trial_id, key, value)
    for key, value in user.items():
        storage_of(one_by_one).set_trial_user_attr(trial_id, key, value)
    a, b = batched.trials[0], one_by_one.trials[0]
    assert (a.system_attrs, a.user_attrs) == (b.system_attrs, b.user_attrs)

    batched.tell(a.number, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        set_trial_attrs(storage_of(batched), a._trial_id, system={"late": 1})
    with pytest.raises(KeyError):
        set_trial_attrs(storage_of(batched), 10_000, user={"nobody": 1})
    assert "late" not in batched.trials[0].system_attrs


def test_set_trial_attrs_without_an_upsert_uses_optunas_own_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database SEER knows no upsert for: Optuna's per-attr writer, in one session."""
    monkeypatch.setattr(_optuna, "_has_upsert", lambda dialect: False)
    study = optuna.create_study(storage=make_storage("sqlite", tmp_path))
    trial = study.ask()
    set_trial_attrs(storage_of(study), trial._trial_id, system={"s": [1]}, user={"u": "x"})
    set_trial_attrs(storage_of(study), trial._trial_id, system={"s": [2]})
    assert (study.trials[0].system_attrs, study.trials[0].user_attrs) == ({"s": [2]}, {"u": "x"})


def test_width_count_counts_what_width_rank_counts() -> None:
    """The incremental count against the reference, over trials that start, are refused,
    fail and finish in random order."""
    rng = random.Random(1)
    trials: list[FrozenTrial] = []
    count = WidthCount(storage=None)
    for number in range(200):
        for t in trials:
            if not t.state.is_finished() and rng.random() < 0.3:
                t.state = rng.choice([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL])
        attrs = {TRIAL_BEYOND_PLAN: True} if rng.random() < 0.1 else {}
        trial = optuna.trial.create_trial(state=TrialState.RUNNING, system_attrs=attrs)
        trial.number, trial._trial_id = number, 1000 + number
        trials.append(trial)
        # The new trial's rank, and a later one's (a trial read after others started).
        for probe in (number, number + 3):
            assert count.rank(trials, probe) == width_rank(trials, probe)


def test_fresh_trials_keep_to_their_study_among_others_in_the_same_database(
    tmp_path: Path,
) -> None:
    """Trials are looked up by id once one has finished: those of another study, with ids
    above and between, are not this study's."""
    url = make_storage("sqlite", tmp_path)
    a = optuna.create_study(storage=url, study_name="a")
    b = optuna.create_study(storage=url, study_name="b")
    for _ in range(3):
        a.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        b.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        a.ask()
        b.ask()
        for study in (a, b):
            assert {t.number for t in _agrees(storage_of(study), study_id_of(study))} == set(
                range(len(study.trials))
            )
