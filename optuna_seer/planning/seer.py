"""SEER's planner: the widest search whose finalists are fully trained by the deadline, in budget.

The algorithm (pure; see ``docs/planning.md`` for a worked example):

1. GPU counts worth paying for form a chain ``1 = c_0 < c_1 < …``: a step is kept only if each
   extra GPU adds at least ``min_marginal_speedup`` of one GPU's throughput,
   ``(s(c_{i+1}) - s(c_i)) / (c_{i+1} - c_i) >= min_marginal_speedup``, and never past the peak
   of the curve, the cluster limit, or (above one node) a count that is not whole nodes.
2. For every number of rungs ``R`` and starting width ``n_0``: rungs keep
   ``n_r = ceil(n_0 / η^r)`` trials to ``e_r = round(E / η^(R-1-r))`` epochs. Start with one GPU
   per trial everywhere (no scaling loss: cheapest); while the schedule misses the deadline,
   raise GPUs per trial from some rung on (so they never decrease) where the step saves the
   most seconds per extra dollar, RubberBand's cost-marginal benefit.
3. The largest feasible ``n_0`` (binary search) wins across ``R``; ties go to more finalists,
   then to the cheaper plan. Finalists always receive ``max_epochs``.
4. What that leaves of the deadline and the budget trains more finalists: the last rung grows
   one trial at a time (the next-ranked survivors of the rung before, at the last rung's GPUs
   per trial) while the plan still fits (at the stragglers' quantile when ``epoch_cv`` is set),
   the last rung runs in no more waves, and it keeps no more trials than the rung before. On a
   fixed pool this puts the workers ``n_{R-2} / η`` finalists would leave idle to work; on an
   elastic cluster it spends the budget the widest search could not use on a wider start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import itertools
import math
from typing import Literal

from optuna_seer.planning.accuracy_model import AccuracyModel
from optuna_seer.planning.budget import MAX_SECONDS, Budget
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan, Rung, format_seconds
from optuna_seer.planning.stragglers import StragglerModel
from optuna_seer.planning.workload import Workload

_MAX_GPUS_PER_TRIAL = 4096
AUTO_REDUCTION_FACTORS = (2, 3, 4, 5)
"""The ``η`` values ``reduction_factor="auto"`` tries."""
MAX_CONFIGS = 1_000_000
"""The most configurations :func:`plan_seer` considers (``max_configs``)."""


class InfeasiblePlanError(ValueError):
    """No schedule fits: carries the smallest deadline and budget that would work.

    Attributes:
        min_deadline_s: Smallest deadline (seconds) at which one configuration can be fully
            trained within the given budget, or ``None`` if the budget is too small for any.
        min_dollars: Smallest budget that trains one configuration fully by the given deadline,
            or ``None`` if no number of GPUs is fast enough.
    """

    def __init__(self, message: str, min_deadline_s: float | None, min_dollars: float | None):
        super().__init__(message)
        self.min_deadline_s = min_deadline_s
        self.min_dollars = min_dollars


def check_job_scale(startup_s: float, epoch_s: float, max_epochs: int) -> float:
    """One configuration's full training on one GPU, in seconds, if it is at most
    :data:`~optuna_seer.planning.budget.MAX_SECONDS`; else a ``ValueError`` naming it.

    The planners refuse such a job up front: its times and costs would overflow.

    Example:
        >>> check_job_scale(30.0, 600.0, 27)
        16230.0
        >>> check_job_scale(0.0, 1e300, 27)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: one configuration's full training takes 2.7e+301 s on one GPU ...
    """
    seconds = startup_s + max_epochs * epoch_s
    if not seconds <= MAX_SECONDS:
        raise ValueError(
            f"one configuration's full training takes {seconds:.4g} s on one GPU (start-up "
            f"{startup_s:.4g} s + {max_epochs} epochs × {epoch_s:.4g} s), more than the "
            f"{MAX_SECONDS:.0e} s the planners handle: check the profile's epoch_seconds and "
            "startup_seconds, and max_epochs."
        )
    return seconds


def gpu_candidates(
    workload: Workload, limits: ClusterLimits, min_marginal_speedup: float
) -> tuple[int, ...]:
    """GPU counts per trial that the plan may use, smallest first (always starts with 1).

    Example:
        >>> w = Workload(epoch_seconds=60.0, scaling="amdahl:0.95", max_epochs=10, gpus_per_node=8)
        >>> gpu_candidates(w, ClusterLimits(), 0.2)
        (1, 2, 4, 8, 16, 32)
    """
    per_node = workload.gpus_per_node
    cap = min(
        float(_MAX_GPUS_PER_TRIAL),
        workload.curve.max_useful_gpus,
        math.inf if limits.max_gpus is None else float(limits.max_gpus),
    )
    raw: set[int] = set()
    power = 1
    while power <= cap:
        if power <= per_node or power % per_node == 0:
            raw.add(power)
        if per_node * power <= cap:
            raw.add(per_node * power)
        power *= 2
    chain = [1]
    for count in sorted(raw - {1}):
        gain = workload.curve.speedup(count) - workload.curve.speedup(chain[-1])
        if gain / (count - chain[-1]) >= min_marginal_speedup:
            chain.append(count)
    return tuple(chain)


def rung_resources(
    max_epochs: int, reduction_factor: int, n_rungs: int, min_resource: int
) -> tuple[int, ...] | None:
    """Cumulative epochs at each rung's end, geometric and ending at ``max_epochs``.

    Returns ``None`` when ``n_rungs`` rungs cannot have distinct whole-epoch ends
    of at least ``min_resource``.

    Example:
        >>> rung_resources(40, 3, 4, 1)
        (1, 4, 13, 40)
    """
    ends = [
        max(1, round(max_epochs / reduction_factor ** (n_rungs - 1 - r))) for r in range(n_rungs)
    ]
    ends[-1] = max_epochs
    if ends[0] < min_resource or any(b <= a for a, b in itertools.pairwise(ends)):
        return None
    return tuple(ends)


def assign_gpus(
    n_trials: Sequence[int],
    resources: Sequence[int],
    workload: Workload,
    price_per_gpu_second: float,
    limits: ClusterLimits,
    deadline_s: float,
    candidates: Sequence[int],
    *,
    start_resource: int = 0,
    stragglers: StragglerModel | None = None,
) -> tuple[Rung, ...] | None:
    """GPUs per trial for fixed rungs: the cheapest raises that meet ``deadline_s``.

    Starts from one GPU per trial and, while the schedule is too long, applies the raise
    (a rung and every later one to at least ``c`` GPUs, ``c`` from ``candidates``) that saves
    the most seconds per extra dollar. Returns the timed rungs, or ``None`` when no choice of
    ``candidates`` meets the deadline. ``start_resource`` is the epoch count trials already
    have, for re-planning the rest of a running job. With ``stragglers``, the deadline must
    hold at their quantile (:meth:`StragglerModel.quantiles`), not only at mean epoch times.

    Example:
        >>> w = Workload(epoch_seconds=60.0, scaling="linear", max_epochs=4)
        >>> rungs = assign_gpus([4, 1], [1, 4], w, 0.001, ClusterLimits(), 200.0, [1, 2, 4])
        >>> [r.gpus_per_trial for r in rungs]
        [1, 2]
    """
    gpus = [1] * len(resources)

    def build(counts: list[int]) -> tuple[Rung, ...]:
        shapes = [RungShape(n, e, k) for n, e, k in zip(n_trials, resources, counts)]
        return schedule(shapes, workload, price_per_gpu_second, limits, start_resource)

    def finish(timed: tuple[Rung, ...]) -> float:
        if stragglers is None:
            return timed[-1].end_s
        return stragglers.quantiles(timed, workload, start_resource)[0]

    rungs = build(gpus)
    while finish(rungs) > deadline_s:
        now_s = rungs[-1].end_s
        now_cost = sum(r.cost for r in rungs)
        best: tuple[tuple[float, int], list[int], tuple[Rung, ...]] | None = None
        for index in range(len(gpus)):
            for count in candidates:
                if count <= gpus[index]:
                    continue
                trial_gpus = gpus[:index] + [max(k, count) for k in gpus[index:]]
                timed = build(trial_gpus)
                saved = now_s - timed[-1].end_s
                if saved <= 1e-9:
                    continue
                extra = sum(r.cost for r in timed) - now_cost
                # Ties (free speedups under linear scaling) go to the smallest raise.
                score = (saved / extra if extra > 1e-12 else math.inf, -sum(trial_gpus))
                if best is None or score > best[0]:
                    best = (score, trial_gpus, timed)
        if best is None:
            return None
        _, gpus, rungs = best
    return rungs


@dataclass(frozen=True)
class _Problem:
    workload: Workload
    price: float
    deadline: float
    dollars: float
    limits: ClusterLimits
    candidates: tuple[int, ...]
    stragglers: StragglerModel | None = None

    def timed(self, shapes: list[RungShape]) -> tuple[Rung, ...]:
        return schedule(shapes, self.workload, self.price, self.limits)

    def attempt(
        self, n_configs: int, reduction_factor: int, resources: tuple[int, ...]
    ) -> tuple[Rung, ...] | None:
        n_trials = [math.ceil(n_configs / reduction_factor**r) for r in range(len(resources))]
        rungs = assign_gpus(
            n_trials,
            resources,
            self.workload,
            self.price,
            self.limits,
            self.deadline,
            self.candidates,
            stragglers=self.stragglers,
        )
        if rungs is None or self.cost(rungs) > self.dollars:
            return None
        return rungs

    def finish(self, rungs: tuple[Rung, ...]) -> float:
        """The seconds the plan must fit: mean, or at the stragglers' quantile."""
        if self.stragglers is None:
            return rungs[-1].end_s
        return self.stragglers.quantiles(rungs, self.workload)[0]

    def cost(self, rungs: tuple[Rung, ...]) -> float:
        """The dollars the plan must fit: mean, or at the stragglers' quantile."""
        if self.stragglers is None:
            return sum(r.cost for r in rungs)
        return self.stragglers.quantiles(rungs, self.workload)[1]


