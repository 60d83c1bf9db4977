"""``study.optimize`` with SeerSampler + SeerPruner holds the budget and the final rung's width.

Epochs run 1x, 1.5x and 3x slower than the profile the plan was made from. Time is a
simulated clock advanced by the objective (one process, one thread) or real sleeps of a few
milliseconds (threads, and processes sharing a SQLite/journal study). The spend is read from
the study's ledger (:func:`optuna_seer.integration.ledger.read_ledger`).

Measure the spend ratios by hand with::

    .venv/bin/python tests/faults/test_fault_optimize_budget.py
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
import os
from pathlib import Path
import subprocess
import sys
import time

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
import pytest

from optuna_seer import Budget, ClusterLimits, Plan, SeerPruner, SeerSampler, Workload, plan_seer
from optuna_seer.integration.keys import STUDY_PLAN, stop_reason
from optuna_seer.integration.ledger import read_ledger, trial_account
from optuna_seer.integration.reruns import rerun_of
from optuna_seer.integration.seats import seat_holders
from optuna_seer.integration.trial_gpus import implicit_placement, placement_of

BUDGET_DOLLARS = 0.05
EPOCHS_IN_BUDGET = 50  # the budget pays this many profiled one-GPU epochs
MAX_EPOCHS = 9
SLOWDOWNS = (1.0, 1.5, 3.0)


def make_plan(epoch_seconds: float, max_gpus: int = 4) -> Plan:
    """A 3-rung plan on one GPU per trial whose budget pays ``EPOCHS_IN_BUDGET`` epochs."""
    price_per_gpu_hour = BUDGET_DOLLARS / (EPOCHS_IN_BUDGET * epoch_seconds) * 3600
    return plan_seer(
        Budget(deadline="1h", dollars=BUDGET_DOLLARS, price_per_gpu_hour=price_per_gpu_hour),
        Workload(epoch_seconds=epoch_seconds, scaling="linear", max_epochs=MAX_EPOCHS),
        3,
        limits=ClusterLimits(max_gpus=max_gpus),
        min_marginal_speedup=1.0,
    )


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def curve_objective(
    plan: Plan, slowdown: float, advance: Callable[[float], None]
) -> Callable[[optuna.Trial], float]:
    """Train ``MAX_EPOCHS`` epochs, each ``slowdown`` times the plan's epoch time."""

    def objective(trial: optuna.Trial) -> float:
        quality = trial.suggest_float("quality", 0.0, 1.0)
        value = 0.0
        for epoch in range(1, plan.max_epochs + 1):
            advance(plan.rung_for_step(epoch - 1).epoch_seconds * slowdown)
            value = quality * (1 - math.exp(-epoch / 3))
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    return objective


@dataclass(frozen=True)
class Spend:
    """What a study spent against its plan."""

    ratio: float  # dollars spent / budget
    increment: float  # one epoch at the slowest measured rate, as a fraction of the budget
    started_after_budget: int  # trials placed once the ledger showed the budget spent
    fully_trained: int  # trials that reported the last epoch (re-runs of parked trials too)
    finalists: int  # fully trained and not displaced by better trials at a rung they passed
    final_width: int  # the plan's final rung width
    placed: int
    width: int


def spend_of(study: optuna.Study, plan: Plan, now: float, slowdown: float) -> Spend:
    trials = study.get_trials(deepcopy=False)
    rule = implicit_placement(study._storage, study._study_id)
    placed = [t for t in trials if placement_of(t, rule) is not None]
    configurations = [t for t in placed if rerun_of(t) is None]  # a re-run is one of them again
    ledger = read_ledger(study, plan, now, trials)
    # When was the budget gone? Replay the rung-end records and final accounts in time order.
    started_after = 0
    spent_at = budget_gone_at(study, plan, placed, rule)
    if spent_at is not None:
        started_after = sum(1 for t in placed if placed_at(t, rule) > spent_at)
    epoch_dollars = (
        max(r.epoch_seconds * r.gpus_per_trial for r in plan.rungs)
        * slowdown
        * plan.price_per_gpu_second
    )
    return Spend(
        ratio=ledger.spent_dollars / plan.budget_dollars,
        increment=epoch_dollars / plan.budget_dollars,
        started_after_budget=started_after,
        fully_trained=sum(1 for t in placed if (t.last_step or 0) >= plan.max_epochs),
        finalists=len(seat_holders(plan, trials, study.direction == StudyDirection.MAXIMIZE)),
        final_width=plan.rungs[-1].n_trials,
        placed=len(configurations),
        width=plan.n_configs,
    )


