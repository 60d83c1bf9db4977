"""The ``seer-pool`` arm's timeline against its plan's: when workers are granted, per rung.

The pool plan assumes synchronous rungs (rung 0 in waves, then each rung after the one
before); the arm runs asynchronously (survivors first, the last rung entered once a trial's
place there is certain or the deadline leaves just its time). Per run this prints how many
trials reached each rung's end (against the plan's widths), how many configurations were
granted their first workers after the latest start from which one configuration can still
train every rung by the deadline at the plan's epoch times (start-ups included), when the
first trial entered the last rung (against the plan's start of it), and the selected
configuration's test accuracy. It records the grants by wrapping the lease call the arm
makes (``benchmarks.seer_pool.acquire``); the arm itself is unchanged.

    python benchmarks/pool_timeline.py --datasets digits --scenarios "30m $24 babi" --seeds 10
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna

from benchmarks import curves as recorded
from benchmarks.baselines import Scenario
from benchmarks.run import SCENARIOS
import benchmarks.seer_pool as seer_pool
from optuna_seer.integration.reruns import rerun_cost
from optuna_seer.planning.plan import Plan


def latest_useful_start(plan: Plan) -> float:
    """Seconds into the study after which a configuration started on the plan's workers can
    no longer train every rung by the deadline at the plan's epoch times."""
    return plan.deadline_s - rerun_cost(plan, 1.0)[0]


def run_row(scenario: Scenario, curves: recorded.CurveSet, seed: int, plan: Plan) -> str:
    grants: list[tuple[float, int]] = []  # (study time, rung)
    lease = seer_pool.acquire

    def recording(*args: Any, **kwargs: Any) -> tuple[int, ...] | None:
        slots = lease(*args, **kwargs)
        if slots is not None:
            grants.append((float(kwargs["now"]), int(kwargs["rung"])))
        return slots

    seer_pool.acquire = recording  # type: ignore[assignment]
    try:
        run = seer_pool.play_seer_pool(scenario, curves, seed)
    finally:
        seer_pool.acquire = lease  # type: ignore[assignment]
    start = min(at for at, _ in grants)
    late = sum(1 for at, rung in grants if rung == 0 and at - start > latest_useful_start(plan))
    last = [at - start for at, rung in grants if rung == len(plan.rungs) - 1]
    reached = [
        sum(1 for t in run.study.trials if (t.last_step or 0) >= rung.resource)
        for rung in plan.rungs
    ]
    first_last = f"{min(last):.0f} s" if last else "-"
    return (
        f"| {seed} | {' / '.join(map(str, reached))} | {late} | {first_last} | "
        f"{run.outcome.test_acc:.4f} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "wine"])
    parser.add_argument("--scenarios", nargs="+", default=["30m $24 babi"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--curves", type=Path, default=recorded.CURVES_DIR)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for dataset in args.datasets:
        curves = recorded.load(dataset, args.curves, val_loss=True, monitor="val_acc")
        for scenario in (s for s in SCENARIOS if s.name in args.scenarios):
            plan = seer_pool.pool_plan(scenario, curves)
            widths = " / ".join(str(r.n_trials) for r in plan.rungs)
            print(
                f"\n### {dataset}, {scenario.name}: plan {widths} (last rung from "
                f"{plan.rungs[-1].start_s:.0f} s); latest useful start "
                f"{latest_useful_start(plan):.0f} s\n"
            )
            print(
                "| seed | reached each rung's end | configurations started later | "
                "first into the last rung | test acc |"
            )
            print("|---|---|---|---|---|")
            for seed in range(args.seeds):
                print(run_row(scenario, curves, seed, plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
