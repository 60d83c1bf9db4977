"""Launch start-ups in the asynchronous budget guard's measured slowdown.

The ledger charges a leased trial from its workers' grant, start-up included; the plan times
a start-up at each launch (``Rung.startup_s``, ``Plan.launch_starts``). Before both sides
counted it, the guard read start-ups as slower epochs: on the replayed ``seer-pool`` arm
(30 s start-up, 60 s epochs) the study's slowdown read 1.13 and rung 0's 1.5 with epochs
exactly as planned, so every running trial's commitment was inflated by that much.
"""

from __future__ import annotations

import optuna
import pytest

from benchmarks import seer_pool
from benchmarks.baselines import Scenario
from benchmarks.curves import CurveSet
from optuna_seer import ClusterLimits, Plan, SeerPruner, SeerSampler, Workload
from optuna_seer.backends.replay import RecordedCurve
from optuna_seer.integration.keys import TRIAL_LEASE
from optuna_seer.integration.leases import acquire
from optuna_seer.integration.reruns import rerun_cost
from optuna_seer.planning.cost_model import RungShape, schedule
from tests.clocks import SimulatedClock

EPOCHS = 9


def _curve(final: float, speed: float) -> RecordedCurve:
    val = tuple(round(final * (1 - (1 - speed) ** (e + 1)), 4) for e in range(EPOCHS))
    return RecordedCurve(val_acc=val, test_acc=val)


CURVES = CurveSet(
    dataset="synthetic",
    configs=tuple({"config_id": i} for i in range(40)),
    curves=tuple(_curve(0.5 + 0.01 * i, 0.2 + 0.03 * (i % 7)) for i in range(40)),
    epoch_seconds=tuple(0.01 for _ in range(40)),
)


@pytest.mark.parametrize("startup", [0.0, 30.0, 120.0])
def test_start_ups_as_long_as_planned_do_not_read_as_slower_epochs(startup: float) -> None:
    scenario = Scenario(
        "exact",
        deadline_s=1800.0,
        dollars=6.0,
        scaling="babi",
        startup_seconds=startup,
        straggler_cv=0.0,
    )
    run = seer_pool.play_seer_pool(scenario, CURVES, seed=0)
    assert run.outcome.within_budget and run.outcome.within_deadline
    pruner = run.study.pruner
    assert isinstance(pruner, SeerPruner)
    assert {r.startup_s for r in pruner.plan.rungs} == {startup}
    view, _ = pruner.spend_view(run.study, run.ended_at, None)
    assert view.scale == pytest.approx(1.0, abs=0.01)
    assert view.scales == pytest.approx([1.0] * len(view.scales), abs=0.01)


def test_a_rerun_is_priced_with_a_start_up_per_launch() -> None:
    plan = seer_pool.pool_plan(
        Scenario("s", deadline_s=1800.0, dollars=6.0, scaling="babi", startup_seconds=30.0),
        CURVES,
    )
    launches = sorted(plan.launch_starts)
    assert launches[0] == 0
    extra = sum(plan.rungs[i].startup_s for i in launches)
    assert rerun_cost(plan, 1.0)[0] == pytest.approx(
        sum((r.resource - plan.epochs_before(r.index)) * r.epoch_seconds for r in plan.rungs)
        + extra
    )


