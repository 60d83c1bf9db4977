"""RubberBand's planner against a strong static cluster and an exhaustive search.

Prints, for successive-halving jobs under deadlines from tight to loose and four scaling
profiles, the planner's mean cost against

(a) the best static cluster meeting the same deadline (one instance type and node count for
    the whole job; every rung gives its trials as many GPUs as help, idle GPUs lent to the
    remaining trials), and
(b) the cheapest plan an exhaustive branch-and-bound over every per-rung option finds, on
    jobs small enough to enumerate;

and the planning time for 1,000 configurations on up to 64 GPUs. All costs are simulated
(Monte Carlo, same seed and samples for every method). Run:

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/planner.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

from optuna_seer.planning.exhaustive import exhaustive_plan
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband import (
    PlanningProblem,
    SuccessiveHalvingJob,
    plan_rubberband,
    static_plans,
)
from optuna_seer.planning.seer import InfeasiblePlanError
from optuna_seer.planning.simulator import CloudModel
from optuna_seer.pricing.sources import find_quote, shipped_price_table

SCALINGS = ["linear", "amdahl:0.95", "power:0.6", "imagenet-resnet50"]
SLACKS = [1.05, 1.25, 1.5, 2.0, 3.0, 5.0]
CLOUD = CloudModel(
    queue_seconds=60.0,
    boot_seconds=120.0,
    provisioning_cv=0.3,
    billing="per-second",
    storage_dollars_per_gb_month=0.023,
)


def _profile(scaling: str) -> Profile:
    return Profile(
        epoch_seconds=600.0,
        scaling=scaling,
        epoch_cv=0.05,
        startup_seconds=60.0,
        checkpoint_gb=0.1,
    )


def fastest_static_p95(problem: PlanningProblem) -> float:
    """The p95 completion time of the fastest static cluster: deadlines are set from it."""
    evaluator = problem.evaluator()
    return min(evaluator.stats(p).jct_quantile for p in static_plans(problem))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:6.2f}h"


def versus_static(instances: tuple[PriceQuote, ...], samples: int, slacks: list[float]) -> None:
    job = SuccessiveHalvingJob.geometric(81, 3, 27)
    names = ", ".join(q.instance_type for q in instances)
    print(f"\n(a) 81→27→9→3 trials at 1/3/9/27 epochs, ≤64 GPUs of {names}; p95 ≤ deadline")
    print(
        f"{'scaling':>18} {'deadline':>8} {'plan $':>9} {'static $':>9} {'static/plan':>11} "
        f"{'plan p95':>8} {'GPUs/trial per rung':>20} {'plan s':>7}"
    )
    ratios = []
    for scaling in SCALINGS:
        base = PlanningProblem(
            job, _profile(scaling), instances, 1e12, cloud=CLOUD, max_gpus=64, samples=samples
        )
        floor = fastest_static_p95(base)
        for slack in slacks:
            problem = PlanningProblem(
                job,
                _profile(scaling),
                instances,
                floor * slack,
                cloud=CLOUD,
                max_gpus=64,
                samples=samples,
            )
            started = time.perf_counter()
            try:
                result = plan_rubberband(problem)
            except InfeasiblePlanError:
                print(f"{scaling:>18} {_hours(problem.deadline_s)} infeasible")
                continue
            seconds = time.perf_counter() - started
            assert result.static_stats is not None
            ratio = result.static_stats.cost / result.stats.cost
            ratios.append(ratio)
            shape = "/".join(str(s.gpus_per_trial) for s in result.plan.stages)
            print(
                f"{scaling:>18} {_hours(problem.deadline_s)} {result.stats.cost:9.2f} "
                f"{result.static_stats.cost:9.2f} {ratio:11.3f} "
                f"{_hours(result.stats.jct_quantile)} {shape:>20} {seconds:7.2f}"
            )
    print(
        f"static/plan: min {min(ratios):.3f}, median {statistics.median(ratios):.3f}, "
        f"max {max(ratios):.3f} (never below 1.000 by construction)"
    )


def versus_exhaustive(samples: int) -> None:
    instance = find_quote(shipped_price_table(), "p3.2xlarge")
    print("\n(b) against exhaustive branch-and-bound over every per-rung option (1-GPU nodes)")
    print(
        f"{'job':>22} {'scaling':>18} {'deadline':>8} {'plan $':>9} {'exhaustive $':>12} "
        f"{'gap':>7} {'plan s':>7} {'exh. s':>7}"
    )
    gaps = []
    for label, job, max_gpus in (
        ("9→3→1 @1/3/9", SuccessiveHalvingJob.geometric(9, 3, 9), 16),
        ("27→9→3→1 @1/3/9/27", SuccessiveHalvingJob.geometric(27, 3, 27), 16),
    ):
        for scaling in SCALINGS:
            base = PlanningProblem(
                job, _profile(scaling), (instance,), 1e12, cloud=CLOUD, max_gpus=max_gpus,
                samples=samples,
            )  # fmt: skip
            floor = fastest_static_p95(base)
            for slack in (1.1, 1.5, 3.0):
                # The yardstick minimises the mean cost alone, and so does this plan.
                problem = PlanningProblem(
                    job, _profile(scaling), (instance,), floor * slack, cloud=CLOUD,
                    max_gpus=max_gpus, samples=samples, max_dearer_share=1.0,
                )  # fmt: skip
                started = time.perf_counter()
                result = plan_rubberband(problem)
                plan_s = time.perf_counter() - started
                started = time.perf_counter()
                best = exhaustive_plan(problem)
                exhaustive_s = time.perf_counter() - started
                assert best is not None
                gap = result.stats.cost / best[1].cost - 1
                gaps.append(gap)
                print(
                    f"{label:>22} {scaling:>18} {_hours(problem.deadline_s)} "
                    f"{result.stats.cost:9.2f} {best[1].cost:12.2f} {gap:7.2%} "
                    f"{plan_s:7.2f} {exhaustive_s:7.2f}"
                )
    print(f"gap to exhaustive: max {max(gaps):.2%}, mean {statistics.mean(gaps):.2%}")


def planning_time(instances: tuple[PriceQuote, ...], samples: int) -> None:
    job = SuccessiveHalvingJob.geometric(1000, 3, 81)
    print(
        f"\n(c) planning time, 1,000 configurations ({'→'.join(map(str, job.n_trials))} trials), "
        f"≤64 GPUs, {samples} samples"
    )
    print(f"{'scaling':>18} {'deadline':>8} {'seconds':>8} {'evaluations':>11}")
    for scaling in SCALINGS:
        base = PlanningProblem(
            job, _profile(scaling), instances, 1e12, cloud=CLOUD, max_gpus=64, samples=samples
        )
        floor = fastest_static_p95(base)
        for slack in (1.25, 3.0):
            problem = PlanningProblem(
                job, _profile(scaling), instances, floor * slack, cloud=CLOUD, max_gpus=64,
                samples=samples,
            )  # fmt: skip
            started = time.perf_counter()
            result = plan_rubberband(problem)
            seconds = time.perf_counter() - started
            print(
                f"{scaling:>18} {_hours(problem.deadline_s)} {seconds:8.3f} {result.evaluations:11}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and deadlines")
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    samples = 100 if args.quick else args.samples
    table = shipped_price_table()
    one = (find_quote(table, "p3.2xlarge"),)
    mixed = tuple(find_quote(table, n) for n in ("p3.2xlarge", "p3.8xlarge", "p3.16xlarge"))
    slacks = [1.05, 1.5, 3.0] if args.quick else SLACKS
    versus_static(one, samples, slacks)
    versus_static(mixed, samples, slacks)
    versus_exhaustive(samples)
    planning_time(one, samples)


if __name__ == "__main__":
    main()
