"""How much of the gap between the best Optuna pruner and the oracle each SEER arm closes.

Reads a ``results.json`` that ``benchmarks/run.py`` wrote and prints, per data set and
scenario, each SEER arm's mean test accuracy, the best Optuna arm's (any of
``OPTUNA_PRUNERS``, ``no-pruning`` included), the oracle's, and the share of the gap closed:
``(arm − best Optuna) / (oracle − best Optuna)`` (100 %: the oracle; 0: no better than the
best pruner; negative: worse). Issue 17's goal: at least 30 % in every cell, never below 0.

With ``--paired`` it prints instead the per-seed differences the goals of issue 13 are
stated in, each with a 95 % paired-bootstrap interval over the seeds (every arm sees the same
configuration order per seed, so the runs pair): each SEER arm minus the best Optuna arm,
and ``seer-pool`` minus ``seer``. An interval that holds 0 (or, for ``seer-pool − seer``,
−0.005) cannot tell the arms apart at that many seeds.

With ``--baselines-from OTHER.json`` (a run of the same cells, e.g. with ``run.py --monitor
val_loss``) the Optuna arms of that run count too, named ``<arm> (<label>)``: the best
Optuna arm of a cell is then the best of both runs, as a user who tried both would pick.

Usage::

    python benchmarks/gap_closed.py benchmarks/results/results.json
    python benchmarks/gap_closed.py --paired benchmarks/results/results.json
    python benchmarks/gap_closed.py RESULTS.json --baselines-from LOSS.json --label val_loss
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

from benchmarks.baselines import OPTUNA_PRUNERS

SEER_ARMS = ("seer", "seer-curve", "static-plan", "seer-pool")


def gap_closed(arm: float, best: float, oracle: float) -> float | None:
    """Share of the gap from ``best`` to ``oracle`` that ``arm`` closes; ``None`` without a gap.

    Example:
        >>> round(gap_closed(0.98, 0.97, 1.0), 4), gap_closed(0.98, 1.0, 1.0)
        (0.3333, None)
    """
    return None if oracle - best <= 1e-12 else (arm - best) / (oracle - best)


def best_optuna_arm(summary: dict[str, Any]) -> str | None:
    """The Optuna arm with the highest mean test accuracy in a cell's ``summary`` (``None``
    if none ran)."""
    optuna_arms = {n: r["test_mean"] for n, r in summary.items() if is_optuna_arm(n)}
    return max(optuna_arms, key=lambda n: optuna_arms[n]) if optuna_arms else None


def is_optuna_arm(name: str) -> bool:
    """An Optuna arm, or one merged from another run (``"optuna-sha (val_loss)"``)."""
    return name.split(" (", 1)[0] in OPTUNA_PRUNERS


def merge_baselines(
    results: Sequence[dict[str, Any]], others: Sequence[dict[str, Any]], label: str
) -> list[dict[str, Any]]:
    """``results`` with the Optuna arms of the same cells in ``others`` added, each named
    ``<arm> (<label>)``.

    Raises:
        ValueError: A cell of ``results`` is missing from ``others``, or their seeds differ.
    """
    index = {(o["dataset"], o["scenario"]["name"]): o for o in others}
    merged = []
    for result in results:
        key = (result["dataset"], result["scenario"]["name"])
        if key not in index:
            raise ValueError(f"cell {key} is not in the other run; it has {sorted(index)}.")
        other = index[key]
        summary, runs = dict(result["summary"]), dict(result["runs"])
        for name in (n for n in other["summary"] if n in OPTUNA_PRUNERS):
            mine = {int(r["seed"]) for r in next(iter(runs.values()), [])}
            theirs = {int(r["seed"]) for r in other["runs"][name]}
            if mine and mine != theirs:
                raise ValueError(f"cell {key}: seeds {sorted(theirs)} of {name} are not these.")
            summary[f"{name} ({label})"] = other["summary"][name]
            runs[f"{name} ({label})"] = other["runs"][name]
        merged.append({**result, "summary": summary, "runs": runs})
    return merged


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
        best = best_optuna_arm(summary)
        if best is None:
            continue
        optuna_arms = {best: summary[best]["test_mean"]}
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


def paired_interval(
    differences: Sequence[float], resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of paired ``differences`` and its 95 % percentile
    bootstrap interval (seeded, so tables are reproducible).

    Example:
        >>> mean, low, high = paired_interval([0.01, 0.0, 0.02, 0.01])
        >>> round(mean, 4), low <= mean <= high, low >= 0.0
        (0.01, True, True)
    """
    values = np.asarray(differences, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def _by_seed(runs: Sequence[dict[str, Any]]) -> dict[int, float]:
    return {int(r["seed"]): float(r["test_acc"] or 0.0) for r in runs}


def _difference(result: dict[str, Any], arm: str, other: str, floor: float = 0.0) -> str:
    """``arm − other`` per seed, as ``mean [low, high]``, marked ``*`` where the interval
    lies wholly below ``floor``."""
    runs = result["runs"]
    if arm not in runs or other not in runs:
        return "n/a"
    mine, theirs = _by_seed(runs[arm]), _by_seed(runs[other])
    seeds = sorted(set(mine) & set(theirs))
    mean, low, high = paired_interval([mine[s] - theirs[s] for s in seeds])
    mark = " *" if high < floor else ""
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]{mark}"


def paired_table(results: Sequence[dict[str, Any]]) -> str:
    """Per cell: each SEER arm minus the best Optuna arm, and ``seer-pool`` minus ``seer``,
    with 95 % paired-bootstrap intervals; ``*`` marks a shortfall the seeds make certain
    (the interval wholly below 0, or below −0.005 for ``seer-pool − seer``)."""
    arms = ("seer", "seer-pool")
    lines = [
        "| data set | scenario | best Optuna arm | "
        + " | ".join(f"{arm} − best" for arm in arms)
        + " | seer-pool − seer |",
        "|---" * (4 + len(arms)) + "|",
    ]
    for result in results:
        best = best_optuna_arm(result["summary"])
        if best is None:
            continue
        cells = [_difference(result, arm, best) for arm in arms]
        cells.append(_difference(result, "seer-pool", "seer", floor=-0.005))
        lines.append(
            f"| {result['dataset']} | {result['scenario']['name']} | {best} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="results.json written by benchmarks/run.py")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="per-seed differences with 95 %% paired-bootstrap intervals instead",
    )
    parser.add_argument(
        "--baselines-from",
        type=Path,
        metavar="OTHER.json",
        help="also count the Optuna arms of this run of the same cells",
    )
    parser.add_argument("--label", default="other run", help="names the merged arms")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())["results"]
    if args.baselines_from is not None:
        others = json.loads(args.baselines_from.read_text())["results"]
        results = merge_baselines(results, others, args.label)
    print(paired_table(results) if args.paired else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
