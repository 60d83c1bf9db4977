"""How much of the gap between the best Optuna pruner and the oracle each SEER arm closes.

Reads a ``results.json`` that ``benchmarks/run.py`` wrote and prints, per data set and
scenario, each SEER arm's mean test accuracy, the best Optuna arm's (any of
``OPTUNA_PRUNERS``, ``no-pruning`` included), the oracle's, and the share of the gap closed:
``(arm − best Optuna) / (oracle − best Optuna)`` (100 %: the oracle; 0: no better than the
best pruner; negative: worse). Issue 17's goal: at least 30 % in every cell, never below 0.

Usage::

    python benchmarks/gap_closed.py benchmarks/results/results.json
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

from benchmarks.baselines import OPTUNA_PRUNERS

SEER_ARMS = ("seer", "seer-curve", "static-plan", "seer-pool")


def gap_closed(arm: float, best: float, oracle: float) -> float | None:
    """Share of the gap from ``best`` to ``oracle`` that ``arm`` closes; ``None`` without a gap.

    Example:
        >>> gap_closed(0.98, 0.97, 1.0)
        0.3333333333333332
    """
    return None if oracle - best <= 1e-12 else (arm - best) / (oracle - best)


def table(results: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of every data set × scenario in ``results``."""
    lines = [
        "| data set | scenario | oracle | best Optuna arm | "
        + " | ".join(f"{arm} (gap closed)" for arm in SEER_ARMS)
        + " |",
        "|---" * (4 + len(SEER_ARMS)) + "|",
    ]
    shares: dict[str, list[float]] = {arm: [] for arm in SEER_ARMS}
    at_least = dict.fromkeys(SEER_ARMS, 0)
    for result in results:
        summary = result["summary"]
        optuna_arms = {n: r["test_mean"] for n, r in summary.items() if n in OPTUNA_PRUNERS}
        if not optuna_arms:
            continue
        best = max(optuna_arms, key=lambda n: optuna_arms[n])
        oracle = summary["oracle"]["test_mean"]
        cells = []
        for arm in SEER_ARMS:
            if arm not in summary:
                cells.append("n/a")
                continue
            value = summary[arm]["test_mean"]
            share = gap_closed(value, optuna_arms[best], oracle)
            if share is not None and abs(value - optuna_arms[best]) < 5e-5:
                share = 0.0  # a tie: accuracies are recorded to 4 decimals
            if share is not None:
                shares[arm].append(share)
                at_least[arm] += share >= 0.0
            cells.append(f"{value:.4f} ({'n/a' if share is None else f'{share:+.0%}'})")
        lines.append(
            f"| {result['dataset']} | {result['scenario']['name']} | {oracle:.4f} "
            f"| {optuna_arms[best]:.4f} {best} | " + " | ".join(cells) + " |"
        )
    means = [
        f"{sum(v) / len(v):+.0%} mean, {at_least[arm]}/{len(v)} cells ≥ best" if v else "n/a"
        for arm, v in shares.items()
    ]
    lines.append("| **all cells** | | | | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="results.json written by benchmarks/run.py")
    args = parser.parse_args(argv)
    print(table(json.loads(args.results.read_text())["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
