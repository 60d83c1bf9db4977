"""The run journal: the tuner's progress, launches and in-flight state in the study storage,
every read and write retried the same way while the storage is locked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
import pytest
from sqlalchemy.exc import OperationalError

from optuna_seer._optuna import storage_of, trial_id_of
from optuna_seer.execution.journal import (
    InFlight,
    Progress,
    RunJournal,
    charged_of,
    launches_of,
)
from optuna_seer.execution.results import LaunchRecord, RungRecord
from optuna_seer.execution.resume import lost_until
from optuna_seer.integration.keys import TRIAL_PLACEMENT, TRIAL_STOP_REASON
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.workload import Workload
from optuna_seer.storage.retry import RetryPolicy, StorageUnavailableError

NO_WAIT = RetryPolicy(attempts=3, base_s=0.0, max_s=0.0)
RUNGS = schedule(
    [RungShape(4, 1, 1), RungShape(2, 3, 2)],
    Workload(epoch_seconds=10.0, scaling="linear", max_epochs=3),
    1.0 / 3600,
    ClusterLimits(max_gpus=2),
)


def _journal() -> tuple[optuna.Study, RunJournal]:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="j")
    return study, RunJournal(study, NO_WAIT)


def _launch(number: int = 0, **changes: Any) -> LaunchRecord:
    fields: dict[str, Any] = {
        "trial_number": number,
        "rung": 0,
        "workers": 2,
        "lanes": (0, 1),
        "started_at": 1.0,
        "finished_at": 31.0,
        "state": "succeeded",
        "train_seconds": 20.0,
        "epochs": 2,
        "message": "",
        "checkpoint": "/ckpt/trial-0/rung-0.ckpt",
    }
    return LaunchRecord(**{**fields, **changes})


def _progress(**changes: Any) -> Progress:
    done = RungRecord(RUNGS[0], 0.0, 40.0, (0, 1, 2, 3), (1, 3), (0, 2), 80.0, (_launch(),))
    fields: dict[str, Any] = {"rung": 1, "rungs": RUNGS, "slots": 2, "done": (done,)}
    return Progress(**{**fields, **changes})


def test_progress_is_stored_and_read_back_with_its_rungs_done_but_not_their_launches() -> None:
    _, journal = _journal()
    assert journal.progress() is None
    progress = _progress(notes=("one", "two"), retried=2, fallbacks=1)
    journal.save_progress(progress)
    back = journal.progress()
    assert back is not None
    assert back.done[0].launches == ()  # kept per trial, not twice
    assert back == replace(progress, done=(replace(progress.done[0], launches=()),))


def test_only_the_last_50_notes_of_500_characters_are_kept() -> None:
    stored = _progress(notes=tuple(f"{i}" + "x" * 600 for i in range(60))).to_dict()
    assert len(stored["notes"]) == 50 and stored["notes"][0].startswith("10x")
    assert {len(note) for note in stored["notes"]} == {500}


def test_progress_from_an_older_driver_reads_with_defaults() -> None:
    old = {"rung": 0, "rungs": [r.__dict__ for r in RUNGS]}
    progress = Progress.from_dict(old)
    assert progress.sampled and progress.done == () and progress.notes == ()
    assert (progress.slots, progress.finished_at, progress.stopped) == (None, None, None)
    assert progress.rungs == RUNGS


def test_a_launch_in_flight_is_cleared_when_its_record_is_kept() -> None:
    study, journal = _journal()
    trial = study.ask()
    journal.set_in_flight(trial_id_of(trial), InFlight(rung=0, workers=2, started_at=5.0, launch=0))
    frozen = journal.trial(trial_id_of(trial))
    assert InFlight.of(frozen) == InFlight(0, 2, 5.0, 0)
    journal.record_launch(frozen, _launch(message="x" * 700))
    again = journal.trial(trial_id_of(trial))
    assert InFlight.of(again) is None
    (kept,) = launches_of(again)
    assert kept == _launch(message="x" * 500)  # lanes back as a tuple, message trimmed
    journal.record_launch(again, _launch(rung=1))
    assert [r.rung for r in launches_of(journal.trial(trial_id_of(trial)))] == [0, 1]


def test_charges_add_up_and_closing_an_account_stops_its_clock() -> None:
    study, journal = _journal()
    trial = study.ask()
    journal.charge(journal.trial(trial_id_of(trial)), 30.0, 100.0, None)
    journal.charge(journal.trial(trial_id_of(trial)), 12.0, 120.0, None)
    assert charged_of(journal.trial(trial_id_of(trial))) == (42.0, 120.0)
    journal.close_account(trial_id_of(trial), lambda: 150.0)
    assert charged_of(journal.trial(trial_id_of(trial))) == (42.0, 150.0)


def test_the_driver_marks_its_heartbeat_and_its_pause() -> None:
    _, journal = _journal()
    assert journal.driver_marks() == (None, None)
    journal.heartbeat(10.0)
    journal.mark_paused(12.5)
    assert journal.driver_marks() == (10.0, 12.5)


def test_launches_a_stopped_driver_left_running_are_charged_up_to_the_right_moment() -> None:
    assert lost_until(100.0, None, None, True) == (100.0, "the resume")
    assert lost_until(100.0, 50.0, None, False) == (100.0, "the resume")
    assert lost_until(100.0, 50.0, None, True) == (60.0, "the driver's last heartbeat")
    assert lost_until(100.0, 95.0, None, True) == (100.0, "the driver's last heartbeat")
    # A pause at (or after) the last heartbeat: Ctrl-C stopped them then.
    assert lost_until(100.0, 50.0, 50.0, False) == (50.0, "the Ctrl-C that paused the driver")
    assert lost_until(100.0, 60.0, 50.0, True) == (70.0, "the driver's last heartbeat")


def _locked() -> OperationalError:
    return OperationalError("UPDATE ...", {}, Exception("database is locked"))


WRITES: dict[str, Callable[[RunJournal, int], object]] = {
    "save_progress": lambda j, t: j.save_progress(_progress()),
    "heartbeat": lambda j, t: j.heartbeat(1.0),
    "mark_paused": lambda j, t: j.mark_paused(1.0),
    "set_in_flight": lambda j, t: j.set_in_flight(t, InFlight(0, 1, 1.0, 0)),
    "clear_in_flight": lambda j, t: j.clear_in_flight(t),
    "record_launch": lambda j, t: j.record_launch(j.trial(t), _launch()),
    "set_stop_reason": lambda j, t: j.set_stop_reason(t, "deadline"),
    "set_placement": lambda j, t: j.set_placement(t, {"gpus": [1], "ends": [1]}),
    "charge": lambda j, t: j.charge(j.trial(t), 1.0, 1.0, None),
    "close_account": lambda j, t: j.close_account(t, lambda: 1.0),
    "start_clock": lambda j, t: j.start_clock(1.0),
}


def _failing(call: Callable[..., Any], failures: list[BaseException]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return call(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_survives_a_locked_storage(write: str, monkeypatch: pytest.MonkeyPatch) -> None:
    study, journal = _journal()
    trial_id = trial_id_of(study.ask())
    storage = storage_of(study)
    pending: list[list[BaseException]] = []
    for method in ("set_study_system_attr", "set_trial_system_attr"):
        pending.append([_locked()])
        monkeypatch.setattr(storage, method, _failing(getattr(storage, method), pending[-1]))
    WRITES[write](journal, trial_id)
    assert sum(map(len, pending)) < 2  # it met the lock, and got through


def test_writes_that_used_to_go_unretried_now_land_after_a_lock() -> None:
    # The stop reason and the placement were written without retries before the journal.
    study, journal = _journal()
    trial_id = trial_id_of(study.ask())
    storage = storage_of(study)
    original = storage.set_trial_system_attr
    failures: list[BaseException] = [_locked(), _locked()]
    storage.set_trial_system_attr = _failing(original, failures)  # type: ignore[method-assign]
    journal.set_stop_reason(trial_id, "budget")
    failures.extend([_locked(), _locked()])
    journal.set_placement(trial_id, {"gpus": [2]})
    attrs = storage.get_trial_system_attrs(trial_id)
    assert attrs[TRIAL_STOP_REASON] == "budget" and attrs[TRIAL_PLACEMENT] == {"gpus": [2]}


def test_reads_are_retried_too(monkeypatch: pytest.MonkeyPatch) -> None:
    study, journal = _journal()
    trial_id = trial_id_of(study.ask())
    storage = storage_of(study)
    for method in ("get_study_system_attrs", "get_trial", "get_trial_system_attrs"):
        failures: list[BaseException] = [_locked()]
        monkeypatch.setattr(storage, method, _failing(getattr(storage, method), failures))
    assert journal.progress() is None
    assert journal.trial(trial_id).number == 0
    assert not journal.beyond_plan(trial_id)


def test_a_storage_that_stays_locked_is_named_once_the_retries_run_out() -> None:
    study, journal = _journal()
    storage = storage_of(study)
    storage.set_study_system_attr = _failing(  # type: ignore[method-assign]
        storage.set_study_system_attr, [_locked() for _ in range(NO_WAIT.attempts)]
    )
    with pytest.raises(StorageUnavailableError, match="record the driver's heartbeat failed 3"):
        journal.heartbeat(1.0)


def test_an_error_that_will_not_pass_is_not_retried() -> None:
    study, journal = _journal()
    storage = storage_of(study)
    failures: list[BaseException] = [KeyError("no such study"), _locked()]
    storage.set_study_system_attr = _failing(  # type: ignore[method-assign]
        storage.set_study_system_attr, failures
    )
    with pytest.raises(KeyError):
        journal.heartbeat(1.0)
    assert len(failures) == 1  # the second (transient) failure was never reached
