"""SeerPruner and SeerSampler inside real Optuna studies, on every storage."""

from __future__ import annotations

from collections import Counter
import math
import time

import optuna
from optuna.trial import FrozenTrial, TrialState
import pytest

from optuna_seer import (
    Budget,
    ClusterLimits,
    Plan,
    SeerPruner,
    SeerSampler,
    Workload,
    gpus_for,
    plan_seer,
)
from optuna_seer.integration.admission import DEADLINE_LAST_RUNG, out_of_time
from optuna_seer.integration.keys import (
    STUDY_PLAN,
    TRIAL_LEASE,
    TRIAL_LEDGER,
    TRIAL_PLACEMENT,
    TRIAL_SEGMENT,
    TRIAL_STOP_REASON,
    rung_end,
    rung_end_key,
    rung_value,
    rung_value_key,
    stop_reason,
)
from optuna_seer.integration.leases import acquire
from optuna_seer.integration.ledger import read_ledger, trial_account
from optuna_seer.integration.pruner import WAIT
from optuna_seer.integration.reruns import rerun_of
from optuna_seer.integration.seats import SEAT
from optuna_seer.integration.trial_gpus import placement
from optuna_seer.planning.cost_model import RungShape, schedule
from tests.clocks import SimulatedClock


def small_plan(dollars: float = 5.0, deadline: str = "2h") -> SeerPruner:
    return SeerPruner(
        Budget(deadline=deadline, dollars=dollars, price_per_gpu_hour=3.0),
        Workload(epoch_seconds=60, scaling="amdahl:0.9", max_epochs=9, gpus_per_node=4),
        reduction_factor=3,
        limits=ClusterLimits(max_gpus=16),
    )


def curve_objective(trial: optuna.Trial) -> float:
    quality = trial.suggest_float("quality", 0.0, 1.0)
    value = 0.0
    for epoch in range(1, 10):
        value = quality * (1 - math.exp(-epoch / 3))
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def test_async_study_follows_the_plan(storage: object) -> None:
    pruner = small_plan()
    plan = pruner.plan
    study = optuna.create_study(
        direction="maximize",
        storage=storage,
        pruner=pruner,  # type: ignore[arg-type]
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=1)),
    )
    study.optimize(curve_objective, n_trials=plan.n_configs + 5)
    trials = study.get_trials()
    # The width is enforced: the trial taking the last place (or, when trials were parked at
    # the last rung's door, the last re-run) stops the study, so no trial (and no objective
    # body) runs beyond it. A re-run trains a parked trial's configuration again.
    reruns = [t for t in trials if rerun_of(t) is not None]
    assert len(trials) == plan.n_configs + len(reruns)
    assert len(reruns) <= plan.rungs[-1].n_trials
    placed = [t for t in trials if rerun_of(t) is None]
    assert len(placed) == plan.n_configs
    refused = study.ask()  # asked beyond the width anyway (ask/tell): refused, not placed
    assert "beyond the plan's width" in refused._cached_frozen_trial.system_attrs.get(
        TRIAL_STOP_REASON,
        study._storage.get_trial_system_attrs(refused._trial_id)[TRIAL_STOP_REASON],
    )
    with pytest.raises(optuna.TrialPruned, match="beyond the plan's width"):
        refused.suggest_float("quality", 0.0, 1.0)
    study.tell(refused, state=TrialState.PRUNED)
    best_quality = max(t.params["quality"] for t in placed)
    assert study.best_trial.params["quality"] == best_quality  # the best is never lost
    for t in placed:  # every COMPLETE trial (or re-run one) ranks within each rung's survivors
        completed = t.state == TrialState.COMPLETE
        if not completed and not any(rerun_of(r) == t.number for r in reruns):
            continue
        for rung, following in zip(plan.rungs, plan.rungs[1:]):
            own = t.intermediate_values[rung.resource]
            better = [
                u
                for u in placed
                if u.intermediate_values.get(rung.resource, -1) > own and u.number < t.number
            ]
            assert len(better) < following.n_trials
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert completed and study.best_trial.state == TrialState.COMPLETE
    assert sum(1 for t in trials if t.last_step == plan.max_epochs) <= plan.rungs[-1].n_trials
    for t in trials:  # reports are consecutive epochs, no gaps or duplicates
        assert sorted(t.intermediate_values) == list(range(1, t.last_step + 1))  # type: ignore[operator]
        assert gpus_for(t, step=0, study=study) == plan.rungs[0].gpus_per_trial
        assert gpus_for(t, step=plan.max_epochs - 1, study=study) == plan.rungs[-1].gpus_per_trial
    stored = study._storage.get_study_system_attrs(study._study_id)[STUDY_PLAN]
    assert Plan.from_dict(stored) == plan  # every process reads the same plan
    ledger = read_ledger(study, plan, pruner.clock())
    assert 0 < ledger.spent_dollars < plan.budget_dollars


