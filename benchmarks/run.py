"""SEER against Optuna's pruners under the same deadline and budget, in simulated time.

For every data set with recorded curves (``benchmarks/curves/``) and every scenario (deadline,
budget, scaling preset), each method tunes the same recorded configurations, in the same order
per seed, on a :class:`~optuna_seer.backends.replay.ReplayBackend`. The table shows, over the
seeds, the mean ± sd test accuracy of the configuration each method selects (best validation
accuracy), the simulated time and dollars it used, and how often it stayed within the deadline
and the budget. The oracle row is the best test accuracy of any recorded configuration after all
its epochs, as if it had been known in advance and trained alone on one GPU: a bound no tuner
beats.

``seer-curve`` is ``seer`` with curve-aware promotion (``SeerPruner(curve_prior=...)``), its
prior the validation curves of the *other* data sets in ``--curves`` (never the run's own).

Usage::

    python benchmarks/run.py --seeds 10        # the published tables (docs/benchmarks.md)
    python benchmarks/run.py --quick           # smoke test: one data set, one scenario
    python benchmarks/run.py --datasets wine --scenarios "30m $24 babi" --methods seer

Results go to ``--out`` (default ``benchmarks/results/``): ``results.json`` with every run
and summary, ``results.md`` with the tables, and ``results.png``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import dataclasses
import functools
import json
import math
from pathlib import Path
import statistics
import sys
import time
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``optuna_seer`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna

from benchmarks import curves as recorded
from benchmarks.baselines import (
    OPTUNA_PRUNERS,
    SEER_PROMOTE_BY,
    Outcome,
    Scenario,
    naive_elastic_plan,
    run_optuna_pruner,
    run_plan,
)
from benchmarks.gap_closed import table as gap_table
from benchmarks.seer_arm import other_datasets_prior, run_seer
from benchmarks.seer_pool import run_seer_pool
from optuna_seer.integration.ranking import PROMOTE_BY
from optuna_seer.planning.learning_curves import CurvePrior
from optuna_seer.planning.plan import format_seconds
from optuna_seer.planning.seer import plan_seer

# t1 = 60 simulated seconds per epoch on one GPU, 40 epochs to train fully (40 min on one GPU),
# $3/GPU-hour, 30 s to (re)start a trial, 10 % straggler noise. $24 buys 8 GPU-hours: the
# budget binds with a long deadline; with short ones the deadline binds too (30 min is less
# than one full training on one GPU).
SCENARIOS = (
    Scenario("2h $24 resnet50", deadline_s=7200.0, dollars=24.0, scaling="resnet50"),
    Scenario("45m $24 resnet50", deadline_s=2700.0, dollars=24.0, scaling="resnet50"),
    Scenario("30m $24 babi", deadline_s=1800.0, dollars=24.0, scaling="babi"),
)
QUICK_SCENARIOS = SCENARIOS[2:]

Method = Callable[[Scenario, recorded.CurveSet, int], Outcome]


def _static_plan(
    scenario: Scenario,
    curves: recorded.CurveSet,
    seed: int,
    *,
    promote_by: str = SEER_PROMOTE_BY,
) -> Outcome:
    plan = plan_seer(
        scenario.budget,
        scenario.workload(curves.epochs),
        scenario.reduction_factor,
        max_configs=len(curves.curves),
        epoch_cv=scenario.straggler_cv,  # deadline and budget held at p95 of the stragglers
        billing="per-launch",  # as the replay bills both arms
    )
    return run_plan("static-plan", plan, scenario, curves, seed, promote_by=promote_by)


def _naive_elastic(scenario: Scenario, curves: recorded.CurveSet, seed: int) -> Outcome:
    plan = naive_elastic_plan(scenario, curves.epochs, len(curves.curves))
    return run_plan(
        "naive-elastic-sha", plan, scenario, curves, seed, billed_gpus=scenario.pool_gpus
    )


def seer_curve(directory: Path = recorded.CURVES_DIR, monitor: str = "val_acc") -> Method:
    """The ``seer-curve`` arm: ``seer`` with curve-aware promotion, the prior being the
    validation curves of the other data sets in ``directory`` (optimism 0), built once per
    data set; never the run's own data set's curves."""
    priors: dict[str, CurvePrior] = {}

    def method(scenario: Scenario, curves: recorded.CurveSet, seed: int) -> Outcome:
        if curves.dataset not in priors:
            priors[curves.dataset] = other_datasets_prior(
                curves.dataset, directory, monitor=monitor
            )
        prior = priors[curves.dataset]
        return run_seer(scenario, curves, seed, curve_prior=prior, method="seer-curve")

    return method


def _optuna(name: str, tie_break: bool = False) -> Method:
    def method(scenario: Scenario, curves: recorded.CurveSet, seed: int) -> Outcome:
        return run_optuna_pruner(name, scenario, curves, seed, tie_break=tie_break)

    return method


METHODS: dict[str, Method] = {
    "seer": run_seer,
    "seer-curve": seer_curve(),  # main() gives it --curves' directory
    "static-plan": _static_plan,
    "seer-pool": run_seer_pool,
    "naive-elastic-sha": _naive_elastic,
    **{name: _optuna(name) for name in OPTUNA_PRUNERS},
}


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Mean ± sd of test accuracy, mean time and dollars, % within deadline and budget."""
    tests = [o.test_acc if o.test_acc is not None else 0.0 for o in outcomes]
    return {
        "runs": len(outcomes),
        "test_mean": statistics.fmean(tests),
        "test_sd": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "val_mean": statistics.fmean(o.val_acc or 0.0 for o in outcomes),
        "seconds_mean": statistics.fmean(o.seconds for o in outcomes),
        "seconds_max": max(o.seconds for o in outcomes),
        "dollars_mean": statistics.fmean(o.dollars for o in outcomes),
        "dollars_max": max(o.dollars for o in outcomes),
        "within_deadline_pct": 100.0 * sum(o.within_deadline for o in outcomes) / len(outcomes),
        "within_budget_pct": 100.0 * sum(o.within_budget for o in outcomes) / len(outcomes),
        "configs_mean": statistics.fmean(o.configs_tried for o in outcomes),
        "epochs_mean": statistics.fmean(o.epochs for o in outcomes),
        "no_selection": sum(o.test_acc is None for o in outcomes),
    }