def _validate(
    reduction_factor: int,
    min_resource: int,
    min_marginal_speedup: float,
    max_configs: int,
    workload: Workload,
) -> None:
    for name, value, low in (
        ("reduction_factor", reduction_factor, 2),
        ("min_resource", min_resource, 1),
        ("max_configs", max_configs, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}={value!r} must be an int.")
        if value < low:
            raise ValueError(f"{name}={value} must be >= {low}.")
    if max_configs > MAX_CONFIGS:
        raise ValueError(f"max_configs={max_configs} must be at most {MAX_CONFIGS:,}.")
    if min_resource > workload.max_epochs:
        raise ValueError(
            f"min_resource={min_resource} exceeds max_epochs={workload.max_epochs}; "
            "the first rung cannot train longer than a full training."
        )
    if isinstance(min_marginal_speedup, bool) or not isinstance(min_marginal_speedup, (int, float)):
        raise TypeError(f"min_marginal_speedup={min_marginal_speedup!r} must be a number.")
    if not (0.0 < min_marginal_speedup <= 1.0):
        raise ValueError(
            f"min_marginal_speedup={min_marginal_speedup!r} must lie in (0, 1]: the fraction of "
            "one GPU's throughput an extra GPU must add to be worth paying for."
        )


def plan_seer(
    budget: Budget,
    workload: Workload,
    reduction_factor: int | Literal["auto"] = 3,
    *,
    limits: ClusterLimits | None = None,
    min_resource: int = 1,
    min_marginal_speedup: float = 0.2,
    max_configs: int = 10_000,
    epoch_cv: float | Mapping[int, float] = 0.0,
    quantile: float = 0.95,
    billing: str = "held",
    accuracy: AccuracyModel | None = None,
) -> Plan:
    """Plan a SEER job: how many configurations, rungs, epochs and GPUs per trial.

    Args:
        budget: Deadline, dollars and price per GPU-hour.
        workload: Epoch time on one GPU, scaling curve, max epochs, GPUs per node.
        reduction_factor: ``η``: each rung keeps ``1/η`` of the trials (``>= 2``), or
            ``"auto"``: the best of :data:`AUTO_REDUCTION_FACTORS` by the objective.
        limits: Cluster quota and provisioning delay.
        min_resource: Epochs every configuration trains before the first elimination.
        min_marginal_speedup: An extra GPU must add this fraction of one GPU's throughput.
        max_configs: Upper bound on the configurations started.
        epoch_cv: Relative spread (std/mean) of one epoch's time, a number or ``{workers:
            cv}`` as a :class:`~optuna_seer.planning.profile.Profile` measures it. Above 0,
            the plan meets the deadline and the budget at the ``quantile`` of its stragglers
            (each wave ends with its slowest trial; :mod:`optuna_seer.planning.stragglers`),
            not only at mean epoch times; the plan's rung times stay the means.
        quantile: The probability with which the deadline and the budget must hold when
            ``epoch_cv`` is above 0 (``[0.5, 1)``).
        billing: How the budget is charged when ``epoch_cv`` is above 0: ``"held"`` (a
            rung's GPUs until its slowest trial ends, as the plan's cost model bills them) or
            ``"per-launch"`` (each launch its own time, as the elastic executor's ledger does).
        accuracy: Opt-in objective. ``None`` (the default) maximises the configurations
            started; an :class:`~optuna_seer.planning.accuracy_model.AccuracyModel` (recorded
            curves as a prior) picks, among the widest feasible plans for every number of
            rungs (and ``η`` with ``"auto"``), the one with the highest expected accuracy of
            the configuration it selects.

    Returns:
        The plan; ``str(plan)`` prints it as a table.

    Raises:
        InfeasiblePlanError: Not even one configuration can be fully trained in time and
            budget; the message names the smallest deadline and budget that would work.

    Example:
        >>> plan = plan_seer(Budget(deadline="12h", dollars=400, price_per_gpu_hour=3.0),
        ...                  Workload(epoch_seconds=600, scaling="amdahl:0.95", max_epochs=40))
        >>> plan.predicted_seconds <= 12 * 3600 and plan.predicted_cost <= 400
        True
    """
    if not isinstance(budget, Budget):
        raise TypeError(f"budget={budget!r} must be an optuna_seer.Budget.")
    if not isinstance(workload, Workload):
        raise TypeError(f"workload={workload!r} must be an optuna_seer.Workload.")
    if limits is not None and not isinstance(limits, ClusterLimits):
        raise TypeError(
            f"limits={limits!r} must be an optuna_seer.ClusterLimits, e.g. "
            "ClusterLimits(max_gpus=8), or None for no quota."
        )
    limits = limits or ClusterLimits()
    if accuracy is not None and not isinstance(accuracy, AccuracyModel):
        raise TypeError(f"accuracy={accuracy!r:.60} must be an AccuracyModel or None.")
    _validate(
        3 if reduction_factor == "auto" else reduction_factor,
        min_resource,
        min_marginal_speedup,
        max_configs,
        workload,
    )
    check_job_scale(workload.startup_on(1), workload.epoch_seconds_on(1), workload.max_epochs)
    stragglers = StragglerModel(epoch_cv, quantile, billing=billing)
    problem = _Problem(
        stragglers=None if stragglers.is_deterministic else stragglers,
        workload=workload,
        price=budget.price_per_gpu_second,
        deadline=budget.deadline_seconds,
        dollars=float(budget.dollars),
        limits=limits,
        candidates=gpu_candidates(workload, limits, min_marginal_speedup),
    )
    etas = AUTO_REDUCTION_FACTORS if reduction_factor == "auto" else (reduction_factor,)
    best: tuple[tuple[float, int, int, float], int, tuple[Rung, ...]] | None = None
    for eta in etas:
        for rungs in _widest(problem, eta, min_resource, max_configs):
            # The default objective (no accuracy model): the most configurations, then the
            # most finalists, then the cheaper plan. With a model: its expected accuracy first.
            expected = (
                accuracy.expected_best(
                    [r.n_trials for r in rungs], [r.resource for r in rungs]
                ).mean
                if accuracy is not None
                else 0.0
            )
            key = (expected, rungs[0].n_trials, rungs[-1].n_trials, -sum(r.cost for r in rungs))
            if best is None or key > best[0]:
                best = (key, eta, rungs)
    if best is None:
        raise _infeasible(problem, workload)
    return Plan(
        rungs=_more_finalists(problem, best[2]),
        reduction_factor=best[1],
        deadline_s=problem.deadline,
        budget_dollars=problem.dollars,
        price_per_gpu_second=problem.price,
        min_marginal_speedup=min_marginal_speedup,
    )


def _more_finalists(problem: _Problem, rungs: tuple[Rung, ...]) -> tuple[Rung, ...]:
    """``rungs`` with the last rung grown while the plan still fits (step 4 of the module
    docstring): in no more waves, no wider than the rung before, by the deadline and within
    the budget as the problem counts them (mean, or the stragglers' quantile)."""
    if len(rungs) < 2:
        return rungs
    *before, last = rungs
    shapes = [RungShape(r.n_trials, r.resource, r.gpus_per_trial) for r in before]
    for n_last in range(last.n_trials + 1, before[-1].n_trials + 1):
        timed = problem.timed([*shapes, RungShape(n_last, last.resource, last.gpus_per_trial)])
        if (
            timed[-1].waves > last.waves
            or problem.finish(timed) > problem.deadline
            or problem.cost(timed) > problem.dollars
        ):
            break
        rungs = timed
    return rungs


def _widest(
    problem: _Problem, eta: int, min_resource: int, max_configs: int
) -> list[tuple[Rung, ...]]:
    """For every number of rungs that fits, the widest feasible rungs (binary search)."""
    found_per_rungs: list[tuple[Rung, ...]] = []
    n_rungs = 1
    while (
        resources := rung_resources(problem.workload.max_epochs, eta, n_rungs, min_resource)
    ) is not None:
        low = eta ** (n_rungs - 1)
        if low > max_configs:
            break
        rungs = problem.attempt(low, eta, resources)
        if rungs is not None:
            high = max_configs
            while low < high:
                middle = (low + high + 1) // 2
                found = problem.attempt(middle, eta, resources)
                if found is None:
                    high = middle - 1
                else:
                    low, rungs = middle, found
            found_per_rungs.append(rungs)
        n_rungs += 1
    return found_per_rungs


def _infeasible(problem: _Problem, workload: Workload) -> InfeasiblePlanError:
    singles = [problem.timed([RungShape(1, workload.max_epochs, k)]) for k in problem.candidates]
    in_time = [problem.cost(s) for s in singles if problem.finish(s) <= problem.deadline]
    in_budget = [problem.finish(s) for s in singles if problem.cost(s) <= problem.dollars]
    min_dollars = min(in_time) if in_time else None
    min_deadline = min(in_budget) if in_budget else None
    fastest = singles[-1][-1]
    parts = [
        f"No SEER plan fits a deadline of {format_seconds(problem.deadline)} and a budget of "
        f"${problem.dollars:,.2f}: even one configuration needs {workload.max_epochs} epochs."
    ]
    if min_dollars is not None:
        parts.append(f"By this deadline the smallest budget that works is ${min_dollars:,.2f}.")
    else:
        parts.append(
            f"No GPU count is fast enough: the fastest worthwhile one "
            f"({fastest.gpus_per_trial} GPUs) needs {format_seconds(problem.finish(singles[-1]))}."
        )
    if min_deadline is not None:
        parts.append(
            f"Within this budget the smallest deadline that works is {format_seconds(min_deadline)}"
            f" ({math.ceil(min_deadline)} s)."
        )
    else:
        cheapest = min(problem.cost(s) for s in singles)
        parts.append(f"The budget is below the cheapest full training (${cheapest:,.2f}).")
    parts.append("Or lower max_epochs.")
    return InfeasiblePlanError(" ".join(parts), min_deadline, min_dollars)
