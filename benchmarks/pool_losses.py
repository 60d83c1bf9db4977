"""Why ``seer-pool`` tests below ``seer``: where ``seer``'s selection went in the pool's run.

Reads a ``results.json`` of ``benchmarks/run.py`` holding both arms and, for every seed where
``seer-pool`` selected a configuration with a lower test accuracy than ``seer``'s, replays the
pool arm (``benchmarks.seer_pool.play_seer_pool``, deterministic given the seed) and says what
became of the configuration ``seer`` selected:

* ``beyond the pool's width``: it sits past the pool plan's width in the seed's order, so the
  pool never started it (breadth);
* ``never started``: within the width, but the run ended first;
* ``stopped: <reason>``: a trial of it was stopped by the pruner, by the first word of its
  stop reason (``rung-end rule``: ASHA's fraction of the values seen so far; ``displaced``,
  ``deadline``, ``budget``);
* ``finalist, lost at selection``: it trained to the end of the run, and another finalist
  was selected (the epochs it reached say whether the deadline cut it short).

The replay uses ``run.py``'s defaults (the validation accuracy monitored, the loss as the
tie-break, promotion by the value): give it a results file made with them.

    python benchmarks/run.py --seeds 100 --scenarios "30m \\$24 babi" --methods seer seer-pool \\
        --no-plot --out /tmp/r100
    python benchmarks/pool_losses.py /tmp/r100/results.json
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
import json
from pathlib import Path
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna

from benchmarks import curves as recorded
from benchmarks.baselines import CONFIG_PARAM, Scenario, config_order
from benchmarks.seer_pool import play_seer_pool, pool_plan
from optuna_seer.integration.keys import stop_reason


def fate(scenario: Scenario, curves: recorded.CurveSet, seed: int, config_id: int) -> str:
    """What became of configuration ``config_id`` in the pool arm's run of ``seed``."""
    width = pool_plan(scenario, curves).n_configs
    if config_order(len(curves.curves), seed).index(config_id) >= width:
        return "beyond the pool's width"
    study = play_seer_pool(scenario, curves, seed).study
    trials = [t for t in study.trials if t.params.get(CONFIG_PARAM) == config_id]
    if not trials:
        return "never started"
    trial = max(trials, key=lambda t: t.last_step or 0)
    reason = stop_reason(trial)
    if reason is None:
        return f"finalist, lost at selection ({trial.last_step} epochs)"
    if " not in the top " in reason:
        return "stopped: rung-end rule"
    return "stopped: " + ("displaced" if "displaced" in reason else reason.split(":")[0])


def losses(cell: dict[str, Any], curves: recorded.CurveSet) -> Counter[str]:
    """The fates of ``seer``'s selections in the seeds of ``cell`` where ``seer-pool`` tests
    lower (a cell of a ``results.json`` holding both arms)."""
    scenario = Scenario(
        **{k: v for k, v in cell["scenario"].items() if k in Scenario.__dataclass_fields__}
    )
    runs = cell["runs"]
    if "seer" not in runs or "seer-pool" not in runs:
        raise ValueError(
            f"{cell['dataset']} {scenario.name}: the results hold {sorted(runs)}; this needs "
            "both 'seer' and 'seer-pool' (run.py --methods seer seer-pool ...)."
        )
    fates: Counter[str] = Counter()
    for pool, elastic in zip(runs["seer-pool"], runs["seer"], strict=True):
        if elastic["config_id"] is not None and pool["test_acc"] < elastic["test_acc"]:
            fates[fate(scenario, curves, int(pool["seed"]), int(elastic["config_id"]))] += 1
    return fates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, help="a results.json with seer and seer-pool")
    parser.add_argument("--curves", type=Path, default=recorded.CURVES_DIR)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = json.loads(args.results.read_text())
    print(
        "| data set | scenario | seeds where seer-pool tests lower | what became of seer's pick |"
    )
    print("|---|---|---|---|")
    for cell in results["results"]:
        curves = recorded.load(cell["dataset"], args.curves)
        fates = losses(cell, curves)
        shown = ", ".join(f"{name} {count}" for name, count in sorted(fates.items()))
        name = cell["scenario"]["name"]
        print(
            f"| {cell['dataset']} | {name} | {sum(fates.values())} of "
            f"{len(cell['runs']['seer'])} | {shown or '-'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
