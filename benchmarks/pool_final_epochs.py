"""Would the ``seer-pool`` arm gain by training its finalists for fewer epochs than 40?

Where one GPU cannot train 40 epochs by the deadline (the 30-minute scenario), the pool's
plan keeps 40 epochs and buys finalists 4 GPUs each (48 configurations, 2 finalists), while
Optuna's SHA tries ~140 configurations and selects one trained for 19-28 epochs. This script
replays the ``seer-pool`` arm with SEER's pool plan for a *fixed* final epoch count (each
row: ``max_epochs = E``), and with ``E`` chosen per seed by an accuracy model whose prior is
a warm start: the data set's configurations at positions 100-149 of the seed's order, which
the run never draws (as an earlier study of the same task would give), or the other data
sets' curves (a prior from another task: one ``E`` for every seed). The model replays
the plan's rung decisions on the prior's curves and scores the selected configuration by its
test accuracy after ``E`` epochs (Monte Carlo, ``--draws`` draws).

    python benchmarks/pool_final_epochs.py --seeds 10 --scenario "30m \\$24 babi"
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
import statistics
import sys

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import optuna

from benchmarks import curves as recorded
from benchmarks.baselines import config_order
from benchmarks.run import SCENARIOS
import benchmarks.seer_pool as seer_pool
from benchmarks.seer_pool import plan_for_pool, run_seer_pool
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.seer import InfeasiblePlanError

EPOCHS = (40, 36, 32, 28, 24, 20)
WARM_FROM = 100  # order positions from here on are the warm prior


def expected_test(
    values: np.ndarray, tests: np.ndarray, plan: Plan, draws: int = 1000, seed: int = 0
) -> float:
    """Mean test accuracy, after the plan's last epoch, of what SEER's rung decisions and
    selection pick from configurations drawn out of ``values``' rows (epochs as recorded)."""
    widths = [r.n_trials for r in plan.rungs]
    ends = [r.resource for r in plan.rungs]
    rng = np.random.default_rng(seed)
    alive = rng.integers(0, len(values), size=(draws, widths[0]))
    jitter = rng.random(alive.shape) * 1e-9
    rows = np.arange(draws)[:, None]
    for index in range(len(ends) - 1):
        at_end = values[alive, ends[index] - 1] + jitter[:, : alive.shape[1]]
        alive = alive[rows, np.argsort(-at_end, axis=1, kind="stable")[:, : widths[index + 1]]]
    since = ends[-2] if len(ends) > 1 else ends[-1] - 1
    last_rung = values[:, since : ends[-1]].mean(axis=1)
    chosen = np.argmax(last_rung[alive] + jitter[:, : alive.shape[1]], axis=1)
    return float(tests[alive[np.arange(draws), chosen], ends[-1] - 1].mean())


def _arrays(curves: recorded.CurveSet) -> tuple[np.ndarray, np.ndarray]:
    """(validation accuracy, test accuracy) per configuration and epoch; a diverged epoch
    counts as the worst validation value seen."""
    values = np.array([recorded.validation_values(c) for c in curves.curves])
    values = np.nan_to_num(values, nan=float(np.nanmin(values)))
    return values, np.array([c.test_acc for c in curves.curves])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--draws", type=int, default=1000, help="Monte Carlo draws per estimate")
    parser.add_argument("--scenario", default="30m $24 babi", choices=[s.name for s in SCENARIOS])
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scenario = next(s for s in SCENARIOS if s.name == args.scenario)
    print(f"{scenario.name}, {args.seeds} seeds: seer-pool's mean test accuracy\n")
    print(
        "| data set | "
        + " | ".join(f"E = {e}" for e in EPOCHS)
        + " | E by warm prior | E by other data sets |"
    )
    print("|---|" + "---|" * (len(EPOCHS) + 2))
    arrays = {name: _arrays(recorded.load(name)) for name in recorded.available()}
    for dataset in recorded.available():
        curves = recorded.load(dataset)
        plans: dict[int, Plan] = {}
        for epochs in EPOCHS:
            try:
                plans[epochs] = plan_for_pool(scenario, curves, epochs)
            except InfeasiblePlanError:
                continue
        values, tests = arrays[dataset]
        others = [arrays[name] for name in arrays if name != dataset]
        across = {
            e: statistics.fmean(expected_test(v, t, p, args.draws) for v, t in others)
            for e, p in plans.items()
        }
        other = max(across, key=lambda e: across[e])
        seer_pool.pool_plan = lambda _s, _c, plan=plans[other]: plan  # type: ignore[assignment]
        other_runs = [run_seer_pool(scenario, curves, s).test_acc or 0.0 for s in range(args.seeds)]
        cells, chosen_runs, chosen = [], [], []
        for plan in plans.values():
            seer_pool.pool_plan = lambda _s, _c, plan=plan: plan  # type: ignore[assignment]
            runs = [run_seer_pool(scenario, curves, s).test_acc or 0.0 for s in range(args.seeds)]
            cells.append(f"{statistics.fmean(runs):.4f} ({plan.n_configs} configs)")
        for seed in range(args.seeds):
            warm = config_order(len(curves.curves), seed)[WARM_FROM:]
            scores = {
                e: expected_test(values[warm], tests[warm], p, args.draws) for e, p in plans.items()
            }
            best = max(scores, key=lambda e: scores[e])
            chosen.append(best)
            seer_pool.pool_plan = lambda _s, _c, plan=plans[best]: plan  # type: ignore[assignment]
            chosen_runs.append(run_seer_pool(scenario, curves, seed).test_acc or 0.0)
        print(
            f"| {dataset} | "
            + " | ".join(cells)
            + f" | {statistics.fmean(chosen_runs):.4f} (E: {', '.join(map(str, chosen))})"
            + f" | {statistics.fmean(other_runs):.4f} (E: {other}) |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