def placed_at(trial: FrozenTrial, rule: object) -> float:
    placement = placement_of(trial, rule)  # type: ignore[arg-type]
    assert placement is not None
    return float(placement["placed_at"])


def budget_gone_at(
    study: optuna.Study, plan: Plan, placed: list[FrozenTrial], rule: object
) -> float | None:
    """The first moment the ledger showed the budget spent (accrual at 1 GPU per trial)."""
    budget_gpu_s = plan.budget_dollars / plan.price_per_gpu_second
    moments = sorted({placed_at(t, rule) for t in placed})
    ends = []
    for t in placed:
        start = placed_at(t, rule)
        account = trial_account(t, rule)  # type: ignore[arg-type]
        end = float(account[1]) if account is not None and t.state.is_finished() else None
        ends.append((start, end))
    horizon = max((e for _, e in ends if e is not None), default=max(moments, default=0.0))
    grid = sorted(set(moments) | {e for _, e in ends if e is not None} | {horizon})
    for moment in grid:
        spent = sum(max(min(e if e is not None else moment, moment) - s, 0.0) for s, e in ends)
        if spent >= budget_gpu_s * (1 - 1e-9):
            return moment
    return None


def run_simulated(slowdown: float, storage: object = None) -> Spend:
    """One process, one thread, on a simulated clock."""
    clock = SimulatedClock()
    plan = make_plan(epoch_seconds=10.0)
    study = optuna.create_study(
        direction="maximize",
        storage=storage,  # type: ignore[arg-type]
        pruner=SeerPruner(plan=plan, clock=clock),
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0), clock=clock),
    )

    def advance(seconds: float) -> None:
        clock.now += seconds

    study.optimize(curve_objective(plan, slowdown, advance), n_trials=200)
    return spend_of(study, plan, clock.now, slowdown)


THREAD_EPOCH_S = 0.02


def run_threads(slowdown: float, n_jobs: int = 4) -> Spend:
    """One process, ``n_jobs`` threads, real sleeps."""
    plan = make_plan(epoch_seconds=THREAD_EPOCH_S, max_gpus=n_jobs)
    study = optuna.create_study(
        direction="maximize",
        pruner=SeerPruner(plan=plan),
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
    )
    study.optimize(curve_objective(plan, slowdown, time.sleep), n_trials=200, n_jobs=n_jobs)
    return spend_of(study, plan, time.time(), slowdown)


PROCESS_EPOCH_S = 0.3