def test_synchronous_decision_keeps_exactly_the_top(storage: object) -> None:
    pruner = small_plan()
    plan = pruner.plan
    study = optuna.create_study(
        direction="maximize",
        storage=storage,
        pruner=pruner,  # type: ignore[arg-type]
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
    )
    first = plan.rungs[0]
    trials = [study.ask() for _ in range(first.n_trials)]
    values = {}
    for trial in trials:
        value = trial.suggest_float("quality", 0, 1)
        values[trial.number] = value
        trial.report(value, first.resource)
    decision = pruner.decide_rung(study, 0)
    expected = sorted(values, key=lambda n: (-values[n], n))[: plan.rungs[1].n_trials]
    assert list(decision.promoted) == expected
    assert set(decision.eliminated) == set(values) - set(expected)
    # The verdict reaches should_prune in the (synchronous) study, for every trial.
    for trial in trials:
        assert trial.should_prune() is (trial.number in decision.eliminated)
    # The asynchronous rule, for a trial that reaches the rung's end after every other one,
    # makes the same decision: the best, the last survivor, the first eliminated, the worst.
    ranked = sorted(values, key=lambda n: (-values[n], n))
    keep = plan.rungs[1].n_trials
    for last in (ranked[0], ranked[keep - 1], ranked[keep], ranked[-1]):
        pruned, reason = asynchronous_verdict_of_last(plan, values, last)
        assert pruned is (last in decision.eliminated), (last, reason)
        assert (reason is not None) is pruned
        if pruned:
            assert f"not in the top {keep}/{first.n_trials} of {first.n_trials}" in str(reason)


def asynchronous_verdict_of_last(
    plan: Plan, values: dict[int, float], last: int
) -> tuple[bool, str | None]:
    """SeerPruner's asynchronous verdict on trial ``last`` of a fresh in-memory study whose
    trials report ``values`` at the end of rung 0, ``last`` after all the others; and the
    reason it records (the storages themselves are covered by the synchronous half)."""
    study = optuna.create_study(
        direction="maximize",
        pruner=SeerPruner(plan=plan),
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
    )
    trials = [study.ask() for _ in values]
    for trial in trials:
        trial.report(values[trial.number], plan.rungs[0].resource)
    for trial in trials:
        if trial.number != last:
            trial.should_prune()
    pruned = trials[last].should_prune()
    return pruned, stop_reason(study.trials[last])


def test_at_the_last_rungs_door_a_trial_on_leased_workers_waits_instead_of_asha_rounding() -> None:
    """Rung 0 keeps 2 of 6. A trial second of the 5 values seen so far fails ASHA's rule (5 * 2
    // 6 = 1: only the best passes) and is pruned on the plain path, where it cannot wait; on
    leased workers (``rungs()``) it goes on to wait for the rung's sixth value
    (``final_rung_entry``) and stops only once two trials beat it. Before 2026-12-06 it was
    pruned there too, and a replayed pool often trained one finalist of the plan's two."""
    workload = Workload(epoch_seconds=1.0, scaling="linear", max_epochs=3)
    plan = Plan(
        rungs=schedule(
            [RungShape(6, 1, 1), RungShape(2, 3, 1)], workload, 0.001, ClusterLimits(max_gpus=8)
        ),
        reduction_factor=3,
        deadline_s=3600.0,
        budget_dollars=100.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )
    for leased in (False, True):
        study = optuna.create_study(
            direction="maximize",
            pruner=SeerPruner(plan=plan),
            sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        )
        trials = [study.ask() for _ in range(5)]
        for trial, value in zip(trials, (0.9, 0.5, 0.4, 0.3, 0.8), strict=True):
            if leased:
                acquire(study, trial.number, pool="p", size=8, workers=1, rung=0, now=time.time())
            trial.report(value, 1)
        for trial in trials[:-1]:
            trial.should_prune()
        assert trials[-1].should_prune() is not leased
        if leased:
            verdict = study.pruner.final_rung_entry(study, study.trials[-1])  # type: ignore[attr-defined]
            assert verdict == WAIT
            later = study.ask()
            acquire(study, later.number, pool="p", size=8, workers=1, rung=0, now=time.time())
            later.report(0.95, 1)
            assert not later.should_prune()
            verdict = study.pruner.final_rung_entry(study, study.trials[4])  # type: ignore[attr-defined]
            assert verdict is not None and "displaced" in verdict, verdict


