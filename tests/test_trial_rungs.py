"""Elastic workers inside ``study.optimize``: leases through the storage, ``optuna_seer.rungs``.

Fast tests check the lease protocol on real storages (threads racing on SQLite, a dead
trial's lease, refusals); slow ones run ``study.optimize`` with real worker processes (a
torchrun gloo world for the two-worker rung) on SQLite and on a journal file, in one process
with ``n_jobs=2`` and in two processes, and kill one of them with SIGKILL.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
from pathlib import Path
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer import Plan, SeerPruner, SeerSampler, WorkerPool, rungs
from optuna_seer.execution import final_seat
from optuna_seer.execution.trial_rungs import study_log_dir
from optuna_seer.integration import heartbeat
from optuna_seer.integration.clock import study_time
from optuna_seer.integration.keys import (
    STUDY_PLAN,
    TRIAL_AWAITING_RERUN,
    TRIAL_AWAITING_SEAT,
    TRIAL_HEARTBEAT,
    TRIAL_LEASE,
)
from optuna_seer.integration.leases import (
    LeaseError,
    acquire,
    check_pool,
    leased,
    release,
)
from optuna_seer.integration.ledger import read_ledger
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "scripts" / "rung_worker.py") + ":train"


def pool_plan(deadline_s: float = 900.0) -> Plan:
    """Three configurations for one epoch on one worker each; the best one to epoch 3 on
    two workers: a survivor's last rung runs on more workers than its first."""
    workload = Workload(epoch_seconds=0.2, scaling="linear", max_epochs=3, startup_seconds=5)
    shapes = [RungShape(3, 1, 1), RungShape(1, 3, 2)]
    limits = ClusterLimits(max_gpus=2)
    return Plan(
        rungs=schedule(shapes, workload, 0.001, limits),
        reduction_factor=3,
        deadline_s=deadline_s,
        budget_dollars=100.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )


def seer_study(storage: object, name: str = "pool") -> optuna.Study:
    return optuna.create_study(
        storage=storage,  # type: ignore[arg-type]
        study_name=name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=SeerPruner(plan=pool_plan()),
        load_if_exists=True,
    )


# ------------------------------------------------------------------ the lease protocol


