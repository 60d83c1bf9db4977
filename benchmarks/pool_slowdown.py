"""What the ``seer-pool`` arm's budget guard reads at the end of each run, and why trials stop.

The asynchronous guard (``SeerPruner`` with ``study.optimize``) projects every running
trial's cost at the slowdown it measures: GPU-seconds the ledger charged against those the
plan predicts, over the study and per rung. On the replay the epochs run as planned but for
the straggler noise, so a slowdown far from 1.0 is a bias of the guard's own bookkeeping
(before 2026-12-06 it read launch start-ups as slower epochs: 1.11-1.16, rung 0 1.5). Per
cell this prints the mean test accuracy, dollars and configurations of the arm, the slowdown
read after each run (overall, then per rung, the worst seed of each), and the trials' stop
reasons counted by kind.

    python benchmarks/pool_slowdown.py --seeds 5
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
import statistics
import sys

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna

from benchmarks import curves as recorded
from benchmarks.baselines import Scenario
from benchmarks.run import SCENARIOS
import benchmarks.seer_pool as seer_pool
from optuna_seer.integration.keys import stop_reason
from optuna_seer.integration.pruner import SeerPruner


def cell_row(scenario: Scenario, curves: recorded.CurveSet, seeds: int) -> str:
    """One table row: the arm's ``seeds`` runs of ``scenario`` on ``curves``."""
    tests, dollars, configs, reasons = [], [], [], Counter[str]()
    overall: list[float] = []
    per_rung: list[tuple[float, ...]] = []
    for seed in range(seeds):
        run = seer_pool.play_seer_pool(scenario, curves, seed)
        pruner = run.study.pruner
        assert isinstance(pruner, SeerPruner)
        view, _ = pruner.spend_view(run.study, run.ended_at, None)
        overall.append(view.scale)
        per_rung.append(view.scales)
        tests.append(run.outcome.test_acc or 0.0)
        dollars.append(run.outcome.dollars)
        configs.append(run.outcome.configs_tried)
        for trial in run.study.get_trials(deepcopy=False):
            reason = stop_reason(trial)
            if reason is not None:
                reasons[reason.split(":")[0]] += 1

    def worst(values: Sequence[float]) -> float:
        return max(values, key=lambda s: abs(s - 1.0))

    rungs = " ".join(f"{worst([s[i] for s in per_rung]):.2f}" for i in range(len(per_rung[0])))
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(reasons.items()))
    return (
        f"| {curves.dataset} | {scenario.name} | {statistics.fmean(tests):.4f} | "
        f"{statistics.fmean(dollars):.2f} | {statistics.fmean(configs):.1f} | "
        f"{worst(overall):.3f} | {rungs} | {kinds} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--curves", type=Path, default=recorded.CURVES_DIR)
    parser.add_argument("--datasets", nargs="*", help="default: every set in --curves")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        "| data set | scenario | test | $ | configs | slowdown (worst seed) | per rung "
        "(worst seed) | stop reasons |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for dataset in args.datasets or recorded.available(args.curves):
        curves = recorded.load(dataset, args.curves)
        for scenario in SCENARIOS:
            print(cell_row(scenario, curves, args.seeds), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
