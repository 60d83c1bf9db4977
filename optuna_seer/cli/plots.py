"""Every chart of optuna-seer: a plan's Gantt and spend chart (each stage's market marked),
and a finished run's timeline.

matplotlib is optional: it is imported only when a chart is drawn, and a missing install
raises :class:`PlottingUnavailableError`, which says what to install.

Example::

    result = ElasticTuner(...).run()
    plot_timeline(result, "runs/timeline.png")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from optuna_seer._install import install_hint
from optuna_seer.cli.extras import MissingExtraError

if TYPE_CHECKING:
    from optuna_seer.execution.tuner import TuningResult
    from optuna_seer.planning.budget import Budget
    from optuna_seer.planning.pareto import FrontPoint
    from optuna_seer.planning.simulator import SimulationResult
    from optuna_seer.planning.spot import StageRecovery
    from optuna_seer.planning.stage_plan import ElasticPlan

P = ParamSpec("P")

PLOT_EXTRA = "plot"
"""The optuna-seer extra whose requirements include matplotlib."""


class PlottingUnavailableError(MissingExtraError):
    """matplotlib, which draws the charts, is not installed."""


def _pyplot(chart: str) -> Any:
    """matplotlib's ``pyplot`` on the file-only Agg backend, imported on first use."""
    try:
        import matplotlib
    except ImportError:
        raise PlottingUnavailableError(
            f"the {chart} needs matplotlib, which is not installed: "
            f"{install_hint(PLOT_EXTRA, 'matplotlib')}."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MARKET_HATCH = {"on-demand": None, "spot": "//"}
"""How a stage's bar is drawn per market: spot hatched, on demand plain."""


def plan_chart(
    plan: ElasticPlan,
    result: SimulationResult,
    deadline_s: float | None,
    budget: float | None,
    title: str,
    recovery: Sequence[StageRecovery] | None = None,
) -> Any:
    """The plan chart as a matplotlib ``Figure`` (the caller closes it): the stages as a
    Gantt chart, each labelled with its market (spot bars hatched, a legend naming both), and
    with ``recovery`` (from :func:`~optuna_seer.planning.spot.expected_recovery`) a spot
    stage's expected reclaims and their cost; below, the cumulative (mean) spend, with the
    deadline, the p95 finish and the budget marked."""
    plt = _pyplot("--png chart")
    from matplotlib.patches import Patch

    if recovery is not None and len(recovery) != len(plan.stages):
        raise ValueError(
            f"recovery has {len(recovery)} entries for a plan of {len(plan.stages)} stages."
        )
    hours = 3600.0
    figure, (gantt, spend) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    colours = plt.get_cmap("viridis")
    most = max(s.gpus_per_trial for s in plan.stages)
    labels: list[tuple[Any, float, float]] = []  # each stage's label and its bar's ends
    for index, stage in enumerate(plan.stages):
        start, end = result.stage_start_s[index] / hours, result.stage_end_s[index] / hours
        market = stage.instance.market
        gantt.barh(
            index,
            end - start,
            left=start,
            color=colours(math.log2(stage.gpus_per_trial) / max(1.0, math.log2(most))),
            edgecolor="black",
            hatch=MARKET_HATCH.get(market, "xx"),
        )
        label = (
            f"{stage.n_trials}×{stage.gpus_per_trial} GPU · {stage.nodes}×"
            f"{stage.instance.instance_type} · {market}"
        )
        if recovery is not None and market == "spot":
            stage_recovery = recovery[index]
            label += (
                f"\nrecovery ≈ ${stage_recovery.dollars:,.2f} "
                f"({stage_recovery.reclaims:.2f} reclaims expected)"
            )
        labels.append(
            (
                gantt.text(
                    start + (end - start) / 2,
                    index,
                    label,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                    bbox={"facecolor": "black", "alpha": 0.4, "edgecolor": "none", "pad": 1},
                ),
                start,
                end,
            )
        )
    gantt.set_yticks(range(len(plan.stages)))
    gantt.set_yticklabels([f"rung {i} · {s.instance.market}" for i, s in enumerate(plan.stages)])
    gantt.invert_yaxis()
    gantt.set_ylabel("trials × GPUs per trial")
    markets = sorted({s.instance.market for s in plan.stages})
    handles = [
        Patch(facecolor="white", edgecolor="black", hatch=MARKET_HATCH.get(m, "xx"), label=m)
        for m in markets
    ]
    if recovery is not None and "spot" in markets:
        total = sum(r.dollars for r in recovery)
        title += f" · spot recovery ≈ ${total:,.2f} expected"
    gantt.set_title(title)
    times = [0.0, *(e / hours for e in result.stage_end_s)]
    costs = [0.0, *result.stage_cost]
    spend.plot(times, costs, marker="o", label="cumulative cost (mean)")
    spend.set_ylabel("dollars")
    spend.set_xlabel("hours since start")
    for axis in (gantt, spend):
        if deadline_s is not None:
            axis.axvline(deadline_s / hours, color="red", linestyle="--", label="deadline")
        axis.axvline(result.jct_p95 / hours, color="orange", linestyle=":", label="p95 finish")
    if budget is not None:
        spend.axhline(budget, color="purple", linestyle="--", label="budget")
    gantt.legend(handles=handles, title="market", loc="lower right", fontsize=8)
    spend.legend(loc="upper left")
    figure.tight_layout()
    _keep_labels_inside(figure, gantt, labels)
    return figure


def _keep_labels_inside(figure: Any, axes: Any, labels: Sequence[tuple[Any, float, float]]) -> None:
    """Move each bar's label beside its bar when centred on it would cross the axes' left
    edge (a plan far shorter than the deadline has bars narrower than their labels, whose
    text then ran over the rung names), on the side with room."""
    renderer = figure.canvas.get_renderer()
    inside = axes.get_window_extent(renderer)
    for text, start, end in labels:
        if text.get_window_extent(renderer).x0 >= inside.x0:
            continue
        text.set_color("black")
        text.set_bbox({"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
        text.set_x(end)
        text.set_horizontalalignment("left")
        if text.get_window_extent(renderer).x1 > inside.x1:
            text.set_x(start)
            text.set_horizontalalignment("right")


def _save(figure: Any, path: str | Path) -> Path:
    """Write ``figure`` as a PNG (making its folder) and close it, whatever happens."""
    plt = _pyplot("chart")
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target, dpi=100)
    finally:
        plt.close(figure)
    return target


def _writer(chart: Callable[P, Any]) -> Callable[Concatenate[str | Path, P], Path]:
    """``chart`` (which draws a figure) as a function that writes it to a PNG at ``path``."""

    def write(path: str | Path, /, *args: P.args, **kwargs: P.kwargs) -> Path:
        return _save(chart(*args, **kwargs), path)

    write.__doc__ = f"Write :func:`{chart.__name__}` as a PNG at ``path``; returns the path."
    return write


write_plan_chart = _writer(plan_chart)


def write_pareto_chart(
    path: Path,
    by_dollars: Sequence[FrontPoint],
    by_deadline: Sequence[FrontPoint],
    budget: Budget,
    proxy: bool,
) -> None:
    """Write a PNG: expected accuracy (or the proxy) against each plan's predicted cost, and
    against the deadline, the given budget and deadline marked."""
    plt = _pyplot("--pareto chart")
    figure, (dollars, deadline) = plt.subplots(1, 2, figsize=(11, 4.2))
    label = "proxy: percentile of the best started" if proxy else "expected accuracy"
    for axis, points, xs, mark, xlabel in (
        (
            dollars,
            by_dollars,
            [p.plan.predicted_cost for p in by_dollars],
            float(budget.dollars),
            "plan cost (dollars, mean)",
        ),
        (
            deadline,
            by_deadline,
            [p.deadline_s / 3600.0 for p in by_deadline],
            budget.deadline_seconds / 3600.0,
            "deadline (hours)",
        ),
    ):
        ys = [p.expected for p in points]
        errors = [p.stderr for p in points]
        axis.errorbar(xs, ys, yerr=errors, marker="o", drawstyle="steps-post", capsize=2)
        for x, y, point in zip(xs, ys, points):
            axis.annotate(
                f"{point.plan.n_configs}", (x, y), fontsize=7, xytext=(3, -9),
                textcoords="offset points",
            )  # fmt: skip
        axis.axvline(mark, color="red", linestyle="--", label="given")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(label)
        axis.legend(loc="lower right")
    dollars.set_title("accuracy vs dollars (labels: configurations)")
    deadline.set_title("accuracy vs deadline")
    figure.tight_layout()
    _save(figure, path)


def plot_timeline(result: TuningResult, path: str | Path) -> Path:
    """Write a PNG with one row per slot and one bar per launch (colour = trial)."""
    plt = _pyplot("run timeline")
    figure, axes = plt.subplots(figsize=(10, 1.2 + 0.6 * result.slots))
    colours = plt.get_cmap("tab10")
    for launch in result.launches:
        for lane in launch.lanes:
            axes.barh(
                lane,
                launch.wall_seconds,
                left=launch.started_at,
                color=colours(launch.trial_number % 10),
                edgecolor="black",
                hatch="//" if launch.state != "succeeded" else None,
            )
            axes.text(
                launch.started_at + launch.wall_seconds / 2,
                lane,
                f"t{launch.trial_number} r{launch.rung}",
                ha="center",
                va="center",
                fontsize=8,
            )
    for record in result.rungs:
        axes.axvline(record.finished_at, color="grey", linestyle=":", linewidth=1)
    axes.axvline(result.plan.deadline_s, color="red", linewidth=1.5, label="deadline")
    axes.set_yticks(range(result.slots), [f"slot {i}" for i in range(result.slots)])
    axes.set_xlabel("seconds since start")
    axes.set_title(f"SEER run {result.study_name}: which trial held which slots when")
    axes.legend(loc="upper right")
    figure.tight_layout()
    return _save(figure, path)
