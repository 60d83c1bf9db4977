"""The final report of an elastic run (text) and its timeline (PNG: who held which slots when).

Example::

    result = ElasticTuner(...).run()
    print(format_report(result))
    plot_timeline(result, "runs/timeline.png")
"""

from __future__ import annotations

from pathlib import Path
import statistics

from optuna_seer.execution.tuner import TuningResult
from optuna_seer.planning.plan import format_seconds


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(actual: float, predicted: float) -> str:
    return f"{actual / predicted:.3f}" if predicted > 0 else "-"


def format_report(result: TuningResult) -> str:
    """A plain-text report: rungs planned vs measured (end, seconds per epoch at the rung's
    concurrency), time and cost predicted vs measured with their ratio, overhead per launch,
    the best trial. The plan's cost holds every slot of a rung for its whole length; the
    ledger charges what launches used, so a partial last wave costs less than predicted."""
    plan = result.plan
    lines = [
        f"SEER elastic run: study {result.study_name!r}, {plan.n_configs} configurations, "
        f"{len(plan.rungs)} rungs, {result.slots} slots",
        "",
        "rung  trials  epochs  workers/trial  planned end  actual end  planned s/epoch  "
        "s/epoch  overhead/launch  promoted",
    ]
    for record in result.rungs:
        rung = record.planned
        lines.append(
            f"{rung.index:>4}  {len(record.trials):>6}  {rung.resource:>6}  "
            f"{rung.gpus_per_trial:>13}  {format_seconds(rung.end_s):>11}  "
            f"{format_seconds(record.finished_at):>10}  {_seconds(rung.epoch_seconds):>15}  "
            f"{_seconds(record.epoch_seconds):>7}  {_seconds(record.overhead_seconds):>15}  "
            f"{','.join(map(str, record.promoted)) or '-'}"
        )
    overheads = [r.overhead_seconds for r in result.launches if r.overhead_seconds is not None]
    states: dict[str, int] = {}
    for state in result.trial_states.values():
        states[state] = states.get(state, 0) + 1
    lines += [
        "",
        f"time: predicted {format_seconds(plan.predicted_seconds)}, actual "
        f"{format_seconds(result.wall_seconds)} (actual/predicted "
        f"{_ratio(result.wall_seconds, plan.predicted_seconds)}), deadline "
        f"{format_seconds(plan.deadline_s)} ({'met' if result.deadline_met else 'MISSED'})",
        f"cost: predicted ${plan.predicted_cost:,.4f}, actual ${result.spent_dollars:,.4f} "
        f"(actual/predicted {_ratio(result.spent_dollars, plan.predicted_cost)}; "
        f"{result.ledger.gpu_seconds:,.0f} slot-seconds at "
        f"${plan.price_per_gpu_second * 3600:.2f}/slot-hour), budget ${plan.budget_dollars:,.2f}",
        f"launches: {len(result.launches)}; overhead per launch (start-up + resume + "
        f"checkpoint): mean {_seconds(statistics.fmean(overheads) if overheads else None)} s, "
        f"max {_seconds(max(overheads) if overheads else None)} s",
        "trials: " + ", ".join(f"{count} {state}" for state, count in sorted(states.items())),
        f"faults: {result.failed_launches} failed launch(es), {result.retried_launches} "
        f"retried from the trial's last good checkpoint; {result.checkpoint_fallbacks} corrupt "
        "or missing checkpoint(s) replaced by an earlier one or a fresh start",
    ]
    if result.final_plan != result.plan:
        lines.append(
            "re-planned rungs: workers/trial "
            f"{[r.gpus_per_trial for r in result.final_plan.rungs]}, trials "
            f"{[r.n_trials for r in result.final_plan.rungs]}"
        )
    if result.notes:
        lines += ["", "decisions:"] + [f"  - {note}" for note in result.notes]
    lines.append("")
    if result.best_trial is None:
        lines.append("best: none (no trial completed)")
    else:
        lines.append(
            f"best: trial {result.best_trial.number}, value {result.best_value:.6g}, "
            f"params {result.best_params}"
        )
    return "\n".join(lines)


def plot_timeline(result: TuningResult, path: str | Path) -> Path:
    """Write a PNG with one row per slot and one bar per launch (colour = trial)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target
