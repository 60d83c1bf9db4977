"""Executed RubberBand plans against the best static cluster, billed as a cloud bills them.

For successive-halving jobs under several deadlines, four scaling presets and two billing
rules (per second with a 60 s minimum; whole hours with a one-hour minimum), the planner
(:func:`~optuna_seer.plan_rubberband`, p95 of its simulated completion time at the deadline)
gives its min-cost plan and the best static cluster it compared it with. Both are then
*executed*, each over the same seeds, by the real executor
(:func:`~optuna_seer.execution.stage_runner.run_elastic_plan`: ``ElasticTuner`` on a
``StagedCluster``) on the replay clock: epoch times with 5 % spread (stragglers), a
provisioning delay per new cluster drawn from the cloud model (60 s queue + 120 s boot mean,
30 % spread), every cluster a lease billed by the rule. Per case it prints the planned
(simulated mean) costs, the executed costs, the static ÷ plan cost ratio per seed (median
and minimum) and the share of seeds whose completion time meets the deadline. Run:

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/executed_plan.py [--quick] [--seeds N]

Goals (issue 16): never dearer than the static cluster, median ≥ 1.15× cheaper, the deadline
met in ≥ 95 % of seeds at the planned p95.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import logging
import statistics
import tempfile
import time

import optuna
from optuna.storages import InMemoryStorage

from benchmarks.planner import SCALINGS, fastest_static_p95
from optuna_seer.backends.replay import ReplayBackend
from optuna_seer.cli.tune_command import synthetic_curves
from optuna_seer.execution.stage_runner import run_elastic_plan
from optuna_seer.execution.staged_cluster import StagedCluster
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband import (
    PlanningProblem,
    SuccessiveHalvingJob,
    plan_rubberband,
)
from optuna_seer.planning.seer import InfeasiblePlanError
from optuna_seer.planning.simulator import CloudModel
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.pricing.sources import find_quote, shipped_price_table

SLACKS = [1.25, 2.0, 3.0]
BILLINGS = ["per-second", "per-hour"]
INSTANCES = ["p3.2xlarge", "p3.8xlarge", "p3.16xlarge"]


def cloud(billing: str) -> CloudModel:
    return CloudModel(queue_seconds=60.0, boot_seconds=120.0, provisioning_cv=0.3, billing=billing)


def profile(scaling: str) -> Profile:
    return Profile(epoch_seconds=600.0, scaling=scaling, epoch_cv=0.05, startup_seconds=60.0)


@dataclass(frozen=True)
class Executed:
    """One executed run (or a mean of runs): completion time, the cloud's bill, and the
    share of runs that met the deadline."""

    seconds: float
    dollars: float
    met: float = 1.0


def execute(
    plan: ElasticPlan,
    prof: Profile,
    model: CloudModel,
    deadline_s: float,
    seed: int,
    *,
    simulate_preemptions: bool = False,
) -> Executed:
    """Run ``plan`` once on the replay clock (seeded stragglers, provisioning delays and,
    with ``simulate_preemptions``, spot reclaims at the model's rates)."""
    storage = InMemoryStorage()
    n_configs = plan.stages[0].n_trials
    backend = ReplayBackend(
        synthetic_curves(n_configs, plan.stages[-1].resource, seed),
        prof.curve,
        prof.epoch_seconds_on(1),
        straggler_cv=prof.cv_on(1),
        seed=seed,
        slots=max(StagedCluster.capacity(s) for s in plan.stages),
        startup_seconds=prof.startup_on(1),
        storage=storage,
    )
    provisioning = model.provisioning_model
    with tempfile.TemporaryDirectory(prefix="executed-plan-") as checkpoints:
        run = run_elastic_plan(
            plan,
            backend=backend,
            profile=prof,
            deadline_s=deadline_s,
            budget_dollars=1e6,
            train="optuna_seer.cli.tune_command:replayed_training",
            checkpoints=checkpoints,
            storage=storage,
            study_name=f"executed-{seed}",
            search_space=lambda trial: trial.suggest_int("config_id", 0, n_configs - 1),
            sampler=optuna.samplers.RandomSampler(seed=seed),
            cloud=model,
            delays=lambda number, stage: provisioning.delay_for(seed, number),
            storage_url="replay:in-memory",
            poll_seconds=300.0,
            simulate_preemptions=simulate_preemptions,
            seed=seed,
        )
    return Executed(run.wall_seconds, run.dollars, float(run.wall_seconds <= deadline_s))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="27 configurations, 1 deadline")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--samples", type=int, default=400, help="planner Monte Carlo samples")
    parser.add_argument("--billing", choices=BILLINGS, action="append", help="default: both")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna_seer").setLevel(logging.WARNING)
    table = shipped_price_table()
    instances: tuple[PriceQuote, ...] = tuple(
        find_quote(table, name, "on-demand", "") for name in INSTANCES
    )
    job = (
        SuccessiveHalvingJob.geometric(27, 3, 9)
        if args.quick
        else SuccessiveHalvingJob.geometric(81, 3, 27)
    )
    slacks = [2.0] if args.quick else SLACKS
    seeds = range(args.seeds)
    print(
        f"{'→'.join(map(str, job.n_trials))} trials at {'/'.join(map(str, job.resources))} "
        f"epochs, ≤64 GPUs of {', '.join(INSTANCES)}; {len(seeds)} executed seeds per plan"
    )
    print(
        f"{'billing':>10} {'scaling':>17} {'deadline':>8} {'plan $':>8} {'static $':>8} "
        f"{'exec plan $':>11} {'exec static $':>13} {'ratio med':>9} {'ratio min':>9} "
        f"{'met plan':>8} {'met static':>10}"
    )
    started = time.perf_counter()
    summaries = []
    for billing in args.billing or BILLINGS:
        ratios: list[float] = []
        case_medians: list[float] = []
        met_plan: list[bool] = []
        met_static: list[bool] = []
        model = cloud(billing)
        for scaling in SCALINGS:
            prof = profile(scaling)
            base = PlanningProblem(
                job, prof, instances, 1e12, cloud=model, max_gpus=64, samples=args.samples
            )
            floor = fastest_static_p95(base)
            for slack in slacks:
                deadline = floor * slack
                problem = PlanningProblem(
                    job, prof, instances, deadline, cloud=model, max_gpus=64, samples=args.samples
                )
                try:
                    found = plan_rubberband(problem)
                except InfeasiblePlanError:
                    print(f"{billing:>10} {scaling:>17} {deadline / 3600:7.2f}h infeasible")
                    continue
                assert found.static_plan is not None and found.static_stats is not None
                ours = [execute(found.plan, prof, model, deadline, s) for s in seeds]
                static = [execute(found.static_plan, prof, model, deadline, s) for s in seeds]
                case = [b.dollars / a.dollars for a, b in zip(ours, static)]
                ratios.extend(case)
                case_medians.append(statistics.median(case))
                met_plan.extend(r.seconds <= deadline for r in ours)
                met_static.extend(r.seconds <= deadline for r in static)
                print(
                    f"{billing:>10} {scaling:>17} {deadline / 3600:7.2f}h "
                    f"{found.stats.cost:8.2f} {found.static_stats.cost:8.2f} "
                    f"{statistics.fmean(r.dollars for r in ours):11.2f} "
                    f"{statistics.fmean(r.dollars for r in static):13.2f} "
                    f"{statistics.median(case):9.3f} {min(case):9.3f} "
                    f"{sum(r.seconds <= deadline for r in ours) / len(ours):8.0%} "
                    f"{sum(r.seconds <= deadline for r in static) / len(static):10.0%}",
                    flush=True,
                )
        summaries.append(
            f"{billing}: static/plan executed cost over {len(ratios)} runs: min "
            f"{min(ratios):.3f}, median {statistics.median(ratios):.3f}, max {max(ratios):.3f}; "
            f"median of case medians {statistics.median(case_medians):.3f}; runs dearer than "
            f"static: {sum(r < 1 - 1e-9 for r in ratios)}; deadline met: plan "
            f"{sum(met_plan) / len(met_plan):.1%}, static {sum(met_static) / len(met_static):.1%}"
        )
    print("\n".join(summaries))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