def oracle_row(scenario: Scenario, curves: recorded.CurveSet) -> dict[str, Any]:
    """The best recorded configuration, known in advance, trained fully on one GPU."""
    seconds = scenario.startup_seconds + curves.epochs * scenario.epoch_seconds
    return {
        "runs": 0,
        "test_mean": curves.oracle_test_accuracy(curves.epochs),
        "test_sd": 0.0,
        "seconds_mean": seconds,
        "dollars_mean": seconds * scenario.price_per_gpu_second,
        "epochs_mean": curves.epochs,
    }


def table(title: str, scenario: Scenario, rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of one data set × scenario."""
    lines = [
        f"#### {title}",
        "",
        f"deadline {format_seconds(scenario.deadline_s)}, budget ${scenario.dollars:g} "
        f"(${scenario.price_per_gpu_hour:g}/GPU-hour: {scenario.pool_gpus} GPUs for the whole "
        f"deadline), scaling `{scenario.scaling}`, t1 {scenario.epoch_seconds:g} s/epoch",
        "",
        "| method | test acc (mean ± sd) | time (mean / max) | dollars (mean / max) "
        "| within deadline | within budget | configs | epochs of selected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ranked = sorted(
        ((name, row) for name, row in rows.items() if name != "oracle"),
        key=lambda item: -float(item[1]["test_mean"]),
    )
    for name, row in ranked:
        lines.append(
            f"| {name} | {row['test_mean']:.4f} ± {row['test_sd']:.4f} "
            f"| {format_seconds(row['seconds_mean'])} / {format_seconds(row['seconds_max'])} "
            f"| ${row['dollars_mean']:.2f} / ${row['dollars_max']:.2f} "
            f"| {row['within_deadline_pct']:.0f} % | {row['within_budget_pct']:.0f} % "
            f"| {row['configs_mean']:.0f} | {row['epochs_mean']:.1f} |"
        )
    oracle = rows["oracle"]
    lines.append(
        f"| *oracle* | {oracle['test_mean']:.4f} | {format_seconds(oracle['seconds_mean'])} "
        f"| ${oracle['dollars_mean']:.2f} | n/a | n/a | 1 | {oracle['epochs_mean']} |"
    )
    return "\n".join(lines)


SEER_VARIANTS = ("seer", "seer-curve", "seer-pool")
"""Not baselines: SEER itself, with curve-aware promotion, and its sampler/pruner pair without
the elastic executor."""


def verdict(results: list[dict[str, Any]]) -> str:
    """SEER against the best baseline per data set × scenario, as a Markdown table.

    The best baseline is the highest mean test accuracy of any method but SEER's; the best
    *compliant* one also stayed within the deadline and the budget in every run.
    """
    lines = [
        "| data set | scenario | seer | best baseline | best compliant baseline "
        "| seer − best compliant | seeds seer wins/ties/loses | seer within deadline & budget |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        summary = result["summary"]
        if "seer" not in summary:
            continue
        seer = summary["seer"]
        baselines = {n: r for n, r in summary.items() if n not in (*SEER_VARIANTS, "oracle")}
        if not baselines:
            continue
        compliant = {
            n: r
            for n, r in baselines.items()
            if r["within_deadline_pct"] == 100.0 and r["within_budget_pct"] == 100.0
        }
        best = max(baselines, key=lambda n: baselines[n]["test_mean"])
        best_ok = max(compliant, key=lambda n: compliant[n]["test_mean"]) if compliant else None
        ok_text = "none" if best_ok is None else f"{compliant[best_ok]['test_mean']:.4f} {best_ok}"
        delta = "n/a"
        if best_ok is not None:
            difference = seer["test_mean"] - compliant[best_ok]["test_mean"]
            # Recorded accuracies are rounded to 4 decimals (record_curves.py), so equal counts
            # of correct test examples can differ by up to 5e-5 in the mean: that is a tie.
            delta = f"{0.0 if abs(difference) < 5e-5 else difference:+.4f}"
        both = min(seer["within_deadline_pct"], seer["within_budget_pct"])
        paired = "n/a"
        if best_ok is not None:
            ours = [r["test_acc"] or 0.0 for r in result["runs"]["seer"]]
            theirs = [r["test_acc"] or 0.0 for r in result["runs"][best_ok]]
            wins = sum(a > b + 1e-9 for a, b in zip(ours, theirs))
            losses = sum(b > a + 1e-9 for a, b in zip(ours, theirs))
            paired = f"{wins}/{len(ours) - wins - losses}/{losses}"
        lines.append(
            f"| {result['dataset']} | {result['scenario']['name']} "
            f"| {seer['test_mean']:.4f} ± {seer['test_sd']:.4f} "
            f"| {baselines[best]['test_mean']:.4f} {best} | {ok_text} | {delta} | {paired} "
            f"| {both:.0f} % |"
        )
    return "\n".join(lines)


SEER_COLORS = {
    "seer": "tab:red",
    "seer-curve": "tab:purple",
    "static-plan": "tab:orange",
    "seer-pool": "tab:pink",
}


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Bar chart of mean ± sd test accuracy per method, one panel per data set × scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(3, len(results))
    rows = math.ceil(len(results) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax, result in zip(axes.flat, results):
        summary = result["summary"]
        names = [n for n in summary if n != "oracle"]
        means = [summary[n]["test_mean"] for n in names]
        sds = [summary[n]["test_sd"] for n in names]
        colors = [SEER_COLORS.get(n, "tab:blue") for n in names]
        ax.bar(range(len(names)), means, yerr=sds, color=colors, capsize=3)
        ax.axhline(summary["oracle"]["test_mean"], color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        low = min(m - s for m, s in zip(means, sds))
        ax.set_ylim(max(0.0, low - 0.05), min(1.0, summary["oracle"]["test_mean"] + 0.03))
        ax.set_title(f"{result['dataset']}: {result['scenario']['name']}", fontsize=9)
        ax.set_ylabel("test accuracy")
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeded runs per method")
    parser.add_argument("--quick", action="store_true", help="one data set, one scenario")
    parser.add_argument("--datasets", nargs="+", help="default: every recorded data set")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), help="default: all")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=[s.name for s in SCENARIOS],
        metavar="NAME",
        help=f"default: all of {[s.name for s in SCENARIOS]}",
    )
    parser.add_argument("--curves", type=Path, default=recorded.CURVES_DIR)
    parser.add_argument(
        "--startup-seconds",
        type=float,
        help="what-if: every scenario's simulated seconds to (re)start a trial's launch, for "
        "every arm (default: each scenario's, 30 s); 0 stands for workers kept warm across "
        "trials",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--no-tie-break",
        action="store_true",
        help="replayed workers report no validation loss: SEER's selection (and the static and "
        "naive elastic plans') then breaks ties in validation accuracy by trial number",
    )
    parser.add_argument(
        "--seer-promote-by",
        choices=PROMOTE_BY,
        default=SEER_PROMOTE_BY,
        help="ablation: what the SEER arms' rung decisions rank by (SeerPruner(promote_by=...)); "
        "seer-curve ranks by its curve prior either way",
    )
    parser.add_argument(
        "--monitor",
        choices=recorded.MONITORS,
        default="val_acc",
        help="the metric every arm's workers report, promote and select by (val_loss: its "
        "negative, maximized); the selected model is scored by its test accuracy either way",
    )
    parser.add_argument(
        "--baselines-tie-break",
        action="store_true",
        help="ablation: the Optuna pruners' runs also select with ties in validation accuracy "
        "broken by the lower validation loss, as SEER does",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds} must be >= 1.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    datasets = args.datasets or recorded.available(args.curves)
    if not datasets:
        parser.error(f"no recorded curves in {args.curves}; run benchmarks/record_curves.py.")
    scenarios: tuple[Scenario, ...] = SCENARIOS
    if args.scenarios:
        scenarios = tuple(s for s in SCENARIOS if s.name in args.scenarios)
    if args.quick:
        datasets, scenarios = datasets[-1:], QUICK_SCENARIOS
    if args.startup_seconds is not None:
        if not 0 <= args.startup_seconds < math.inf:
            parser.error(f"--startup-seconds={args.startup_seconds} must be a finite number >= 0.")
        scenarios = tuple(
            dataclasses.replace(s, startup_seconds=args.startup_seconds) for s in scenarios
        )
    methods = {name: METHODS[name] for name in (args.methods or METHODS)}
    if args.monitor != "val_acc" and "seer-curve" in methods:
        # Its prior's kernel is in accuracy units and its curves are other data sets' losses,
        # on other scales: its column would be meaningless (0.675 on synthetic).
        if args.methods:
            parser.error(
                f"--methods seer-curve needs --monitor val_acc, not {args.monitor!r}: its curve "
                "prior compares accuracies (bandwidth 0.05), and other data sets' losses are on "
                "other scales."
            )
        del methods["seer-curve"]
        print(f"seer-curve left out: its curve prior needs --monitor val_acc, not {args.monitor}.")
    if "seer-curve" in methods:  # its prior: the other data sets in the --curves directory
        methods["seer-curve"] = seer_curve(args.curves, args.monitor)
    for name, arm in (("seer", run_seer), ("static-plan", _static_plan)):
        if name in methods:
            methods[name] = functools.partial(arm, promote_by=args.seer_promote_by)
    if "seer-pool" in methods:
        methods["seer-pool"] = functools.partial(run_seer_pool, promote_by=args.seer_promote_by)
    if args.baselines_tie_break:
        methods.update({n: _optuna(n, tie_break=True) for n in methods if n in OPTUNA_PRUNERS})
    began = time.perf_counter()
    results = []
    tables = []
    for dataset in datasets:
        curves = recorded.load(
            dataset, args.curves, val_loss=not args.no_tie_break, monitor=args.monitor
        )
        for scenario in scenarios:
            outcomes = {
                name: [method(scenario, curves, seed) for seed in range(args.seeds)]
                for name, method in methods.items()
            }
            summary = {name: summarize(runs) for name, runs in outcomes.items()}
            summary["oracle"] = oracle_row(scenario, curves)
            results.append(
                {
                    "dataset": dataset,
                    "scenario": {**scenario.__dict__, "pool_gpus": scenario.pool_gpus},
                    "summary": summary,
                    "runs": {n: [o.to_dict() for o in runs] for n, runs in outcomes.items()},
                }
            )
            tables.append(table(f"{dataset}: {scenario.name}", scenario, summary))
            print(tables[-1], end="\n\n", flush=True)
    seconds = time.perf_counter() - began
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = f"Command: `{command.strip()}`; {args.seeds} seeds; {seconds:.0f} s wall.\n\n"
    summary_table = verdict(results)
    print(summary_table, end="\n\n")
    gaps = gap_table(results)
    print(gaps, end="\n\n")
    (args.out / "results.md").write_text(
        header
        + "#### SEER against the best baseline\n\n"
        + summary_table
        + "\n\n#### Gap to the oracle each SEER arm closes, from the best Optuna pruner\n\n"
        + gaps
        + "\n\n"
        + "\n\n".join(tables)
        + "\n"
    )
    (args.out / "results.json").write_text(
        json.dumps({"seeds": args.seeds, "wall_seconds": seconds, "results": results})
    )
    if not args.no_plot:
        plot(results, args.out / "results.png")
    print(f"{len(results)} tables, {seconds:.0f} s wall; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