def worker_main(location: str, slowdown: float, seed: int) -> None:
    """One worker process of :func:`run_processes`."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = make_plan(epoch_seconds=PROCESS_EPOCH_S, max_gpus=3)
    study = optuna.load_study(
        study_name="shared",
        storage=open_storage(location),
        pruner=SeerPruner(plan=plan),
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=seed)),
    )
    study.optimize(curve_objective(plan, slowdown, time.sleep), n_trials=200)


def open_storage(location: str) -> optuna.storages.BaseStorage | str:
    if location.startswith("sqlite:"):
        return location
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(location))


def run_processes(slowdown: float, directory: Path, kind: str = "journal") -> Spend:
    """Three processes sharing one study."""
    location = (
        f"sqlite:///{directory / 'shared.db'}" if kind == "sqlite" else str(directory / "j.log")
    )
    optuna.create_study(study_name="shared", storage=open_storage(location), direction="maximize")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", location, str(slowdown), str(seed)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(3)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=open_storage(location))
    plan = Plan.from_dict(study._storage.get_study_system_attrs(study._study_id)[STUDY_PLAN])
    return spend_of(study, plan, time.time(), slowdown)


def check(spend: Spend) -> None:
    assert spend.ratio <= 1 + spend.increment + 1e-9, spend
    assert spend.started_after_budget == 0, spend
    assert spend.finalists <= spend.final_width, spend
    assert spend.fully_trained <= spend.final_width, spend
    assert spend.placed <= spend.width, spend


@pytest.mark.parametrize("slowdown", SLOWDOWNS)
def test_one_process_holds_the_budget(slowdown: float) -> None:
    spend = run_simulated(slowdown)
    check(spend)
    if slowdown == 1.0:
        # As profiled, most of the width is trained: one at a time, ASHA promotes early trials
        # that better ones displace later, and what they trained is spent.
        assert spend.placed >= 0.75 * spend.width, spend
    if slowdown <= 1.5:
        # The trials parked at the last rung's door are re-run (after the last configuration,
        # or once the budget refuses new ones): the last rung trains its full width.
        assert spend.fully_trained == spend.final_width, spend


@pytest.mark.parametrize("slowdown", SLOWDOWNS)
def test_threads_hold_the_budget_and_the_final_width(slowdown: float) -> None:
    check(run_threads(slowdown))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
@pytest.mark.parametrize("slowdown", SLOWDOWNS)
def test_processes_hold_the_budget_and_the_final_width(
    slowdown: float, kind: str, tmp_path: Path
) -> None:
    check(run_processes(slowdown, tmp_path, kind))


def test_budget_is_checked_at_every_report_not_only_at_rung_ends() -> None:
    """A trial alone in a rung whose epochs turn slow is stopped mid-rung, as soon as the
    measured epoch time says the rung's end costs more than what is left."""
    clock = SimulatedClock()
    plan = make_plan(epoch_seconds=10.0)
    study = optuna.create_study(
        direction="maximize",
        pruner=SeerPruner(plan=plan, clock=clock),
        sampler=SeerSampler(clock=clock),
    )
    trial = study.ask()
    budget_s = plan.budget_dollars / plan.price_per_gpu_second
    for epoch in range(1, plan.max_epochs + 1):
        clock.now += budget_s / 4  # each epoch a quarter of the budget
        trial.report(0.1 * epoch, epoch)
        if trial.should_prune():
            break
    spent = read_ledger(study, plan, clock.now).spent_dollars
    assert spent <= plan.budget_dollars * (1 + 1e-9)
    reason = stop_reason(study._storage.get_trial(trial._trial_id))
    assert reason is not None and reason.startswith("budget:"), reason
    assert trial._cached_frozen_trial.last_step == 3  # stopped when a 5th quarter was projected


def rerun_objective(fail_at: int | None) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        quality = trial.suggest_float("quality", 0.0, 1.0)
        if trial.number == fail_at:
            raise RuntimeError("the machine died")
        trial.report(quality, MAX_EPOCHS)
        return quality

    return objective


def test_a_rerun_after_a_crash_trains_the_plans_full_width(tmp_path: Path) -> None:
    """Width is counted by placed configurations that did not fail, not by trial numbers."""
    storage = f"sqlite:///{tmp_path / 'rerun.db'}"
    plan = make_plan(epoch_seconds=10.0)

    def load() -> optuna.Study:
        clock = SimulatedClock()
        return optuna.load_study(
            study_name="rerun",
            storage=storage,
            pruner=SeerPruner(plan=plan, clock=clock),
            sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0), clock=clock),
        )

    optuna.create_study(study_name="rerun", storage=storage, direction="maximize")
    with pytest.raises(RuntimeError, match="the machine died"):
        load().optimize(rerun_objective(fail_at=3), n_trials=100)
    study = load()
    study.optimize(rerun_objective(fail_at=None), n_trials=100)
    trained = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(trained) == plan.n_configs
    assert len([t for t in study.trials if t.state == TrialState.FAIL]) == 1


def _report(label: str, spends: list[tuple[float, Spend]]) -> None:
    for slowdown, s in spends:
        print(
            f"{label:<28} epochs {slowdown:>3}x: spent {s.ratio:.3f}x budget "
            f"(+1 epoch = {s.increment:.3f}); placed {s.placed}/{s.width}; "
            f"started after the budget was gone {s.started_after_budget}; "
            f"fully trained {s.fully_trained}, finalists {s.finalists} (plan {s.final_width})"
        )


def main() -> None:
    import tempfile

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _report("one process, simulated", [(s, run_simulated(s)) for s in SLOWDOWNS])
    _report("one process, 4 threads", [(s, run_threads(s)) for s in SLOWDOWNS])
    for kind in ("sqlite", "journal"):
        spends = []
        for s in SLOWDOWNS:
            with tempfile.TemporaryDirectory() as directory:
                spends.append((s, run_processes(s, Path(directory), kind)))
        _report(f"3 processes, {kind}", spends)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
