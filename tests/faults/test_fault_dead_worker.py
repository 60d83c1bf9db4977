"""A ``study.optimize`` worker killed with ``kill -9`` (SQLite, SQLite with Optuna's own RDB
heartbeat, journal file): its trial is failed once it stops beating, charged up to its last
heartbeat, and its charge stops growing; the next trial started anywhere fails it."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from optimize_plan import PLAN
import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer.integration import heartbeat
from optuna_seer.integration.keys import stop_reason
from optuna_seer.integration.ledger import last_beat, read_ledger, trial_gpu_seconds
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.integration.trial_gpus import implicit_placement, placement_of

HERE = Path(__file__).parent


def _storage(kind: str, tmp_path: Path) -> tuple[str, optuna.storages.BaseStorage]:
    if kind == "journal":
        path = str(tmp_path / "study.log")
        backend = optuna.storages.journal.JournalFileBackend(path)
        return path, optuna.storages.JournalStorage(backend)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    if kind == "sqlite+optuna-heartbeat":
        return url, optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    return url, optuna.storages.RDBStorage(url)


def _study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.load_study(
        study_name="dead",
        storage=storage,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=2)),
        pruner=SeerPruner(plan=PLAN),
    )


@pytest.mark.parametrize("kind", ["sqlite", "sqlite+optuna-heartbeat", "journal"])
def test_a_killed_worker_is_failed_and_stops_costing(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, storage = _storage(kind, tmp_path)
    optuna.create_study(study_name="dead", storage=storage, direction="maximize")
    command = [sys.executable, str(HERE / "optimize_worker.py"), url, "dead", "--epoch-s", "1"]
    if kind == "sqlite+optuna-heartbeat":
        command.append("--optuna-heartbeat")
    worker = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=HERE.parents[1]
    )
    try:
        assert worker.stdout is not None
        seen = ""
        while "epoch 1" not in seen:
            line = worker.stdout.readline().decode()
            assert line, seen  # the worker ended before its first report
            seen += line
        time.sleep(0.7)  # a beat or two more
        os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.time()
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
        if worker.stdout is not None:
            worker.stdout.close()

    study = _study(storage)
    (dead,) = study.get_trials(deepcopy=False)
    assert dead.state == TrialState.RUNNING
    beat = last_beat(dead)
    assert beat is not None and beat[0] <= killed_at
    grace = beat[1]
    time.sleep(grace + 0.5)
    # Past its grace the dead trial's charge no longer grows (it did without limit before).
    first = read_ledger(study, PLAN, time.time()).gpu_seconds
    time.sleep(1.5)
    second = read_ledger(study, PLAN, time.time()).gpu_seconds
    assert second == pytest.approx(first, abs=1e-6)
    assert first <= (beat[0] + grace - dead.datetime_start.timestamp()) + 0.1  # type: ignore[union-attr]

    # The next trial started anywhere fails it, charged up to its last heartbeat.
    monkeypatch.setattr(heartbeat, "DEFAULT", heartbeat.HeartbeatSettings(0.3, 1.5))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    dead = study.get_trials(deepcopy=False)[0]
    assert dead.state == TrialState.FAIL
    if kind != "sqlite+optuna-heartbeat":  # there Optuna's fail_stale_trials failed it first
        reason = stop_reason(dead)
        assert reason is not None and reason.startswith("dead: no heartbeat"), reason
    # Its one GPU accrues from its placement (written at its start, a moment after Optuna's
    # datetime_start; the gap grows under load), so the charge is exactly placement to beat.
    implicit = implicit_placement(storage, study._study_id)
    charged = trial_gpu_seconds(dead, time.time(), implicit)
    placed = placement_of(dead, implicit)
    assert placed is not None
    placed_at = float(placed["placed_at"])
    assert dead.datetime_start.timestamp() <= placed_at + 1e-3  # type: ignore[union-attr]
    assert charged == pytest.approx(beat[0] - placed_at, abs=1e-3)
    assert 0.0 < charged <= killed_at - placed_at


_ORPHAN = """
import sys, time
import optuna
sys.path.insert(0, {here!r})
from test_fault_dead_worker import _storage
from pathlib import Path
_, storage = _storage({kind!r}, Path({tmp!r}))
study_id = storage.get_study_id_from_name("dead")
storage.create_new_trial(study_id)  # what study.ask does before SeerSampler.before_trial
print("created", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_worker_killed_before_its_first_heartbeat_is_failed_too(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first beat is written in the trial's start (``SeerSampler.before_trial``), after
    Optuna created the trial, so a worker can die between the two: the trial has no beat at
    all. The next trial start writes its first sighting as its beat, and a trial start a
    grace later fails it."""
    monkeypatch.setattr(heartbeat, "DEFAULT", heartbeat.HeartbeatSettings(0.3, 1.5))
    _, storage = _storage(kind, tmp_path)
    optuna.create_study(study_name="dead", storage=storage, direction="maximize")
    study = _study(storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)  # beats, settings stored
    source = _ORPHAN.format(here=str(HERE), kind=kind, tmp=str(tmp_path))
    orphan = subprocess.Popen(
        [sys.executable, "-c", source], stdout=subprocess.PIPE, cwd=HERE.parents[1]
    )
    try:
        assert orphan.stdout is not None
        assert orphan.stdout.readline().decode().strip() == "created"
        os.kill(orphan.pid, signal.SIGKILL)
        orphan.wait()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        if orphan.stdout is not None:
            orphan.stdout.close()
    dead = study.get_trials(deepcopy=False)[1]
    assert dead.state == TrialState.RUNNING and last_beat(dead) is None

    sighted_from = time.time()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    dead = study.get_trials(deepcopy=False)[1]
    beat = last_beat(dead)
    assert dead.state == TrialState.RUNNING and beat is not None  # its first sighting
    assert sighted_from - 0.1 <= beat[0] <= time.time() and beat[1] == 1.5
    time.sleep(beat[1] + 0.5)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    dead = study.get_trials(deepcopy=False)[1]
    assert dead.state == TrialState.FAIL
    reason = stop_reason(dead)
    assert reason is not None and reason.startswith("dead: no heartbeat"), reason
    # Placed implicitly (journal: its one GPU from Optuna's start time), it is charged up to the
    # sighting (an upper bound: it died before). On SQLite under Optuna 4 nothing placed it (it
    # died before its start wrote a placement), so SEER charges it nothing. Either way no further.
    implicit = implicit_placement(storage, study._study_id)
    placed = placement_of(dead, implicit)
    assert (placed is None) == (implicit is None)
    charged = trial_gpu_seconds(dead, time.time(), implicit)
    expected = 0.0 if placed is None else beat[0] - float(placed["placed_at"])
    assert charged == pytest.approx(expected, abs=1e-3)
    if placed is not None:
        assert charged > 0.0
    time.sleep(0.5)
    assert trial_gpu_seconds(dead, time.time(), implicit) == charged


def test_a_trial_beats_from_its_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first beat is written at the trial's start (with whatever else SEER writes there),
    not an interval later by the heartbeat thread."""
    monkeypatch.setattr(heartbeat, "DEFAULT", heartbeat.HeartbeatSettings(0.3, 1.0))
    _, storage = _storage("sqlite", tmp_path)
    optuna.create_study(study_name="dead", storage=storage, direction="maximize")
    study = _study(storage)
    asked = time.time()
    trial = study.ask()
    first = last_beat(storage.get_trial(trial._trial_id))
    assert first is not None, "no first heartbeat when the trial starts"
    assert asked - 0.1 <= first[0] <= time.time() and first[1] == 1.0
    deadline = time.monotonic() + 2.0  # the thread beats again within an interval (0.3 s)
    while (beat := last_beat(storage.get_trial(trial._trial_id))) == first:
        assert time.monotonic() < deadline, "no heartbeat after the first"
        time.sleep(0.02)
    assert beat is not None and beat[0] - first[0] <= 0.3 + 0.5
    study.tell(trial, 0.5)
