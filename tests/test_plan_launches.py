"""Where a plan's trials (re)launch, and what each launch's start-up costs in the plan."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from optuna_seer import Plan, SeerPruner, SeerSampler, Workload
from optuna_seer.integration.keys import TRIAL_LEASE
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.spending import affordable_width, plan_work
from tests.clocks import SimulatedClock

WORKLOAD = Workload(epoch_seconds=60, scaling="linear", max_epochs=40, startup_seconds=30)


def _plan(shapes: list[RungShape], workload: Workload = WORKLOAD) -> Plan:
    rungs = schedule(shapes, workload, 0.001, ClusterLimits(max_gpus=8))
    return Plan(rungs, 3, 1e5, 1e5, 0.001, 0.2)


def test_a_launch_goes_on_through_rungs_of_the_same_worker_count() -> None:
    """As rungs() does: one launch per run of equal worker counts, a relaunch on a resize,
    and the last rung always entered by a launch of its own (its place must be certain)."""
    shapes = [RungShape(27, 1, 1), RungShape(9, 4, 1), RungShape(3, 13, 1), RungShape(1, 40, 1)]
    plan = _plan(shapes)
    assert [plan.launch_through(first) for first in range(4)] == [2, 2, 2, 3]
    assert plan.launch_starts == {0, 3}
    shapes[2] = RungShape(3, 13, 2)
    plan = _plan(shapes)
    assert [plan.launch_through(first) for first in range(4)] == [1, 1, 2, 3]
    assert plan.launch_starts == {0, 2, 3}


def test_one_rung_plans_launch_once() -> None:
    plan = _plan([RungShape(4, 40, 2)])
    assert plan.launch_through(0) == 0
    assert plan.launch_starts == {0}


@pytest.mark.parametrize("contention", [1.0, 1.25])
def test_rungs_carry_the_start_up_the_plan_times_them_with(contention: float) -> None:
    workload = Workload(
        epoch_seconds=60,
        scaling="linear",
        max_epochs=40,
        startup_seconds=30.0,
        contention={1: 1.0, 4: contention},
    )
    rungs = schedule(
        [RungShape(8, 1, 1), RungShape(4, 40, 2)], workload, 0.001, ClusterLimits(max_gpus=8)
    )
    assert rungs[0].startup_s == pytest.approx(30.0 * contention)  # 8 at once
    assert rungs[1].startup_s == pytest.approx(30.0 * contention)  # 4 at once
    # The rung's time is its start-up plus its epochs, both at the same contention.
    assert rungs[1].end_s - rungs[1].start_s == pytest.approx(
        rungs[1].startup_s + 39 * rungs[1].epoch_seconds
    )


def test_plans_written_before_start_up_was_recorded_still_load() -> None:
    plan = _plan([RungShape(9, 1, 1), RungShape(3, 40, 1)])
    data = plan.to_dict()
    assert [r["startup_s"] for r in data["rungs"]] == [30.0, 30.0]
    for rung in data["rungs"]:
        del rung["startup_s"]
    old = Plan.from_dict(data)
    assert [r.startup_s for r in old.rungs] == [0.0, 0.0]
    assert Plan.from_dict(plan.to_dict()) == plan


def test_a_negative_start_up_is_refused_by_name() -> None:
    data = _plan([RungShape(9, 1, 1), RungShape(3, 40, 1)]).to_dict()
    data["rungs"][0]["startup_s"] = -1.0
    with pytest.raises(ValueError, match=r"startup_s=-1\.0"):
        Plan.from_dict(data)


def test_a_study_begun_before_rungs_recorded_start_up_resumes(tmp_path: object) -> None:
    """The sampler refuses to resume a study with another plan; a plan stored by an earlier
    version (no ``startup_s``) is the same plan, and a changed one is still refused."""
    import optuna

    from optuna_seer import Budget, SeerPruner, SeerSampler
    from optuna_seer.integration.keys import STUDY_PLAN

    def pruner(dollars: float = 5.0) -> SeerPruner:
        return SeerPruner(
            Budget(deadline="2h", dollars=dollars, price_per_gpu_hour=3.0),
            Workload(epoch_seconds=60, scaling="linear", max_epochs=9, startup_seconds=30),
            limits=ClusterLimits(max_gpus=4),
        )

    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(
        study_name="s", storage=storage, pruner=pruner(), sampler=SeerSampler()
    )
    study.ask()
    stored = study._storage.get_study_system_attrs(study._study_id)[STUDY_PLAN]
    assert all(r["startup_s"] == 30.0 for r in stored["rungs"])
    for rung in stored["rungs"]:
        del rung["startup_s"]
    study._storage.set_study_system_attr(study._study_id, STUDY_PLAN, stored)
    plan = pruner().plan
    assert plan.matches(Plan.from_dict(stored)) and plan.matches(plan)
    assert not pruner(dollars=40).plan.matches(Plan.from_dict(stored))
    assert not Plan.from_dict(stored).matches(plan)  # a recorded start-up is not dropped
    for dollars, refused in ((5.0, False), (40.0, True)):
        again = optuna.load_study(
            study_name="s", storage=storage, pruner=pruner(dollars), sampler=SeerSampler()
        )
        if refused:
            with pytest.raises(ValueError, match="started with another SEER plan"):
                again.ask()
        else:
            again.ask()


def test_an_elastic_run_journaled_before_start_up_was_recorded_resumes() -> None:
    from optuna_seer.execution.resume import plan_differences

    plan = _plan([RungShape(9, 1, 1), RungShape(3, 40, 1)])
    data = plan.to_dict()
    for rung in data["rungs"]:
        del rung["startup_s"]
    journaled = Plan.from_dict(data)
    assert plan_differences(journaled, plan, 4, 4) == []
    slower = _plan(
        [RungShape(9, 1, 1), RungShape(3, 40, 1)],
        Workload(epoch_seconds=60, scaling="linear", max_epochs=40, startup_seconds=90),
    )
    assert plan_differences(journaled, slower, 4, 4) == [
        "the rungs' predicted times and costs (another workload)"
    ]


def test_trials_that_start_once_leave_the_budget_room_for_more_configurations() -> None:
    """The width the budget affords counts the start-ups of relaunches only for trials that
    relaunch (leased workers); a trial reporting from its own process starts once."""
    shapes = [RungShape(27, 1, 1), RungShape(9, 4, 1), RungShape(3, 13, 2), RungShape(1, 40, 4)]
    plan = _plan(shapes)
    relaunches = plan_work(plan) - plan_work(plan, {0})
    resized = (plan.rungs[2], plan.rungs[3])
    assert relaunches == pytest.approx(sum(r.n_trials * r.startup_gpu_seconds for r in resized))
    budget_s = plan_work(plan, {0}) * 1.06  # pays the plain trials and 6 % more
    plan = dataclasses.replace(plan, budget_dollars=budget_s * plan.price_per_gpu_second)
    assert affordable_width(plan, 1.0, widen=True, starts={0}) > plan.n_configs
    assert affordable_width(plan, 1.0, widen=True) < affordable_width(
        plan, 1.0, widen=True, starts={0}
    )


@pytest.mark.parametrize("leased", [False, True])
def test_the_sampler_charges_relaunches_to_the_width_only_in_studies_that_lease(
    leased: bool,
) -> None:
    """A budget that pays every configuration's single launch but not the relaunches: a plain
    study starts the plan's whole width; a study whose trials lease workers (``rungs()``)
    is refused the configurations the relaunches take."""
    shapes = [RungShape(27, 1, 1), RungShape(9, 4, 1), RungShape(3, 13, 2), RungShape(1, 40, 4)]
    plan = _plan(shapes)
    budget_s = plan_work(plan, {0}) * 1.001
    plan = dataclasses.replace(plan, budget_dollars=budget_s * plan.price_per_gpu_second)
    assert affordable_width(plan, 1.0) == 25 < plan.n_configs
    clock = SimulatedClock()
    pruner, sampler = SeerPruner(plan=plan, clock=clock), SeerSampler(clock=clock)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=sampler)
    refused = []
    for number in range(plan.n_configs):
        trial = study.ask()
        if leased and number == 0:
            study._storage.set_trial_system_attr(trial._trial_id, TRIAL_LEASE, None)
        try:
            trial.suggest_float("x", 0.0, 1.0)
        except optuna.TrialPruned as refusal:
            assert "pays for 25 configurations" in str(refusal)
            refused.append(number)
    assert refused == ([25, 26] if leased else [])
