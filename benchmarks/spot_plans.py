"""Spot-aware RubberBand plans against all-on-demand and all-spot, executed with preemptions.

For an 81→27→9→3 successive-halving job (1/3/9/27 epochs of 600 s, 5 % spread, 60 s
start-up) on p3.2xlarge/p3.8xlarge/p3.16xlarge, per-second billing and 60 s queue + 120 s
boot (30 % spread), :func:`~optuna_seer.planning.spot.plan_spot_mix` plans three ways: each
stage on spot or on demand (the mix), everything on demand, everything on spot; each meeting
the deadline at p95 *in the model* (Poisson reclaims per node-hour; each costs a new node, a
relaunch and the launch's work since its rung-start checkpoint). Each plan is then executed
over the same seeds by the real executor on the replay clock, spot nodes reclaimed at
seeded Poisson times (the launches on them fail and are retried from their checkpoint on a
replacement node). Prices: on demand from the shipped table; spot ASSUMED at 30 % of it,
reclaimed 0.05 / 0.1 / 0.2 times per node-hour on the 1- / 4- / 8-GPU types (no spot
figures ship with the package). Where no all-spot plan meets the deadline at p95, "all spot*"
executes the on-demand plan's clusters on spot instead. Run:

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/spot_plans.py [--quick] [--seeds N] \\
        [--rate-scale X]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import logging
import statistics
import time

import optuna

from benchmarks.executed_plan import Executed, cloud, execute, profile
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband import PlanningProblem, SuccessiveHalvingJob, static_plans
from optuna_seer.planning.simulator import CloudModel, PlanEvaluator, PlanStats
from optuna_seer.planning.spot import SpotOffer, plan_spot_mix, spot_cloud
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.pricing.sources import find_quote, shipped_price_table

SCALINGS = ["amdahl:0.95", "imagenet-resnet50"]
SLACKS = [1.5, 3.0]
RATES = {"p3.2xlarge": 0.05, "p3.8xlarge": 0.1, "p3.16xlarge": 0.2}
SPOT_FRACTION = 0.3


def offers(rate_scale: float) -> list[SpotOffer]:
    table = shipped_price_table()
    found = []
    for name, rate in RATES.items():
        od = find_quote(table, name, "on-demand", "")
        spot = replace(
            od,
            dollars_per_hour=round(od.dollars_per_hour * SPOT_FRACTION, 4),
            market="spot",
            source="assumed: 30% of on-demand",
        )
        found.append(SpotOffer(od, spot, rate * rate_scale))
    return found


def on_spot(plan: ElasticPlan, spot_offers: list[SpotOffer]) -> ElasticPlan:
    """``plan`` with every stage's instance type on the spot market."""
    spot = {o.on_demand: o.spot for o in spot_offers}
    return ElasticPlan(tuple(replace(s, instance=spot[s.instance]) for s in plan.stages))


def _row(
    name: str,
    plan: ElasticPlan,
    planned: PlanStats,
    prof: Profile,
    model: CloudModel,
    deadline: float,
    seeds: range,
) -> Executed:
    """Execute ``plan`` over ``seeds``; print its row; the mean executed run."""
    runs = [execute(plan, prof, model, deadline, s, simulate_preemptions=True) for s in seeds]
    dollars = [r.dollars for r in runs]
    met = sum(r.seconds <= deadline for r in runs) / len(runs)
    markets = "/".join("S" if s.instance.market == "spot" else "D" for s in plan.stages)
    print(
        f"{name:>12}: planned ${planned.cost:7.2f}, p95 {planned.jct_quantile / 3600:5.2f}h"
        f" ({markets}); executed ${statistics.fmean(dollars):7.2f} mean, ${max(dollars):7.2f}"
        f" max; deadline met {met:4.0%}",
        flush=True,
    )
    return Executed(statistics.fmean(r.seconds for r in runs), statistics.fmean(dollars), met)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="27 configurations, 1 case")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--rate-scale", type=float, default=1.0, help="multiply reclaim rates")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna_seer").setLevel(logging.WARNING)
    spot_offers = offers(args.rate_scale)
    model = replace(cloud("per-second"), checkpoint_interval_epochs=0)
    run_model = spot_cloud(model, spot_offers)
    job = (
        SuccessiveHalvingJob.geometric(27, 3, 9)
        if args.quick
        else SuccessiveHalvingJob.geometric(81, 3, 27)
    )
    seeds = range(args.seeds)
    started = time.perf_counter()
    plans = None
    for scaling in SCALINGS[:1] if args.quick else SCALINGS:
        prof = profile(scaling)
        on_demand: tuple[PriceQuote, ...] = tuple(o.on_demand for o in spot_offers)
        base = PlanningProblem(
            job, prof, on_demand, 1e12, cloud=model, max_gpus=64, samples=args.samples
        )
        evaluator = base.evaluator()
        floor = min(evaluator.stats(p).jct_quantile for p in static_plans(base))
        for slack in SLACKS[:1] if args.quick else SLACKS:
            deadline = floor * slack
            plans = plan_spot_mix(replace(base, deadline_s=deadline), spot_offers)
            print(f"{scaling}, deadline {deadline / 3600:.2f}h ({len(seeds)} executed seeds each)")
            case = (prof, run_model, deadline, seeds)
            mix = _row("mix", plans.mixed.plan, plans.mixed.stats, *case)
            assert plans.on_demand is not None  # the job fits the deadline on demand
            demand = _row("on-demand", plans.on_demand.plan, plans.on_demand.stats, *case)
            if plans.spot is not None:
                _row("all spot", plans.spot.plan, plans.spot.stats, *case)
            else:
                # No all-spot plan meets the deadline at p95: the on-demand plan's clusters,
                # all on spot, show what taking the risk anyway does.
                forced = on_spot(plans.on_demand.plan, spot_offers)
                spot_evaluator = PlanEvaluator(prof, run_model, args.samples)
                _row("all spot*", forced, spot_evaluator.stats(forced), *case)
            print(f"{'':>12}  on-demand / mix executed cost: {demand.dollars / mix.dollars:.2f}")
    if plans is not None:
        print("\n".join(plans.summary().splitlines()[: 1 + 2 * len(spot_offers)]))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
