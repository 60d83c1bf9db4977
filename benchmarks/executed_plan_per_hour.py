"""Per-hour billing (one-hour minimum): what the per-node lease model gains over leasing each
stage's cluster whole, in ``benchmarks/executed_plan.py``'s cases. Three measurements.

1. **The search**: on a job small enough to enumerate (27→9→3 trials at 1/3/9 epochs,
   ≤ 16 GPUs), the planner against exhaustive branch and bound, both under per-hour billing
   with per-node leases (``CloudModel.per_node_leases``, the default per hour).
2. **The lease model**: per case, the best static cluster, the per-second min-cost plan
   billed per hour as whole-cluster leases (each resize a new cluster, all its nodes rounded
   up to whole hours) and as per-node leases (nodes kept across a resize, each billed its
   whole lease once), the plan the planner makes for per-hour billing under each model,
   and the ceiling: the static cluster's per-hour cost over the per-second plan's, the most
   any plan could gain if rounding cost it nothing. All simulated (mean of 400 samples);
   ``benchmarks/executed_plan.py --billing per-hour`` executes the per-node plans.

Run: ``PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/executed_plan_per_hour.py``
(about a minute; ``--quick`` for one scaling).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from benchmarks.executed_plan import INSTANCES, SLACKS, cloud, profile
from benchmarks.planner import SCALINGS, fastest_static_p95
from optuna_seer.planning.exhaustive import exhaustive_plan
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.rubberband import (
    PlanningProblem,
    SuccessiveHalvingJob,
    plan_rubberband,
)
from optuna_seer.planning.simulator import simulate
from optuna_seer.pricing.sources import find_quote, shipped_price_table


def search_gap(instances: tuple[PriceQuote, ...], scalings: list[str], samples: int) -> None:
    """1: the planner against exhaustive branch and bound, per hour, on a small job."""
    job = SuccessiveHalvingJob.geometric(27, 3, 9)
    model = cloud("per-hour")
    print("1. per hour (per-node leases), 27→9→3 trials, ≤16 GPUs: planner vs exhaustive")
    gaps = []
    for scaling in scalings:
        prof = profile(scaling)
        base = PlanningProblem(job, prof, instances[:2], 1e12, cloud=model, max_gpus=16,
                               samples=samples)  # fmt: skip
        floor = fastest_static_p95(base)
        for slack in SLACKS:
            problem = PlanningProblem(job, prof, instances[:2], floor * slack, cloud=model,
                                      max_gpus=16, samples=samples)  # fmt: skip
            found = plan_rubberband(problem)
            best = exhaustive_plan(problem)
            assert best is not None and found.static_stats is not None
            gaps.append(found.stats.cost / best[1].cost)
            print(
                f"{scaling:>17} {floor * slack / 3600:5.2f}h  static {found.static_stats.cost:7.2f}"
                f"  planner {found.stats.cost:7.2f}  exhaustive {best[1].cost:7.2f}  "
                f"planner ÷ exhaustive {gaps[-1]:.3f}",
                flush=True,
            )
    print(f"planner ÷ exhaustive: median {statistics.median(gaps):.3f}, max {max(gaps):.3f}")


def lease_models(instances: tuple[PriceQuote, ...], scalings: list[str], samples: int) -> None:
    """2: per-second plans billed per hour by cluster and by node, and the per-hour plans."""
    job = SuccessiveHalvingJob.geometric(81, 3, 27)
    nodes, secondly = cloud("per-hour"), cloud("per-second")
    clusters = dataclasses.replace(nodes, node_leases=False)
    print(
        "2. 81→27→9→3 trials, ≤64 GPUs, per hour: static ÷ plan by lease model\n"
        f"{'scaling':>17} {'deadline':>8} {'static $':>8} {'s-plan/cl':>9} {'s-plan/node':>11} "
        f"{'plan/cl':>7} {'plan/node':>9} {'ceiling':>7}"
    )
    columns: dict[str, list[float]] = {}
    for scaling in scalings:
        prof = profile(scaling)
        base = PlanningProblem(job, prof, instances, 1e12, cloud=nodes, max_gpus=64,
                               samples=samples)  # fmt: skip
        floor = fastest_static_p95(base)
        for slack in SLACKS:
            plans = {
                name: plan_rubberband(
                    dataclasses.replace(base, deadline_s=floor * slack, cloud=model)
                )
                for name, model in (("s", secondly), ("cl", clusters), ("node", nodes))
            }
            found = plans["node"]
            assert found.static_stats is not None
            static = found.static_stats.cost
            row = {
                "per-second plan, cluster leases": static
                / simulate(plans["s"].plan, prof, clusters, samples=samples).cost_mean,
                "per-second plan, node leases": static
                / simulate(plans["s"].plan, prof, nodes, samples=samples).cost_mean,
                "per-hour plan, cluster leases": static / plans["cl"].stats.cost,
                "per-hour plan, node leases": static / found.stats.cost,
                "ceiling": static / plans["s"].stats.cost,
            }
            for name, value in row.items():
                columns.setdefault(name, []).append(value)
            print(
                f"{scaling:>17} {floor * slack / 3600:7.2f}h {static:8.2f} "
                + " ".join(f"{v:{w}.3f}" for v, w in zip(row.values(), (9, 11, 7, 9, 7))),
                flush=True,
            )
    for name, values in columns.items():
        print(
            f"static ÷ {name}: min {min(values):.3f} median {statistics.median(values):.3f} "
            f"max {max(values):.3f}; below 1 in {sum(v < 1 - 1e-9 for v in values)} of "
            f"{len(values)}"
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
    lease_models(instances, scalings, args.samples)


if __name__ == "__main__":
    main()