def test_racing_threads_never_share_a_slot_nor_exceed_the_pool(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'leases.db'}")
    trials = [study.ask() for _ in range(4)]
    size, holders, lock, errors = 3, {}, threading.Lock(), []
    granted = [0]

    def worker(number: int, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(12):
            want = rng.choice((1, 2))
            slots = acquire(study, number, pool="p", size=size, workers=want, rung=0, now=0.0)
            if slots is None:
                time.sleep(rng.random() * 0.01)
                continue
            with lock:
                granted[0] += 1
                clash = [s for s in slots if s in holders]
                if clash or len(holders) + len(slots) > size:
                    errors.append((number, slots, dict(holders)))
                holders.update(dict.fromkeys(slots, number))
            time.sleep(rng.random() * 0.01)
            with lock:
                for s in slots:
                    holders.pop(s, None)
            release(study, number, now=0.0)

    threads = [threading.Thread(target=worker, args=(t.number, i)) for i, t in enumerate(trials)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert granted[0] >= 8  # the pool was used, not refused throughout
    assert leased(study, "p") == {}


def test_a_lease_is_returned_by_release_and_by_the_trial_ending() -> None:
    study = optuna.create_study()
    first, second = study.ask(), study.ask()
    assert acquire(study, first.number, pool="p", size=2, workers=2, rung=0, now=0) == (0, 1)
    assert acquire(study, second.number, pool="p", size=2, workers=1, rung=0, now=0) is None
    assert leased(study, "p") == {0: first.number, 1: first.number}
    study.tell(first, 1.0)  # a finished trial holds nothing
    assert acquire(study, second.number, pool="p", size=2, workers=1, rung=0, now=0) == (0,)
    release(study, second.number, now=0)
    assert study.trials[second.number].system_attrs[TRIAL_LEASE] is None


def test_leased_workers_are_charged_to_the_ledger_until_returned() -> None:
    """What a trial's workers cost while leased reaches its account: returned by release()
    (settled first), or replaced by a new lease of the same trial; waiting costs nothing."""
    study = seer_study(None, "ledger")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    start = study_time(study, time.time)
    plan = Plan.from_dict(study._storage.get_study_system_attrs(study._study_id)[STUDY_PLAN])

    def spent(at: float) -> float:
        return read_ledger(study, plan, start + at).gpu_seconds

    assert acquire(study, trial.number, pool="p", size=2, workers=2, rung=0, now=start) == (0, 1)
    assert spent(4.0) == pytest.approx(8.0)  # accruing while held
    release(study, trial.number, now=start + 10.0)
    assert spent(100.0) == pytest.approx(20.0)  # 2 workers x 10 s, nothing after the return
    acquire(study, trial.number, pool="p", size=2, workers=1, rung=1, now=start + 120.0)
    acquire(study, trial.number, pool="p", size=2, workers=2, rung=1, now=start + 125.0)
    release(study, trial.number, now=start + 130.0)
    assert spent(200.0) == pytest.approx(20.0 + 5.0 + 10.0)


def test_a_survivor_waiting_for_several_workers_is_not_starved_by_newcomers() -> None:
    study = optuna.create_study()
    busy, survivor, newcomer = study.ask(), study.ask(), study.ask()
    assert acquire(study, busy.number, pool="p", size=3, workers=2, rung=0, now=0) == (0, 1)
    # The survivor of rung 0 needs 3 workers for rung 1: it queues, holding nothing.
    assert acquire(study, survivor.number, pool="p", size=3, workers=3, rung=1, now=1) is None
    assert study.trials[survivor.number].system_attrs[TRIAL_LEASE]["wait"] == 3
    # One slot is free, but it is kept for the survivor queued before the newcomer.
    assert acquire(study, newcomer.number, pool="p", size=3, workers=1, rung=0, now=2) is None
    release(study, busy.number, now=3)
    assert acquire(study, survivor.number, pool="p", size=3, workers=3, rung=1, now=3) == (
        0,
        1,
        2,
    )


def test_a_dead_trials_lease_returns_when_the_heartbeat_fails_it() -> None:
    study = optuna.create_study()
    dead, alive = study.ask(), study.ask()
    acquire(study, dead.number, pool="p", size=1, workers=1, rung=0, now=0)
    # Its process was killed: its last beat is long past its grace.
    study._storage.set_trial_system_attr(dead._trial_id, TRIAL_HEARTBEAT, [0.0, 3.0])
    assert acquire(study, alive.number, pool="p", size=1, workers=1, rung=0, now=0) is None
    assert heartbeat.fail_dead_trials(study, now=100.0) == [dead.number]
    assert acquire(study, alive.number, pool="p", size=1, workers=1, rung=0, now=0) == (0,)


def test_a_wait_loops_scan_for_dead_trials_runs_at_once_then_at_most_every_interval() -> None:
    study = optuna.create_study()
    first, second = study.ask(), study.ask()
    study._storage.set_trial_system_attr(first._trial_id, TRIAL_HEARTBEAT, [0.0, 3.0])
    scan = heartbeat.DeadTrialScan(study, every_s=3600.0)
    scan()  # the first call scans at once
    assert study.trials[first.number].state == TrialState.FAIL
    study._storage.set_trial_system_attr(second._trial_id, TRIAL_HEARTBEAT, [0.0, 3.0])
    scan()  # within the interval: no read of the study
    assert study.trials[second.number].state == TrialState.RUNNING
    heartbeat.DeadTrialScan(study, every_s=0.0)()
    assert study.trials[second.number].state == TrialState.FAIL


def test_bad_leases_are_refused_by_name() -> None:
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(LeaseError, match=r"asks for 3 workers but pool 'p' has 2"):
        acquire(study, trial.number, pool="p", size=2, workers=3, rung=0, now=0)
    with pytest.raises(LeaseError, match=r"workers=0 must be a positive int"):
        acquire(study, trial.number, pool="p", size=2, workers=0, rung=0, now=0)
    study.tell(trial, 0.0)
    with pytest.raises(LeaseError, match=r"trial 0 is COMPLETE: only a running trial"):
        acquire(study, trial.number, pool="p", size=2, workers=1, rung=0, now=0)
    check_pool(study, "host-a", 2)
    with pytest.raises(LeaseError, match=r"pool 'host-a' has 2 workers .* this process offers 4"):
        check_pool(study, "host-a", 4)
    check_pool(study, "host-b", 4)  # another host's pool is its own


def test_rungs_refuses_what_cannot_work(tmp_path: Path) -> None:
    plain = optuna.create_study(storage=f"sqlite:///{tmp_path / 'plain.db'}")
    with pytest.raises(ValueError, match=r"needs a study created with pruner=SeerPruner"):
        next(rungs(plain.ask()))
    study = seer_study(f"sqlite:///{tmp_path / 'seer.db'}")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    with pytest.raises(LeaseError, match=r"gives a trial 2 workers but pool 'one' has 1"):
        next(rungs(trial, pool=WorkerPool("one", 1)))
    in_memory = seer_study(None, "mem")
    with pytest.raises(ValueError, match=r"cannot be shared with worker processes"):
        next(rungs(in_memory.ask(), pool=WorkerPool("p", 2)))
    with pytest.raises(ValueError, match=r"poll_seconds=0 must be a positive number"):
        next(rungs(trial, pool=WorkerPool("p", 2), poll_seconds=0))


def test_a_rung_must_be_run_before_the_next_is_given(tmp_path: Path) -> None:
    study = seer_study(f"sqlite:///{tmp_path / 'seer.db'}")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    iterator = rungs(trial, pool=WorkerPool("p", 2))
    first = next(iterator)
    assert (first.index, first.end_epoch, first.workers, first.last) == (0, 1, 1, False)
    with pytest.raises(RuntimeError, match=r"rung 0 was not run; call rung.run"):
        next(iterator)


def pruner_of(study: optuna.Study) -> SeerPruner:
    assert isinstance(study.pruner, SeerPruner)
    return study.pruner


def trial_at_the_door(study: optuna.Study, value: float) -> optuna.Trial:
    """A trial of ``pool_plan`` that ended rung 0 on a leased worker with ``value`` and gave
    the worker back: it waits at the last rung's door for the rung's other values."""
    trial = study.ask()
    acquire(study, trial.number, pool="p", size=2, workers=1, rung=0, now=time.time())
    trial.report(value, 1)
    assert not trial.should_prune()
    release(study, trial.number, now=time.time())
    return trial


def test_a_trial_at_the_last_rungs_door_waits_for_one_still_being_sampled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rung 0 keeps 1 of 3. Trial 0 ended it (0.8); trial 1 runs but holds no workers yet (its
    sampling and lease take longer than the idle grace). Trial 0 must wait for trial 1's value
    (which beats it) rather than enter the last rung: before 2026-12-07 it waited only while
    workers were leased, and a real n_jobs=2 run under load trained two finalists of one."""
    monkeypatch.setattr(final_seat, "IDLE_GRACE_S", 0.3)
    study = seer_study(f"sqlite:///{tmp_path / 'seer.db'}")
    door = trial_at_the_door(study, 0.8)
    sampled = study.ask()

    pruned: list[bool] = []

    def reports_later() -> None:
        time.sleep(1.5)  # five idle graces
        acquire(study, sampled.number, pool="p", size=2, workers=1, rung=0, now=time.time())
        sampled.report(0.9, 1)
        pruned.append(sampled.should_prune())  # as its own runner asks, recording its rank

    thread = threading.Thread(target=reports_later)
    thread.start()
    with pytest.raises(optuna.TrialPruned, match=r"rung 0: displaced, 1 trials beat 0.8"):
        final_seat.wait_for_final_seat(study, door.number, pruner_of(study), 0.05)
    thread.join()
    assert pruned == [False]
    assert study.trials[door.number].system_attrs[TRIAL_AWAITING_SEAT] is False

    # Once every other running trial waits too (here: one asked beyond the plan, waiting to
    # learn whether it re-runs a finalist), nothing more can be learned: it goes.
    other = seer_study(f"sqlite:///{tmp_path / 'other.db'}")
    door = trial_at_the_door(other, 0.8)
    rerun = other.ask()
    other._storage.set_trial_system_attr(rerun._trial_id, TRIAL_AWAITING_RERUN, True)
    final_seat.wait_for_final_seat(other, door.number, pruner_of(other), 0.05)  # it goes


def test_a_door_trial_failed_by_another_process_ends_its_wait_without_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While trial 0 waits at the door, another process takes it for dead and fails it, and
    the study's other trial ends. The wait then ends as usual, and the lease that would
    follow refuses the failed trial by name. Clearing the trial's awaiting-seat mark on the
    way out must not raise Optuna's ``UpdateFinishedTrialError`` in place of that (it did
    before 2026-12-08)."""
    monkeypatch.setattr(final_seat, "IDLE_GRACE_S", 0.3)
    study = seer_study(f"sqlite:///{tmp_path / 'seer.db'}")
    door = trial_at_the_door(study, 0.8)
    other = study.ask()  # a running trial: the door waits

    def elsewhere() -> None:
        time.sleep(0.5)
        study._storage.set_trial_state_values(door._trial_id, TrialState.FAIL)
        study.tell(other, state=TrialState.FAIL)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    final_seat.wait_for_final_seat(study, door.number, pruner_of(study), 0.05)
    thread.join()
    assert study.trials[door.number].state == TrialState.FAIL
    with pytest.raises(LeaseError, match=r"trial 0 is FAIL: only a running trial"):
        acquire(study, door.number, pool="p", size=2, workers=1, rung=1, now=time.time())


# ------------------------------------------------------------------ real processes


def objective_for(pool: WorkerPool, checkpoints: Path) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.1, 1.0)
        value = float("nan")
        for rung in rungs(trial, pool=pool, checkpoints=checkpoints, poll_seconds=0.1):
            value = rung.run(WORKER, {"x": x, "sleep": 0.3})
        return value

    return objective


def launches(log: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def peak_workers(records: list[dict[str, float]]) -> int:
    """The most workers that trained at one moment, over every launch."""
    events = sorted(
        [(r["start"], r["world"]) for r in records] + [(r["end"], -r["world"]) for r in records],
        key=lambda e: (e[0], e[1]),
    )
    peak = now = 0
    for _, change in events:
        now += int(change)
        peak = max(peak, now)
    return peak


def check_finished(study: optuna.Study, records: list[dict[str, float]]) -> None:
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 1, states
    assert states.count(TrialState.PRUNED) >= 2, states
    finalist = next(t for t in study.trials if t.state == TrialState.COMPLETE)
    assert finalist.last_step == 3
    # Its last rung ran as one two-process gloo world; its first on one worker.
    theirs = sorted((r["rung"], r["world"]) for r in records if r["trial"] == finalist.number)
    assert theirs == [(0, 1), (1, 2)]
    assert peak_workers(records) <= 2
    assert all(t.system_attrs.get(TRIAL_LEASE) is None for t in study.trials)


def test_threads_starting_a_studys_first_launches_together_share_one_log_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    start = threading.Barrier(16)
    found: list[Path] = []

    def first_launch() -> None:
        start.wait()
        found.append(study_log_dir("s/1", f"sqlite:///{tmp_path}/one.db"))

    threads = [threading.Thread(target=first_launch) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and list(tmp_path.iterdir()) == [found[0]]
    assert found[0].name.startswith("seer-logs-s_1-")  # the study's name, made path-safe


@pytest.mark.slow
def test_study_optimize_n_jobs_2_gives_a_survivor_two_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "launches.jsonl"
    monkeypatch.setenv("SEER_TEST_LOG", str(log))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the launch logs go
    study = seer_study(f"sqlite:///{tmp_path / 'seer.db'}")
    pool = WorkerPool("test", 2)
    study.optimize(objective_for(pool, tmp_path / "ckpt"), n_jobs=2)
    check_finished(study, launches(log))
    # Every launch logs to one directory of the study (one per launch, before).
    (logs,) = tmp_path.glob("seer-logs-*")
    assert logs == study_log_dir(study.study_name, f"sqlite:///{tmp_path / 'seer.db'}")
    names = {f.name for f in logs.iterdir()}
    assert names and all(re.fullmatch(r"trial-\d+-rung-\d+\.log", name) for name in names)
    assert not list(tmp_path.glob("seer-local-*"))


def continuing_plan() -> Plan:
    """Nine configurations for one epoch, three to epoch 2, one to epoch 3: on one worker
    throughout, so a survivor keeps its worker from rung 0 into rung 1."""
    workload = Workload(epoch_seconds=0.2, scaling="linear", max_epochs=3, startup_seconds=5)
    shapes = [RungShape(9, 1, 1), RungShape(3, 2, 1), RungShape(1, 3, 1)]
    return Plan(
        rungs=schedule(shapes, workload, 0.001, ClusterLimits(max_gpus=2)),
        reduction_factor=3,
        deadline_s=900.0,
        budget_dollars=100.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )


@pytest.mark.slow
def test_a_survivor_that_keeps_its_workers_goes_on_in_the_same_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "launches.jsonl"
    monkeypatch.setenv("SEER_TEST_LOG", str(log))
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'seer.db'}",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=SeerPruner(plan=continuing_plan()),
    )
    study.optimize(objective_for(WorkerPool("test", 2), tmp_path / "ckpt"), n_jobs=4)
    records = launches(log)
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert finished and all(t.last_step == 3 for t in finished)
    # Asynchronous promotion cannot know the future: a trial enters the last rung once the
    # rung before has the plan's number of values and it leads them, and a later
    # configuration that beats it there enters too. So usually one finalist (the plan's last
    # width), sometimes two or three (CI saw three on 2026-12-08); but each finalist beat
    # every earlier one at rung 1, so none entered on a value already beaten.
    numbers = {t.number for t in finished}
    entered = [r["trial"] for r in records if r["rung"] == 2 and r["trial"] in numbers]
    at_rung_1 = [study.trials[n].intermediate_values[2] for n in entered]
    assert sorted(entered) == sorted(numbers) and at_rung_1 == sorted(at_rung_1), at_rung_1
    for trial in finished:
        # Rungs 0 and 1 in one launch (no relaunch at the rung end); the last rung, entered
        # once its place was certain, in a second one.
        assert [r["rung"] for r in records if r["trial"] == trial.number] == [0, 2]
    promoted = [t for t in study.trials if (t.last_step or 0) >= 2]
    assert len(promoted) >= 3  # the rung-1 survivors went on without a relaunch
    for trial in promoted:
        assert next(r["rung"] for r in records if r["trial"] == trial.number) == 0
    assert peak_workers(records) <= 2
    assert leased(study, "test") == {}


PROCESS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import optuna
    from optuna_seer import WorkerPool
    from optuna_seer.integration import heartbeat
    from test_trial_rungs import objective_for, seer_study
    from pathlib import Path

    heartbeat.configure(0.3, 1.5)
    storage = {storage!r}
    if storage.endswith(".log"):
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(storage)
        )
    study = seer_study(storage)
    study.optimize(objective_for(WorkerPool("test", 2), Path({checkpoints!r})), n_trials=3)
    """
)


def start_process(storage: str, tmp_path: Path, log: Path) -> subprocess.Popen[bytes]:
    code = PROCESS.format(
        tests=str(ROOT / "tests"), storage=storage, checkpoints=str(tmp_path / "ckpt")
    )
    env = {**os.environ, "SEER_TEST_LOG": str(log), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, start_new_session=True, cwd=tmp_path
    )


def open_study(storage: str) -> optuna.Study:
    if storage.endswith(".log"):
        journal = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(storage)
        )
        return optuna.load_study(study_name="pool", storage=journal)
    return optuna.load_study(study_name="pool", storage=storage)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_processes_share_the_pool(kind: str, tmp_path: Path) -> None:
    storage = (
        f"sqlite:///{tmp_path / 'seer.db'}" if kind == "sqlite" else str(tmp_path / "seer.log")
    )
    seer_study(
        storage
        if kind == "sqlite"
        else optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    )
    log = tmp_path / "launches.jsonl"
    processes = [start_process(storage, tmp_path, log) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=240) == 0
    check_finished(open_study(storage), launches(log))


@pytest.mark.slow
def test_a_killed_process_returns_its_lease_and_the_study_finishes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'seer.db'}"
    seer_study(storage)
    log = tmp_path / "launches.jsonl"
    victim = start_process(storage, tmp_path, log)
    # Wait until the victim's trial holds a lease, then kill its whole process group.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        trials = open_study(storage).trials
        held = [(t.system_attrs.get(TRIAL_LEASE) or {}).get("slots") for t in trials]
        if any(t.state == TrialState.RUNNING and h for t, h in zip(trials, held)):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the victim never leased workers")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    survivor = start_process(storage, tmp_path, log)
    assert survivor.wait(timeout=240) == 0
    study = open_study(storage)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "dead: no heartbeat" in failed[0].system_attrs["seer:stop_reason"]
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
    assert leased(study, "test") == {}  # the failed trial's record holds no slot


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_finalist_the_deadline_ends_completes_with_the_epochs_it_trained(
    tmp_path: Path,
) -> None:
    """One configuration, one epoch, then 199 more in the last rung, which the 60 s deadline
    cannot hold (half a second each): the finalist trains while an epoch still fits, then
    its workers stop and checkpoint and the objective returns its last value, COMPLETE;
    before 2026-12-06 it was stopped at its first report there, PRUNED, with no result."""
    workload = Workload(epoch_seconds=0.5, scaling="linear", max_epochs=200, startup_seconds=5)
    plan = Plan(
        rungs=schedule(
            [RungShape(1, 1, 1), RungShape(1, 200, 1)], workload, 0.001, ClusterLimits(max_gpus=1)
        ),
        reduction_factor=3,
        deadline_s=60.0,
        budget_dollars=100.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'seer.db'}",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=SeerPruner(plan=plan),
    )
    pool = WorkerPool("test", 1)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.1, 1.0)
        value = float("nan")
        for rung in rungs(trial, pool=pool, checkpoints=tmp_path / "ckpt", poll_seconds=0.1):
            value = rung.run(WORKER, {"x": x, "sleep": 0.5})
        return value

    started = time.monotonic()
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.system_attrs
    assert trial.system_attrs["seer:stop_reason"].startswith("deadline, last rung:")
    assert 1 < (trial.last_step or 0) < 200
    assert trial.value == pytest.approx(trial.params["x"] * trial.last_step)
    assert time.monotonic() - started < 60.0 + 15.0