def test_deadline_aware_pruning_records_why() -> None:
    clock = SimulatedClock()
    budget = Budget(deadline="10m", dollars=100, price_per_gpu_hour=3.0)
    plan = plan_seer(budget, Workload(epoch_seconds=30, scaling="linear", max_epochs=9))
    pruner = SeerPruner(plan=plan, clock=clock)
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    clock.now += 30
    trial.report(0.5, 1)
    assert not trial.should_prune()  # the first trial at a rung is the best seen
    clock.now += 500  # far slower than planned: 2 more epochs of rung 1 cannot fit
    trial.report(0.6, 2)
    assert trial.should_prune()
    reason = stop_reason(study.trials[0])
    assert reason is not None and reason.startswith("deadline: rung 1 needs")


def _leased_trial(rung: int, first_step: int, first_at: float, step: int) -> FrozenTrial:
    """A trial on leased workers (``rungs()``) that first reported inside ``rung`` at
    ``first_step`` at study time ``first_at`` and has now reported ``step``."""
    return optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params={},
        distributions={},
        intermediate_values={step: 0.9},
        system_attrs={TRIAL_LEASE: {"slots": [0]}, TRIAL_SEGMENT: [rung, first_at, first_step]},
    )


def test_a_finalist_on_leased_workers_trains_until_the_deadline_and_completes() -> None:
    """In the last rung, a finalist that cannot reach ``max_epochs`` by the deadline goes on
    while one more epoch fits and then stops with the reason ``rungs()`` completes on (before
    2026-12-06 it stopped at once, PRUNED, with most of the time left unused); in an earlier
    rung, or on the plain path, a trial that cannot end its rung stops at once."""
    plan = plan_seer(
        Budget(deadline="10m", dollars=100, price_per_gpu_hour=3.0),
        Workload(epoch_seconds=30, scaling="linear", max_epochs=9),
    )

    def started_at(now: float, left: float) -> float:
        """The study's start that leaves ``left`` seconds at ``now``."""
        return now + left - plan.deadline_s

    # Epoch 5 at 30 s after epoch 4: 4 epochs to go need 120 s.
    finalist = _leased_trial(plan.rungs[-1].index, 4, 0.0, 5)
    assert out_of_time(plan, finalist, 5, 30.0, started_at(30.0, 60.0), None) is None
    reason = out_of_time(plan, finalist, 5, 30.0, started_at(30.0, 40.0), None)
    assert reason is not None and reason.startswith(DEADLINE_LAST_RUNG), reason
    assert "epoch 5 of 9" in reason
    earlier = _leased_trial(1, 2, 0.0, 2)  # rung 1 trains epochs 2-3: 30 s to go
    reason = out_of_time(plan, earlier, 2, 30.0, started_at(30.0, 20.0), None)
    assert reason is not None and reason.startswith("deadline: rung 1 needs"), reason
    plain = optuna.trial.create_trial(
        state=TrialState.RUNNING, params={}, distributions={}, intermediate_values={5: 0.9}
    )
    reason = out_of_time(plan, plain, 5, 30.0, started_at(30.0, 60.0), None)
    assert reason is not None and reason.startswith("deadline: rung 2 needs"), reason


def test_budget_guard_stops_at_rung_end() -> None:
    clock = SimulatedClock()
    plan = plan_seer(
        Budget(deadline="10h", dollars=1.0, price_per_gpu_hour=3.6),
        Workload(epoch_seconds=60, scaling="linear", max_epochs=3),
    )
    pruner = SeerPruner(plan=plan, clock=clock)
    study = optuna.create_study(pruner=pruner, sampler=SeerSampler(clock=clock))
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    clock.now += 2000  # 2000 GPU-s at $0.001/GPU-s: twice the budget
    trial.report(0.1, plan.rungs[0].resource)
    assert trial.should_prune()
    reason = stop_reason(study.trials[0])
    assert reason is not None and reason.startswith("budget: $2.00 of $1.00")