def test_the_slowdown_script_reads_about_one_on_the_replay(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import pool_slowdown

    assert pool_slowdown.main(["--seeds", "1", "--datasets", "wine"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert len(rows) == 3
    for row in rows:
        assert abs(float(row[5]) - 1.0) < 0.05, row


def _three_rungs() -> Plan:
    """Rungs of 3, 1 and 1 trials to 1, 3 and 9 epochs of 60 s, 30 s start-up per launch."""
    workload = Workload(epoch_seconds=60, scaling="linear", max_epochs=9, startup_seconds=30)
    return Plan(
        rungs=schedule(
            [RungShape(3, 1, 1), RungShape(1, 3, 1), RungShape(1, 9, 1)],
            workload,
            0.001,
            ClusterLimits(),
        ),
        reduction_factor=3,
        deadline_s=1e7,
        budget_dollars=1e7,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )


def _survivor_at_the_last_rungs_door() -> tuple[
    SimulatedClock, SeerPruner, optuna.Study, optuna.Trial
]:
    """One trial of :func:`_three_rungs` on leased workers (``rungs()``), through rung 1's
    end (3 epochs of 60 s) and promoted: between rungs, holding no workers."""
    clock = SimulatedClock()
    plan = _three_rungs()
    assert sorted(plan.launch_starts) == [0, 2]  # the last rung is a launch of its own
    pruner = SeerPruner(plan=plan, clock=clock)
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, TRIAL_LEASE, None)
    for epoch in range(1, 4):
        clock.now += 60
        trial.report(0.1 * epoch, epoch)
        assert not trial.should_prune()
    return clock, pruner, study, trial


def test_a_survivor_waiting_for_its_workers_is_committed_its_launch_and_whole_rung() -> None:
    """A leased survivor between rungs, waiting for its workers, still has the next launch's
    start-up and every epoch of its rung ahead. Its
    commitment used to decay with the wait, down to all epochs but one and no start-up, so
    the guard was optimistic about exactly the trials about to spend."""
    clock, pruner, study, _ = _survivor_at_the_last_rungs_door()
    rung = pruner.plan.rungs[2]
    ahead = (rung.startup_s + (rung.resource - 3) * rung.epoch_seconds) * rung.gpus_per_trial
    for waited in (0.0, 100.0, 1000.0):
        view, _ = pruner.spend_view(study, clock.now + waited, None)
        (mine,) = view.commitments
        assert (mine.rung, mine.epochs) == (2, 3)
        assert mine.gpu_seconds == pytest.approx(ahead)  # 390: 30 s start-up + 6 epochs


def test_a_survivor_granted_its_workers_is_projected_from_the_grant() -> None:
    """Once the waiting survivor's workers are granted, its account restarts at the grant,
    so its launch is projected from there: the floor of the wait (its whole launch and rung
    from now, however long it waited) stops, and the commitment decays as the launch runs.
    Before, it held until the first report, up to one start-up and one epoch too much."""
    clock, pruner, study, trial = _survivor_at_the_last_rungs_door()
    rung = pruner.plan.rungs[2]
    ahead = rung.startup_s + (rung.resource - 3) * rung.epoch_seconds  # 390 s on one worker
    granted = clock.now + 500.0  # it waited 500 s for its worker
    assert acquire(study, trial.number, pool="p", size=1, workers=1, rung=2, now=granted)
    unstarted = (rung.resource - 4) * rung.epoch_seconds  # no report yet: epoch 4 runs
    for since_grant, expected in ((0.0, ahead), (60.0, ahead - 60), (100.0, unstarted)):
        view, _ = pruner.spend_view(study, granted + since_grant, None)
        (mine,) = view.commitments
        assert mine.gpu_seconds == pytest.approx(expected)  # 390, 330, 300 (not 390 each)


def test_a_plain_trial_between_rungs_is_projected_on_its_schedule() -> None:
    """A trial reporting from its own process (no lease) goes on into its next rung at once:
    the floor of a waiting survivor must not apply to it."""
    clock = SimulatedClock()
    plan = _three_rungs()
    pruner = SeerPruner(plan=plan, clock=clock)
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )
    trial = study.ask()
    clock.now += 90  # its launch's 30 s start-up and one 60 s epoch, as planned
    trial.report(0.1, 1)  # rung 0's end: promoted, alone
    assert not trial.should_prune()
    view, _ = pruner.spend_view(study, clock.now + 100.0, None)
    (mine,) = view.commitments
    assert (mine.rung, mine.epochs) == (1, 1)
    assert mine.gpu_seconds == pytest.approx(60.0)  # epoch 3 not started; not both epochs
