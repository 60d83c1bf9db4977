"""``optuna-seer plan --pareto``: the front of expected accuracy against dollars and against
the deadline, over SEER plans, before anything is spent.

With ``--curves`` (recorded learning curves: a prior from an earlier study or a benchmark)
each plan is scored by :class:`~optuna_seer.planning.accuracy_model.AccuracyModel`; without,
by the documented proxy :func:`~optuna_seer.planning.accuracy_model.percentile_proxy`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path
from typing import Any, TextIO

from optuna_seer.cli.plots import write_pareto_chart
from optuna_seer.planning.accuracy_model import AccuracyModel
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.pareto import front_table, pareto, plan_front
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile

MAX_CURVES_BYTES = 200 * 1024 * 1024
"""The largest (uncompressed) curves file ``--curves`` reads."""


def load_curves(path: Path) -> AccuracyModel:
    """An :class:`AccuracyModel` from a JSON (or ``.json.gz``) file of learning curves.

    Accepted: ``{"curves": [[v1, v2, ...], ...]}`` (one list of per-epoch values, higher is
    better, per configuration), optionally with ``"scores"`` (one held-out score each); or
    ``{"curves": [{"val_acc": [...], "test_acc": [...]}, ...]}`` as
    ``benchmarks/record_curves.py`` writes them (the last test accuracy is the score).

    Raises:
        ValueError: The file is not such a record; the message says what is expected.
    """
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            text = handle.read(MAX_CURVES_BYTES + 1)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"--curves {path}: cannot read it: {exc}") from None
    if len(text) > MAX_CURVES_BYTES:
        raise ValueError(f"--curves {path} is larger than {MAX_CURVES_BYTES:,} bytes.")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"--curves {path} is not JSON: {exc}") from None
    expected = (
        'expected {"curves": [[values per epoch], ...]} or the records of '
        "benchmarks/record_curves.py"
    )
    curves = data.get("curves") if isinstance(data, dict) else None
    if not isinstance(curves, list) or not curves:
        raise ValueError(f"--curves {path} has no list of curves: {expected}.")
    values: list[list[float]] = []
    scores: list[float] | None = []
    for index, curve in enumerate(curves):
        if isinstance(curve, dict):
            series, test = curve.get("val_acc"), curve.get("test_acc")
        else:
            series, test = curve, None
        if not isinstance(series, list) or not series:
            raise ValueError(f"--curves {path}: curve {index} is {curve!s:.60}; {expected}.")
        values.append([_number(v, path, index) for v in series])
        if scores is not None and isinstance(test, list) and test:
            scores.append(_number(test[-1], path, index))
        else:
            scores = None
    if isinstance(data.get("scores"), list):
        scores = [_number(v, path, i) for i, v in enumerate(data["scores"])]
    return AccuracyModel(values, scores=scores)


def _number(value: object, path: Path, index: int) -> float:
    if value is None:
        return math.nan  # a diverged epoch: the model counts it as the worst value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"--curves {path}: curve {index} holds {value!r:.40}, not a number.")
    return float(value)


def run_pareto(
    args: argparse.Namespace,
    profile: Profile,
    instance: PriceQuote,
    provisioning_seconds: float,
    out: TextIO,
) -> int:
    """Print the fronts against dollars and against the deadline; chart them with ``--png``."""
    if args.budget is None:
        raise ValueError("--pareto needs --budget (dollars): the front is planned around it.")
    model = load_curves(args.curves) if args.curves else None
    budget = Budget(args.deadline, args.budget, instance.dollars_per_gpu_hour)
    options: dict[str, Any] = {
        "limits": ClusterLimits(max_gpus=args.max_gpus, provisioning_seconds=provisioning_seconds),
        "min_resource": args.min_resource,
        "max_configs": args.configs,
        "epoch_cv": profile.epoch_cv,
        "quantile": args.quantile,
    }
    workload = profile.workload(args.max_epochs, gpus_per_node=instance.gpus)
    proxy = model is None
    fronts = {}
    for axis in ("dollars", "deadline"):
        points = plan_front(
            budget, workload, args.reduction_factor, axis=axis, accuracy=model, **options
        )
        fronts[axis] = pareto(points, axis)
    what = (
        f"expected accuracy from {model.n_curves} recorded curves ({args.curves})"
        if model is not None
        else "proxy: the expected percentile rank of the best configuration started, "
        "n/(n+1), as if every rung decision were right (give --curves for accuracy)"
    )
    percentile = round(args.quantile * 100)
    print(f"SEER plans scored by {what}; deadline and budget hold at p{percentile}.", file=out)
    print(f"\nFront against dollars (deadline {args.deadline:g} s):", file=out)
    print(front_table(fronts["dollars"], proxy), file=out)
    print(f"\nFront against the deadline (budget ${args.budget:,.2f}):", file=out)
    print(front_table(fronts["deadline"], proxy), file=out)
    if args.png:
        write_pareto_chart(args.png, fronts["dollars"], fronts["deadline"], budget, proxy)
        print(f"wrote {args.png}", file=out)
    return 0