def test_pruner_without_its_sampler_says_how_to_fix() -> None:
    study = optuna.create_study(pruner=small_plan())
    trial = study.ask()
    trial.report(1.0, 1)
    with pytest.raises(ValueError, match=r"sampler=SeerSampler\(...\)"):
        trial.should_prune()


def test_sampler_without_pruner_is_transparent() -> None:
    study = optuna.create_study(sampler=SeerSampler(optuna.samplers.RandomSampler(0)))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=5)
    assert len(study.trials) == 5 and all(t.state == TrialState.COMPLETE for t in study.trials)
    with pytest.raises(ValueError, match="has no SEER placement"):
        gpus_for(study.trials[0])


def test_non_finite_report_prunes_the_trial_with_the_reason() -> None:
    study = optuna.create_study(pruner=small_plan(), sampler=SeerSampler())
    trial = study.ask()
    trial.report(float("nan"), 1)
    assert trial.should_prune()
    reason = stop_reason(study._storage.get_trial(trial._trial_id))
    assert reason is not None and reason.startswith("reported nan at step 1")


def test_multi_objective_studies_are_refused() -> None:
    study = optuna.create_study(
        directions=["maximize", "minimize"], pruner=small_plan(), sampler=SeerSampler()
    )
    with pytest.raises(ValueError, match="directions="):
        study.ask()


def test_resuming_with_another_plan_is_refused(tmp_path: object) -> None:
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(
        study_name="s", storage=storage, pruner=small_plan(), sampler=SeerSampler()
    )
    study.ask()
    other = optuna.load_study(
        study_name="s", storage=storage, pruner=small_plan(dollars=40), sampler=SeerSampler()
    )
    with pytest.raises(ValueError, match="started with another SEER plan"):
        other.ask()
    same = optuna.load_study(
        study_name="s", storage=storage, pruner=small_plan(), sampler=SeerSampler()
    )
    same.ask()


def test_pruner_arguments_are_checked() -> None:
    plan = small_plan().plan
    with pytest.raises(ValueError, match="not both"):
        SeerPruner(Budget(deadline="1h", dollars=1, price_per_gpu_hour=1), plan=plan)
    with pytest.raises(ValueError, match="needs budget="):
        SeerPruner()
    with pytest.raises(TypeError, match="plan="):
        SeerPruner(plan="plan")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock="):
        SeerPruner(plan=plan, clock=3.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="base_sampler="):
        SeerSampler("tpe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rung_index=5"):
        SeerPruner(plan=plan).decide_rung(optuna.create_study(), 5)


def test_states_after_async_run_are_final(storage: object) -> None:
    pruner = small_plan(dollars=3)
    study = optuna.create_study(
        direction="maximize",
        storage=storage,
        pruner=pruner,  # type: ignore[arg-type]
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=0)),
    )
    study.optimize(curve_objective, n_trials=100, n_jobs=2)
    states = Counter(t.state for t in study.trials)
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    reruns = sum(1 for t in study.trials if rerun_of(t) is not None)
    # each thread may ask one too many; parked finalists are re-run
    assert len(study.trials) <= pruner.plan.n_configs + reruns + 2


