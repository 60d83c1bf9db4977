"""Why per-hour billing (one-hour minimum) leaves RubberBand little to gain over the static
cluster in ``benchmarks/executed_plan.py``'s cases: three measurements.

1. **The search is not what is missing**: on a job small enough to enumerate (27→9→3 trials
   at 1/3/9 epochs, ≤ 16 GPUs), exhaustive branch and bound finds plans at most a few
   percent cheaper than the planner's under per-hour billing.
2. **Resizing costs whole hours**: the per-second min-cost plans (the ones that are 1.167×
   cheaper per second) billed per hour as the executor leases them (each new cluster a new
   lease, rounded up to whole hours on all its nodes), against the per-hour static cluster.
3. **Keeping nodes does not rescue them**: the same plans billed as if a resize kept the
   nodes it still needs (each node billed its own whole hours from its boot; a shrink
   releases the nodes whose paid hour ends soonest), on the stages' mean start and end
   times. And the ceiling: the per-hour static cluster's cost over the per-second plan's,
   the most any plan could gain if rounding cost it nothing.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/executed_plan_per_hour.py``
(about a minute; ``--quick`` for one scaling).
"""

from __future__ import annotations

import argparse
import math
import statistics

from benchmarks.executed_plan import INSTANCES, SLACKS, cloud, profile
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.rubberband import (
    PlanningProblem,
    SuccessiveHalvingJob,
    exhaustive_plan,
    plan_rubberband,
    static_plans,
)
from optuna_seer.planning.simulator import SimulationResult, simulate
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.pricing.sources import find_quote, shipped_price_table

SCALINGS = ["linear", "amdahl:0.95", "power:0.6", "imagenet-resnet50"]


def kept_nodes_bill(plan: ElasticPlan, result: SimulationResult, boot_s: float) -> float:
    """``plan``'s bill if a resize on the same instance type kept the nodes it still needs:
    each node billed its own whole hours (one-hour minimum), on the stages' mean times."""
    pool: dict[str, list[float]] = {}
    price: dict[str, float] = {}
    bill = 0.0
    previous = None
    for index, stage in enumerate(plan.stages):
        now = result.stage_start_s[index]
        kind = stage.instance.instance_type
        if previous is not None and previous != kind:
            bill += sum(math.ceil((now - s) / 3600) for s in pool.pop(previous)) * price[previous]
        nodes = pool.setdefault(kind, [])
        price[kind] = stage.instance.dollars_per_hour
        if len(nodes) > stage.nodes:  # release the nodes whose paid hour ends soonest
            nodes.sort(key=lambda s: math.ceil((now - s) / 3600) * 3600 - (now - s))
            extra = len(nodes) - stage.nodes
            bill += sum(math.ceil((now - s) / 3600) for s in nodes[:extra]) * price[kind]
            del nodes[:extra]
        nodes.extend([now - boot_s if index else 0.0] * (stage.nodes - len(nodes)))
        previous = kind
    end = result.stage_end_s[-1]
    return bill + sum(
        math.ceil((end - s) / 3600) * price[kind] for kind, nodes in pool.items() for s in nodes
    )


def search_gap(instances: tuple[PriceQuote, ...], scalings: list[str], samples: int) -> None:
    """1: the planner against exhaustive branch and bound, per hour, on a small job."""
    job = SuccessiveHalvingJob.geometric(27, 3, 9)
    model = cloud("per-hour")
    print("1. per hour, 27→9→3 trials, ≤16 GPUs: planner vs exhaustive (and static)")
    for scaling in scalings:
        prof = profile(scaling)
        base = PlanningProblem(job, prof, instances[:2], 1e12, cloud=model, max_gpus=16,
                               samples=samples)  # fmt: skip
        floor = min(base.evaluator().stats(p).jct_quantile for p in static_plans(base))
        for slack in SLACKS:
            problem = PlanningProblem(job, prof, instances[:2], floor * slack, cloud=model,
                                      max_gpus=16, samples=samples)  # fmt: skip
            found = plan_rubberband(problem)
            best = exhaustive_plan(problem)
            assert best is not None and found.static_stats is not None
            print(
                f"{scaling:>17} {floor * slack / 3600:5.2f}h  static {found.static_stats.cost:7.2f}"
                f"  planner {found.stats.cost:7.2f}  exhaustive {best[1].cost:7.2f}  "
                f"planner ÷ exhaustive {found.stats.cost / best[1].cost:.3f}",
                flush=True,
            )


def rounding(instances: tuple[PriceQuote, ...], scalings: list[str], samples: int) -> None:
    """2 and 3: per-second plans billed per hour, as leases and with nodes kept."""
    job = SuccessiveHalvingJob.geometric(81, 3, 27)
    hourly, secondly = cloud("per-hour"), cloud("per-second")
    print("2./3. 81→27→9→3 trials, ≤64 GPUs: the per-second plan billed per hour")
    leases, kept, ceiling = [], [], []
    for scaling in scalings:
        prof = profile(scaling)
        base = PlanningProblem(job, prof, instances, 1e12, cloud=hourly, max_gpus=64,
                               samples=samples)  # fmt: skip
        floor = min(base.evaluator().stats(p).jct_quantile for p in static_plans(base))
        for slack in SLACKS:
            deadline = floor * slack
            per_hour = plan_rubberband(
                PlanningProblem(
                    job, prof, instances, deadline, cloud=hourly, max_gpus=64, samples=samples
                )
            )
            per_second = plan_rubberband(
                PlanningProblem(
                    job, prof, instances, deadline, cloud=secondly, max_gpus=64, samples=samples
                )
            )
            assert per_hour.static_stats is not None
            static = per_hour.static_stats.cost
            result = simulate(per_second.plan, prof, hourly, samples=samples)
            kept_bill = kept_nodes_bill(per_second.plan, result, hourly.boot_seconds)
            leases.append(result.cost_mean / static)
            kept.append(static / kept_bill)
            ceiling.append(static / per_second.stats.cost)
            print(
                f"{scaling:>17} {deadline / 3600:5.2f}h  static/h {static:7.2f}  "
                f"per-second plan: $ {per_second.stats.cost:7.2f}, as hourly leases "
                f"{result.cost_mean:7.2f} ({leases[-1]:.3f}× static), nodes kept "
                f"{kept_bill:7.2f} (static ÷ it {kept[-1]:.3f}); ceiling static ÷ $ "
                f"{ceiling[-1]:.3f}",
                flush=True,
            )
    for name, values in (
        ("hourly leases ÷ static", leases),
        ("static ÷ nodes kept", kept),
        ("ceiling", ceiling),
    ):
        print(
            f"{name}: min {min(values):.3f} median {statistics.median(values):.3f} "
            f"max {max(values):.3f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one scaling (amdahl:0.95)")
    parser.add_argument("--samples", type=int, default=400, help="planner Monte Carlo samples")
    args = parser.parse_args(argv)
    table = shipped_price_table()
    instances = tuple(find_quote(table, name, "on-demand", "") for name in INSTANCES)
    scalings = ["amdahl:0.95"] if args.quick else SCALINGS
    search_gap(instances, scalings, min(args.samples, 200))
    rounding(instances, scalings, args.samples)


if __name__ == "__main__":
    main()
