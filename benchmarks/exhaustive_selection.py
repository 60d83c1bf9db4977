"""Every configuration trained to ``E`` epochs, the best by validation selected: no pruning.

Every arm of ``benchmarks/run.py`` ends by selecting the configuration with the best
validation value and is scored by that configuration's *test* accuracy; the oracle of the
gap-closed tables picks by the test accuracy itself. This script gives, per data set, what
exhaustive search would get by the arms' own rule with unlimited time and money: the first
``width`` configurations of each seed's order (the order every arm sees) all trained to ``E``
epochs, the best validation accuracy at ``E`` selected (ties: the mean test accuracy of the
tied configurations, the expected value of breaking them at random; ``--by val_loss``: the
lowest validation loss instead), averaged over the seeds.

It is not an upper bound. Picking the best of many noisy validation values selects noise too
(the winner's curse), so on small validation sets exhaustive search can land below a tuner
that eliminated most configurations early. It shows how far the oracle lies beyond anything
that selects by validation, and how much a wider search is worth at a fixed ``E``.

With ``--results RESULTS.json`` (from ``benchmarks/run.py`` on the same curves and seeds) it
also prints, per cell, the oracle, the best Optuna arm, ``seer`` and ``seer-pool``, and the
exhaustive search over as many configurations as each of the three started (at the curves'
epochs), each with the share of the gap from the best Optuna arm to the oracle it closes, as
``benchmarks/gap_closed.py`` computes it.

    python benchmarks/exhaustive_selection.py --seeds 10 --results benchmarks/results/results.json
    python benchmarks/exhaustive_selection.py --curves benchmarks/curves/harder --seeds 10 \\
        --results /tmp/hard/results.json
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import json
from pathlib import Path
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks import curves as recorded
from benchmarks.baselines import config_order
from benchmarks.gap_closed import best_optuna_arm, gap_closed


def exhaustive(
    curves: recorded.CurveSet, seeds: int, width: int, epochs: int, by: str = "val_acc"
) -> float:
    """Mean over ``seeds`` of the test accuracy at ``epochs`` of the configuration selected by
    ``by`` (``"val_acc"``: the highest; ``"val_loss"``: the lowest; ties: their mean test
    accuracy) among the first ``width`` configurations of each seed's order.

    Example:
        >>> curve = recorded.RecordedCurve
        >>> two = recorded.CurveSet("toy", ({}, {}), (
        ...     curve(val_acc=(0.5, 0.9), test_acc=(0.5, 0.8), val_loss=(0.7, 0.2)),
        ...     curve(val_acc=(0.6, 0.9), test_acc=(0.6, 1.0), val_loss=(0.6, 0.3))), (1.0, 1.0))
        >>> picks = [exhaustive(two, 3, 2, 2), exhaustive(two, 1, 2, 1)]
        >>> [round(p, 4) for p in picks + [exhaustive(two, 3, 2, 2, by="val_loss")]]
        [0.9, 0.6, 0.8]
    """
    if by not in ("val_acc", "val_loss"):
        raise ValueError(f"by={by!r} must be 'val_acc' or 'val_loss'.")
    if width < 1 or not 1 <= epochs <= curves.epochs:
        raise ValueError(
            f"width={width} must be at least 1 and epochs={epochs} within 1..{curves.epochs} "
            f"(the epochs recorded for {curves.dataset})."
        )
    if by == "val_acc":
        score = np.array([c.val_acc[epochs - 1] for c in curves.curves])
    else:  # a missing loss (a diverged run) ranks last
        losses = [c.val_loss[epochs - 1] if c.val_loss else None for c in curves.curves]
        score = -np.array([recorded.DIVERGED_LOSS if x is None else x for x in losses])
    test = np.array([c.test_acc[epochs - 1] for c in curves.curves])
    picks = []
    for seed in range(seeds):
        seen = np.array(config_order(len(curves.curves), seed)[:width])
        best = score[seen].max()
        picks.append(float(test[seen[score[seen] >= best - 1e-12]].mean()))
    return float(np.mean(picks))


def _shown(value: float, run: dict[str, Any], best: float, oracle: float) -> str:
    """``value`` with the configurations ``run`` started and the share of the gap closed."""
    closed = gap_closed(value, best, oracle)
    share = "-" if closed is None else f"{closed:+.0%}"
    return f"{value:.4f} ({run['configs_mean']:.0f} configs, {share})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curves", type=Path, default=recorded.CURVES_DIR)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--widths", type=int, nargs="*", default=[16, 48, 81, 143])
    parser.add_argument("--epochs", type=int, nargs="+", default=[40, 24, 13])
    parser.add_argument("--by", choices=("val_acc", "val_loss"), default="val_acc")
    parser.add_argument("--results", type=Path, help="a results.json of the same curves")
    args = parser.parse_args(argv)
    sets = {name: recorded.load(name, args.curves) for name in recorded.available(args.curves)}
    print(f"Exhaustive search, selected by {args.by}, {args.seeds} seeds; mean test accuracy")
    print()
    print("| data set | width | " + " | ".join(f"E = {e}" for e in args.epochs) + " |")
    print("|---|---|" + "---|" * len(args.epochs))
    for name, curves in sets.items():
        for width in [w for w in args.widths if w < len(curves.curves)] + [len(curves.curves)]:
            cells = [exhaustive(curves, args.seeds, width, e, args.by) for e in args.epochs]
            print(f"| {name} | {width} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    if args.results is None:
        return 0
    results = json.loads(args.results.read_text())
    print()
    print(
        "| data set | scenario | oracle | best Optuna arm | seer | seer-pool | exhaustive at "
        "the best arm's width | at seer's | at seer-pool's |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for cell in results["results"]:
        summary, curves = cell["summary"], sets[cell["dataset"]]
        best = best_optuna_arm(summary)
        if best is None:
            continue
        oracle, top = summary["oracle"]["test_mean"], summary[best]["test_mean"]
        row = [cell["dataset"], cell["scenario"]["name"], f"{oracle:.4f}"]
        row.append(f"{top:.4f} {best} ({summary[best]['configs_mean']:.0f} configs)")
        arms: list[str | None] = [a if a in summary else None for a in ("seer", "seer-pool")]
        for arm in arms:
            run = None if arm is None else summary[arm]
            row.append("-" if run is None else _shown(run["test_mean"], run, top, oracle))
        for arm in (best, *arms):
            if arm is None:
                row.append("-")
                continue
            width = round(summary[arm]["configs_mean"])
            value = exhaustive(curves, int(results["seeds"]), width, curves.epochs, args.by)
            row.append(_shown(value, summary[arm], top, oracle))
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