def three_rung_pruner(
    clock: SimulatedClock, width: int = 9, promote_by: str = "value"
) -> SeerPruner:
    """Rungs ending at epochs 1, 3, 9 over ``width`` trials, keeping a third, 1 GPU each."""
    workload = Workload(epoch_seconds=60, scaling="linear", max_epochs=9)
    shapes = [RungShape(-(-width // 3**r), 3**r, 1) for r in range(3)]
    plan = Plan(
        rungs=schedule(shapes, workload, 3.6 / 3600, ClusterLimits()),
        reduction_factor=3,
        deadline_s=1e7,
        budget_dollars=1e7,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )
    return SeerPruner(plan=plan, clock=clock, promote_by=promote_by)


def test_async_rung_end_is_one_write_with_value_cost_and_reason(storage: object) -> None:
    clock = SimulatedClock()
    pruner = three_rung_pruner(clock)
    study = optuna.create_study(
        direction="maximize",
        storage=storage,  # type: ignore[arg-type]
        pruner=pruner,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0), clock=clock),
    )
    placed_at = clock.now

    def attrs(trial: optuna.Trial) -> dict[str, object]:
        return study._storage.get_trial_system_attrs(trial._trial_id)

    good = study.ask()
    good.suggest_float("x", 0, 1)
    before = attrs(good)
    clock.now += 60
    good.report(0.9, 1)
    assert not good.should_prune()
    after = attrs(good)
    # One attr written at the rung end: the value, its mean over the rung (the tie-break),
    # and the cost settled as of now, no reason.
    assert set(after) - set(before) == {rung_end_key(0)}
    assert {k: v for k, v in after.items() if k != rung_end_key(0)} == before
    assert after[rung_end_key(0)] == {"value": 0.9, "mean": 0.9, "ledger": [60.0, placed_at + 60]}
    assert TRIAL_LEDGER not in after
    clock.now += 60
    good.report(0.91, 2)
    assert not good.should_prune()
    assert attrs(good) == after  # not a rung end: nothing written

    worse = study.ask()
    worse.suggest_float("x", 0, 1)
    clock.now += 30
    worse.report(0.1, 1)
    assert worse.should_prune()
    record = attrs(worse)[rung_end_key(0)]
    assert record["ledger"] == [30.0, clock.now] and record["value"] == 0.1
    assert record["stop"].startswith("rung 0: 0.1 not in the top 3/9 of 2 values seen")
    study.tell(worse, state=TrialState.PRUNED)
    # Settled when it was stopped, in the same write: telling Optuna adds nothing.
    assert TRIAL_LEDGER not in attrs(worse)
    assert stop_reason(study._storage.get_trial(worse._trial_id)) == record["stop"]

    clock.now += 10
    study.tell(good, 0.95)  # a finished trial stops accruing: its account is closed
    assert attrs(good)[TRIAL_LEDGER] == [160.0, clock.now]
    assert stop_reason(study._storage.get_trial(good._trial_id)) is None
    clock.now += 1000  # nothing runs: the spend stays put
    assert read_ledger(study, pruner.plan, clock.now).gpu_seconds == 190.0


def test_a_displaced_trial_stops_at_its_next_report() -> None:
    clock = SimulatedClock()
    pruner = three_rung_pruner(clock, width=3)  # keeps 1 at rung 0 and 1 at rung 1
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )

    def leased(trial: optuna.Trial) -> optuna.Trial:
        # On leased workers (rungs()): it may enter the last rung before the others report
        # (a plain trial would be parked at its door, see test_reruns.py).
        study._storage.set_trial_system_attr(trial._trial_id, TRIAL_LEASE, None)
        return trial

    early = leased(study.ask())
    for epoch in range(1, 4):
        early.report(0.1 * epoch, epoch)
        assert not early.should_prune()  # the only value seen: the best
    late = leased(study.ask())
    for epoch in range(1, 4):
        late.report(0.5 * epoch, epoch)
        assert not late.should_prune()
    early.report(0.4, 4)
    assert early.should_prune()  # displaced: told at its next report, not at its last epoch
    reason = study._storage.get_trial_system_attrs(early._trial_id)[TRIAL_STOP_REASON]
    assert reason.startswith("rung 0: displaced, 1 trials beat 0.1")
    study.tell(early, state=TrialState.PRUNED)
    assert stop_reason(study.trials[0]) == reason
    # A trial displaced at its last epoch has its stop recorded at the last rung's end.
    for epoch in range(4, 10):
        late.report(0.5 * epoch, epoch)
        assert not late.should_prune()
    last = leased(study.ask())
    for epoch in range(1, 4):
        last.report(0.9 * epoch, epoch)
        assert not last.should_prune()
    record = study._storage.get_trial_system_attrs(late._trial_id).get(rung_end_key(2))
    assert record is None  # finished its last epoch before it was displaced


def test_a_trial_displaced_at_its_last_epoch_records_the_last_rungs_end() -> None:
    """A stop found at the last epoch (displaced, out of time or over budget there) is
    written at the last rung's end with that rung's value; it used to fail with a KeyError
    (the last rung's value was only held for the rungs a report crossed)."""
    clock = SimulatedClock()
    pruner = three_rung_pruner(clock, width=3)  # keeps 1 at rung 0 and 1 at rung 1
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )
    late = study.ask()
    study._storage.set_trial_system_attr(late._trial_id, TRIAL_LEASE, None)
    for epoch in range(1, 9):
        late.report(0.5 * epoch, epoch)
        assert not late.should_prune()
    better = study.ask()
    study._storage.set_trial_system_attr(better._trial_id, TRIAL_LEASE, None)
    for epoch in range(1, 4):
        better.report(0.9 * epoch, epoch)
        assert not better.should_prune()
    late.report(4.5, 9)
    assert late.should_prune()  # displaced at rung 0, found at its last epoch
    record = study._storage.get_trial_system_attrs(late._trial_id)[rung_end_key(2)]
    assert record["value"] == 4.5
    assert record["stop"].startswith("rung 0: displaced, 1 trials beat 0.5")


