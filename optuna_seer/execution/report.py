"""The final report of an elastic run, as plain text (the run's timeline, a PNG, is drawn by
:func:`optuna_seer.cli.plots.plot_timeline`).

Example::

    result = ElasticTuner(...).run()
    print(format_report(result))
    print(format_report(result, bill=backend.bill()))  # a SkyPilot run: the bill beside it
"""

from __future__ import annotations

import statistics
from typing import Protocol

from optuna_seer.execution.tuner import TuningResult
from optuna_seer.planning.plan import format_seconds


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(actual: float, predicted: float) -> str:
    return f"{actual / predicted:.3f}" if predicted > 0 else "-"


class BillLike(Protocol):
    """What the report reads of a cloud backend's bill
    (:class:`~optuna_seer.backends.skypilot.bill.Bill`)."""

    @property
    def dollars(self) -> float: ...

    def summary(self) -> str: ...


def _bill_lines(result: TuningResult, bill: BillLike | None) -> list[str]:
    if bill is None:
        return []
    ledger = result.spent_dollars
    larger = "the bill" if bill.dollars > ledger else "the ledger"
    return [
        f"{bill.summary()}",
        f"dollars: ledger ${ledger:,.4f} (what launches used), bill ${bill.dollars:,.4f}; "
        f"the budget guard counts the larger ({larger})",
    ]


def format_report(
    result: TuningResult, bill: BillLike | None = None, accelerator: str | None = None
) -> str:
    """A plain-text report: rungs planned vs measured (end, seconds per epoch at the rung's
    concurrency), time and cost predicted vs measured with their ratio, overhead per launch,
    the best trial. The plan's cost holds every slot of a rung for its whole length; the
    ledger charges what launches used, so a partial last wave costs less than predicted.

    With ``bill`` (a cloud backend's, e.g. ``SkyPilotBackend.bill()``), the report shows it
    beside the ledger: the provider bills whole nodes, idle GPUs, setup and minimums, and the
    budget guard counted the larger of the two. ``accelerator`` (e.g. ``"NVIDIA H200"``, or
    ``"cpu"``) names what the slots are in the first line."""
    plan = result.plan
    on = f" on {accelerator}" if accelerator else ""
    lines = [
        f"SEER elastic run: study {result.study_name!r}, {plan.n_configs} configurations, "
        f"{len(plan.rungs)} rungs, {result.slots} slots{on}",
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
        *_bill_lines(result, bill),
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
