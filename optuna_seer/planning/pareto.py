"""The accuracy–cost front: what each budget (or deadline) buys, before anything is spent.

:func:`plan_front` plans the same job (:func:`~optuna_seer.planning.seer.plan_seer`) at a
range of budgets at the given deadline, or a range of deadlines at the given budget, and
scores every plan by its expected accuracy: an
:class:`~optuna_seer.planning.accuracy_model.AccuracyModel`'s estimate when recorded curves
are given, else the documented proxy
:func:`~optuna_seer.planning.accuracy_model.percentile_proxy` (the expected percentile rank of
the best of the configurations started, as if every rung decision were right).
:func:`pareto` keeps the plans no other plan beats on both axes: nothing cheaper (or
sooner) is at least as accurate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from optuna_seer.planning.accuracy_model import AccuracyModel, percentile_proxy
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.plan import Plan, format_seconds, format_table
from optuna_seer.planning.seer import InfeasiblePlanError, plan_seer
from optuna_seer.planning.workload import Workload

DEFAULT_SCALES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0)
"""Multiples of the given budget (or deadline) the front is planned at."""
Axis = Literal["dollars", "deadline"]


@dataclass(frozen=True)
class FrontPoint:
    """One plan of the front: the limits it was planned for, and what it is expected to buy.

    Attributes:
        deadline_s: The deadline the plan was made for.
        dollars: The budget the plan was made for.
        plan: The plan (its predicted time and cost are what it spends).
        expected: Expected accuracy of the selected configuration (or the proxy).
        stderr: Monte Carlo standard error of ``expected`` (0 for the proxy).
    """

    deadline_s: float
    dollars: float
    plan: Plan
    expected: float
    stderr: float

    def row(self, proxy: bool) -> list[str]:
        rungs = " ".join(f"{r.n_trials}×{r.resource}" for r in self.plan.rungs)
        value = f"{self.expected:.4f}" + ("" if proxy else f" ± {self.stderr:.4f}")
        return [
            f"${self.dollars:,.2f}",
            format_seconds(self.deadline_s),
            value,
            f"${self.plan.predicted_cost:,.2f}",
            format_seconds(self.plan.predicted_seconds),
            str(self.plan.reduction_factor),
            rungs,
        ]


def plan_front(
    budget: Budget,
    workload: Workload,
    reduction_factor: int | Literal["auto"] = 3,
    *,
    axis: Axis = "dollars",
    scales: Sequence[float] = DEFAULT_SCALES,
    accuracy: AccuracyModel | None = None,
    **plan_options: Any,
) -> list[FrontPoint]:
    """Plans at ``scales`` × the budget (``axis="dollars"``, the deadline fixed) or × the
    deadline (``axis="deadline"``, the budget fixed), each scored; infeasible ones are left
    out. ``plan_options`` go to :func:`~optuna_seer.planning.seer.plan_seer` (``limits``,
    ``epoch_cv``, ``max_configs``, ...).

    Example:
        >>> w = Workload(epoch_seconds=60, scaling="resnet50", max_epochs=40, startup_seconds=30)
        >>> points = plan_front(Budget("2h", 24, 3.0), w, scales=(0.25, 0.5, 1.0))
        >>> [(p.dollars, p.plan.n_configs) for p in points]
        [(6.0, 9), (12.0, 48), (24.0, 99)]
    """
    if axis not in ("dollars", "deadline"):
        raise ValueError(f"axis={axis!r} must be 'dollars' or 'deadline'.")
    if not scales or any(not (0 < s < 1e6) for s in scales):
        raise ValueError(f"scales={list(scales)!r} must be positive multiples, e.g. 0.5, 1, 2.")
    points = []
    for scale in sorted(set(scales)):
        deadline = budget.deadline_seconds * (scale if axis == "deadline" else 1.0)
        dollars = float(budget.dollars) * (scale if axis == "dollars" else 1.0)
        try:
            plan = plan_seer(
                Budget(deadline, dollars, budget.price_per_gpu_hour),
                workload,
                reduction_factor,
                accuracy=accuracy,
                **plan_options,
            )
        except InfeasiblePlanError:
            continue
        if accuracy is None:
            expected, stderr = percentile_proxy(plan.n_configs), 0.0
        else:
            estimate = accuracy.expected_best(
                [r.n_trials for r in plan.rungs], [r.resource for r in plan.rungs]
            )
            expected, stderr = estimate.mean, estimate.stderr
        points.append(FrontPoint(deadline, dollars, plan, expected, stderr))
    return points


def pareto(points: Sequence[FrontPoint], axis: Axis = "dollars") -> list[FrontPoint]:
    """The points no other beats: ordered by predicted cost (``axis="dollars"``) or by
    deadline, each strictly more accurate than every one before it.

    Example:
        >>> w = Workload(epoch_seconds=60, scaling="resnet50", max_epochs=40, startup_seconds=30)
        >>> points = plan_front(Budget("2h", 24, 3.0), w, scales=(1.0, 3.0))
        >>> [p.dollars for p in pareto(points)]  # three times the money: a wider search
        [24.0, 72.0]
    """

    def cost(point: FrontPoint) -> tuple[float, float]:
        first = point.plan.predicted_cost if axis == "dollars" else point.deadline_s
        return first, -point.expected

    front: list[FrontPoint] = []
    for point in sorted(points, key=cost):
        if not front or point.expected > front[-1].expected:
            front.append(point)
    return front


def front_table(points: Sequence[FrontPoint], proxy: bool) -> str:
    """``points`` as a table, one plan a row."""
    columns = [
        "budget",
        "deadline",
        "expected accuracy" if not proxy else "proxy (percentile)",
        "plan cost",
        "plan time",
        "η",
        "rungs (trials×epochs)",
    ]
    return format_table(columns, [p.row(proxy) for p in points])