def test_async_ties_at_a_rung_end_go_to_the_higher_mean_over_the_rung() -> None:
    """As the synchronous decision ranks (ranking.rank_key): a later trial that ties an
    earlier one's rung-end value but was better over the rung takes its place; before, the
    first to arrive kept it and the later one was turned away from the full last rung."""
    clock = SimulatedClock()
    pruner = three_rung_pruner(clock, width=3)  # keeps 1 at rung 0 and 1 at rung 1 (epoch 3)
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )

    def leased(trial: optuna.Trial) -> optuna.Trial:
        study._storage.set_trial_system_attr(trial._trial_id, TRIAL_LEASE, None)
        return trial

    early, late = leased(study.ask()), leased(study.ask())
    for trial, curve in ((early, (0.5, 0.6, 0.9)), (late, (0.5, 0.8, 0.9))):
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            assert not trial.should_prune()  # ties at 0.5, then at 0.9: neither is beaten
    records = [
        study._storage.get_trial_system_attrs(t._trial_id)[rung_end_key(1)] for t in (early, late)
    ]
    assert [r["mean"] for r in records] == [pytest.approx(0.75), pytest.approx(0.85)]
    assert SEAT in records[1] and "stop" not in records[1]  # the later one holds the seat
    early.report(0.9, 4)
    assert early.should_prune()
    reason = study._storage.get_trial_system_attrs(early._trial_id)[TRIAL_STOP_REASON]
    assert reason.startswith("rung 1: displaced, 1 trials beat 0.9"), reason


def test_studies_written_by_earlier_versions_are_read() -> None:
    """Before one record per rung end, a rung end wrote ``seer:rung_<r>_value`` and
    ``seer:ledger`` separately; such studies rank and add up the same."""
    clock = SimulatedClock()
    pruner = three_rung_pruner(clock)
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )
    ends = [1, 3, 9]
    for value in (0.9, 0.8, 0.7):
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.PRUNED,
                intermediate_values={1: value},
                system_attrs={
                    TRIAL_PLACEMENT: placement([1, 1, 1], ends, clock.now - 100),
                    rung_value_key(0): value,
                    TRIAL_LEDGER: [60.0, clock.now - 40],
                },
            )
        )
    old = study.trials[0]
    assert rung_value(old.system_attrs, 0) == 0.9
    assert trial_account(old) == (60.0, clock.now - 40)
    assert read_ledger(study, pruner.plan, clock.now).gpu_seconds == 180.0
    trial = study.ask()
    trial.report(0.1, 1)
    assert trial.should_prune()
    reason = stop_reason(study._storage.get_trial(trial._trial_id))
    assert reason is not None and reason.endswith("of 4 values seen")


def test_latest_ledger_entry_wins() -> None:
    clock = SimulatedClock()
    study = optuna.create_study(pruner=three_rung_pruner(clock), sampler=SeerSampler(clock=clock))
    trial = study.ask()
    storage = study._storage
    storage.set_trial_system_attr(trial._trial_id, rung_end_key(0), rung_end(0.5, 0.5, 60.0, 10.0))
    storage.set_trial_system_attr(trial._trial_id, TRIAL_LEDGER, [50.0, 5.0])
    assert trial_account(storage.get_trial(trial._trial_id)) == (60.0, 10.0)
    storage.set_trial_system_attr(trial._trial_id, TRIAL_LEDGER, [75.0, 10.0])
    assert trial_account(storage.get_trial(trial._trial_id)) == (75.0, 10.0)  # a tie: larger


def test_one_pruner_keeps_two_studies_with_one_id_apart() -> None:
    """Two in-memory storages both number their first study 0: a pruner shared by them must
    not rank one study's trials against the other's."""
    clock = SimulatedClock()
    pruner = three_rung_pruner(clock)
    first = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )
    for value in (0.8, 0.9):  # each the best so far: both promoted
        trial = first.ask()
        trial.report(value, 1)
        assert not trial.should_prune()
        first.tell(trial, value)
    second = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=SeerSampler(clock=clock)
    )
    assert second._study_id == first._study_id
    trial = second.ask()
    trial.report(0.1, 1)
    assert not trial.should_prune()  # the first value this study has seen
