"""Rung rules and plan shapes on the recorded curves, over many seeds, without the clock.

``run.py`` replays whole tuners on a simulated clock (about 10 s per seed and scenario); this
replays only SEER's rung decisions, on each scenario's plan as :func:`~optuna_seer.plan_seer`
computes it: the first ``n_0`` configurations of the seed's order train to each rung's end,
the top ``n_{r+1}`` by the rule survive, and the best finalist by the rule is scored by its
recorded test accuracy after all epochs. No straggler noise and no re-planning, so it
measures the decision rules alone, over hundreds of seeds in seconds.

Rules (validation accuracy only; the test accuracy only scores the selected model):

* ``trial number``: the rung-end value, ties to the lower trial number (SEER before the
  change; Optuna's ``best_trial`` breaks ties the same way).
* ``rung mean``: the rung-end value, ties to the higher mean over the rung
  (:mod:`optuna_seer.ranking`), at promotion, at the final selection, or both.

Usage::

    python benchmarks/rung_rules.py --seeds 200
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
import statistics
import sys

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``optuna_seer`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import curves as recorded
from benchmarks.baselines import Scenario, config_order
from benchmarks.run import SCENARIOS
from optuna_seer.plan import Plan
from optuna_seer.seer_planner import plan_seer

RULES = {
    "trial number": (False, False),
    "rung mean at promotion": (True, False),
    "rung mean at selection": (False, True),
    "rung mean at both (SEER)": (True, True),
}
"""Rule name: (break promotion ties by the rung mean?, break final ties by it?)."""


def _key(
    val: Sequence[float], since: int, end: int, number: int, by_mean: bool
) -> tuple[float, float, int]:
    """Best first: the rung-end value, then (``by_mean``) the mean over the rung, then number."""
    window = val[since:end]
    return (-val[end - 1], -statistics.fmean(window) if by_mean else 0.0, number)


def select(curves: recorded.CurveSet, plan: Plan, seed: int, promote: bool, final: bool) -> int:
    """The configuration SEER's rung decisions select for ``seed`` under the rule."""
    order = config_order(len(curves.curves), seed)
    alive = list(range(plan.n_configs))  # trial numbers
    since = 0
    for rung in plan.rungs:
        last = rung.index == len(plan.rungs) - 1
        by_mean = final if last else promote
        ranked = sorted(
            alive,
            key=lambda n: _key(
                curves.curves[order[n]].val_acc,
                since,
                rung.resource,
                n,
                by_mean,
            ),
        )
        if last:
            return order[ranked[0]]
        alive = ranked[: plan.rungs[rung.index + 1].n_trials]
        since = rung.resource
    raise AssertionError("a plan has at least one rung")


def mean_test(
    curves: recorded.CurveSet, plan: Plan, seeds: int, promote: bool, final: bool
) -> float:
    return statistics.fmean(
        curves.curves[select(curves, plan, seed, promote, final)].test_acc[-1]
        for seed in range(seeds)
    )


def plan_for(scenario: Scenario, curves: recorded.CurveSet, min_resource: int) -> Plan:
    return plan_seer(
        scenario.budget,
        scenario.workload(curves.epochs),
        scenario.reduction_factor,
        max_configs=len(curves.curves),
        min_resource=min_resource,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--curves", type=Path, default=recorded.CURVES_DIR)
    parser.add_argument(
        "--min-resources",
        type=int,
        nargs="+",
        default=[1, 4],
        help="plan_seer's min_resource: epochs before the first elimination (plan width)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds} must be >= 1.")
    datasets = recorded.available(args.curves)
    print(f"Mean test accuracy of the selected configuration over {args.seeds} seeds.\n")
    header = "| data set | scenario | plan (trials × rung-end epochs) | " + " | ".join(RULES)
    print(header + " |")
    print("|---" * (3 + len(RULES)) + "|")
    for dataset in datasets:
        curves = recorded.load(dataset, args.curves)
        for scenario in SCENARIOS:
            for min_resource in args.min_resources:
                plan = plan_for(scenario, curves, min_resource)
                shape = " ".join(f"{r.n_trials}×{r.resource}" for r in plan.rungs)
                cells = [
                    f"{mean_test(curves, plan, args.seeds, p, f):.4f}" for p, f in RULES.values()
                ]
                print(f"| {dataset} | {scenario.name} | {shape} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
