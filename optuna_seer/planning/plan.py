"""Rungs as plain data: what one rung trains, SEER's timed rungs, and the SEER schedule.

A :class:`RungShape` is what one rung of successive halving trains: trials, cumulative epochs
and GPUs per trial. Both planners' rungs extend it, so its checks live here once: SEER's
:class:`Rung` adds the deterministic timing and cost the plan predicts, RubberBand's
:class:`~optuna_seer.planning.stage_plan.Stage` adds the cluster it runs on.
:func:`check_halving` is the rule every chain of rungs obeys (survivors shrink, epochs grow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
import datetime
import functools
import math
from typing import Any

from optuna_seer.planning.checks import number, whole

_TIMEDELTA_SECONDS = datetime.timedelta.max.days * 86400.0


def format_seconds(seconds: float) -> str:
    """``5430.0 -> '1:30:30'``; any float, even past what a ``timedelta`` holds.

    Example:
        >>> format_seconds(5430.0), format_seconds(-100), format_seconds(1e300)
        ('1:30:30', '-0:01:40', '1e+300 s')
        >>> format_seconds(float("inf")), format_seconds(float("nan"))
        ('inf s', 'nan s')
    """
    if not math.isfinite(seconds) or abs(seconds) >= _TIMEDELTA_SECONDS:
        return f"{seconds:.4g} s"
    if seconds < 0:
        return "-" + format_seconds(-seconds)
    return str(datetime.timedelta(seconds=round(seconds)))


def format_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` under ``columns``, every column right-aligned to its widest cell.

    Example:
        >>> print(format_table(["rung", "trials"], [["0", "27"], ["1", "9"]]))
        rung  trials
           0      27
           1       9
    """
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class RungShape:
    """What one rung trains: how many trials, to what cumulative epoch, on how many GPUs.

    Attributes:
        n_trials: Trials that train in this rung (the survivors of the previous one).
        resource: Cumulative epochs every trial of the rung has at the rung's end.
        gpus_per_trial: Data-parallel workers (GPUs) each trial gets in this rung.

    Example:
        >>> RungShape(9, 3, 2).shape == RungShape(9, 3, 2)
        True
    """

    n_trials: int
    resource: int
    gpus_per_trial: int

    def __post_init__(self) -> None:
        owner = type(self).__name__
        whole(self.n_trials, "n_trials", owner=owner)
        whole(self.resource, "resource", owner=owner)
        whole(self.gpus_per_trial, "gpus_per_trial", owner=owner)

    @property
    def shape(self) -> RungShape:
        """Just what the rung trains, without a subclass's timing or cluster."""
        return RungShape(self.n_trials, self.resource, self.gpus_per_trial)


def check_halving(n_trials: Sequence[int], resources: Sequence[int], noun: str = "rung") -> None:
    """Refuse a chain of rungs unless survivors never grow and epochs always grow.

    Example:
        >>> check_halving([9, 3], [1, 3])
        >>> check_halving([3, 9], [1, 3], "stage")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: stage 1 (9 trials to 3 epochs) does not follow stage 0 ...
    """
    for index in range(1, len(n_trials)):
        if resources[index] <= resources[index - 1] or n_trials[index] > n_trials[index - 1]:
            raise ValueError(
                f"{noun} {index} ({n_trials[index]} trials to {resources[index]} epochs) "
                f"does not follow {noun} {index - 1} ({n_trials[index - 1]} trials to "
                f"{resources[index - 1]} epochs): survivors must shrink and epochs grow."
            )


@dataclass(frozen=True, kw_only=True)
class Rung(RungShape):
    """One rung of a SEER schedule: its :class:`RungShape` and the timing SEER predicts for it.

    Attributes:
        index: 0 for the first rung.
        start_s: Seconds from the job's start when the rung starts.
        end_s: Seconds from the job's start when its last trial reaches ``resource``.
        cost: Dollars the rung's GPUs cost while provisioned.
        epoch_seconds: Seconds one epoch takes on ``gpus_per_trial`` GPUs, with
            ``concurrent_trials`` trials running at once (the workload's contention included).
        concurrent_trials: Trials running at once (the cluster limit may force waves).
        waves: ``ceil(n_trials / concurrent_trials)``.
        startup_s: Seconds each launch of the rung spends before its first epoch (processes,
            rendezvous, checkpoint load) on ``gpus_per_trial`` GPUs, contention included, as
            the plan times it (0 in plans written before it was recorded).

    The shape's fields may be given by position, the rest by keyword only.
    """

    index: int
    start_s: float
    end_s: float
    cost: float
    epoch_seconds: float
    concurrent_trials: int
    waves: int
    startup_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        whole(self.index, "index", 0, owner="Rung")
        whole(self.concurrent_trials, "concurrent_trials", owner="Rung")
        whole(self.waves, "waves", owner="Rung")
        for name in ("start_s", "end_s", "cost", "epoch_seconds", "startup_s"):
            number(getattr(self, name), name, owner="Rung")
        if self.end_s < self.start_s:
            raise ValueError(
                f"rung {self.index} ends ({self.end_s}) before it starts ({self.start_s})."
            )

    @property
    def gpus(self) -> int:
        """GPUs provisioned during the rung."""
        return self.concurrent_trials * self.gpus_per_trial

    @property
    def startup_gpu_seconds(self) -> float:
        """GPU-seconds one launch's start-up takes in the rung, as the plan times it."""
        return self.startup_s * self.gpus_per_trial


@dataclass(frozen=True)
class Plan:
    """A SEER schedule: rungs with survivors, epochs and GPUs per trial, and its predictions.

    Build one with :func:`optuna_seer.plan_seer`; it round-trips through JSON with
    :meth:`to_dict` / :meth:`from_dict`, and ``str(plan)`` is a table.
    """

    rungs: tuple[Rung, ...]
    reduction_factor: int
    deadline_s: float
    budget_dollars: float
    price_per_gpu_second: float
    min_marginal_speedup: float

    def __post_init__(self) -> None:
        if not self.rungs or not all(isinstance(r, Rung) for r in self.rungs):
            raise ValueError(f"a Plan needs one or more Rung objects, got {self.rungs!r}.")
        whole(self.reduction_factor, "reduction_factor", 2)
        for name in (
            "deadline_s",
            "budget_dollars",
            "price_per_gpu_second",
            "min_marginal_speedup",
        ):
            number(getattr(self, name), name, positive=True)
        if [r.index for r in self.rungs] != list(range(len(self.rungs))):
            raise ValueError(
                f"rung indices {[r.index for r in self.rungs]} must be 0, 1, 2, ... in order."
            )
        check_halving([r.n_trials for r in self.rungs], [r.resource for r in self.rungs])

    @property
    def n_configs(self) -> int:
        """Configurations the plan starts (the width of rung 0)."""
        return self.rungs[0].n_trials

    @property
    def max_epochs(self) -> int:
        return self.rungs[-1].resource

    @property
    def predicted_seconds(self) -> float:
        return self.rungs[-1].end_s

    @property
    def predicted_cost(self) -> float:
        return sum(r.cost for r in self.rungs)

    def rung_for_step(self, step: int | None) -> Rung:
        """The rung a trial that has trained ``step`` epochs is in (its next epoch's rung)."""
        done = 0 if step is None else step
        for rung in self.rungs:
            if done < rung.resource:
                return rung
        return self.rungs[-1]

    def epochs_before(self, index: int) -> int:
        """Cumulative epochs at the end of the rung before rung ``index`` (0 for the first):
        where rung ``index``'s epochs begin."""
        return self.rungs[index - 1].resource if index > 0 else 0

    def launch_through(self, first: int) -> int:
        """The last rung a launch that starts at rung ``first`` trains through on leased
        workers (:func:`optuna_seer.rungs`): every following rung on the same number of workers
        goes on in the same processes, except the last rung, which a trial enters only once
        its place there is certain, in a launch of its own."""
        last = first
        workers = self.rungs[first].gpus_per_trial
        while last + 2 < len(self.rungs) and self.rungs[last + 1].gpus_per_trial == workers:
            last += 1
        return last

    @functools.cached_property
    def launch_starts(self) -> frozenset[int]:
        """The rungs a survivor on leased workers is (re)launched at, paying start-up: the
        first, and each one after a launch's :meth:`launch_through`. Computed once per plan
        (the budget guard reads it at every report).

        Example:
            >>> from optuna_seer import Budget, Workload, plan_seer
            >>> plan = plan_seer(Budget(deadline="1h", dollars=5, price_per_gpu_hour=3.6),
            ...                  Workload(epoch_seconds=60, scaling="linear", max_epochs=9))
            >>> [r.gpus_per_trial for r in plan.rungs], sorted(plan.launch_starts)
            ([1, 1, 1], [0, 2])
        """
        starts, first = {0}, 0
        while (first := self.launch_through(first) + 1) < len(self.rungs):
            starts.add(first)
        return frozenset(starts)

    def matches(self, stored: Plan) -> bool:
        """Whether ``stored`` (a study's or a run's recorded plan) is this plan. One recorded
        before rungs carried their start-up (every ``startup_s`` 0) matches the same plan with
        its start-ups left out, so a run begun before the upgrade resumes after it; any other
        change of the workload still shows in the rungs' times.
        """
        if stored == self:
            return True
        if any(r.startup_s for r in stored.rungs):
            return False
        return stored == replace(self, rungs=tuple(replace(r, startup_s=0.0) for r in self.rungs))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["rungs"] = [{key: getattr(r, key) for key in _RUNG_KEYS} for r in self.rungs]
        data["predicted_seconds"] = self.predicted_seconds
        data["predicted_cost"] = self.predicted_cost
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan :meth:`to_dict` wrote (the predictions it adds are recomputed).

        Raises:
            ValueError: A key is missing or unknown, or a value is invalid; the message
                names it and says what is valid.
        """
        try:
            return cls._from_checked_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a valid Plan dict: {exc}") from None

    @classmethod
    def _from_checked_dict(cls, data: object) -> Plan:
        if not isinstance(data, dict):
            raise ValueError(
                f"a dict as Plan.to_dict() writes it is needed, got {type(data).__name__}: "
                f"{data!r:.80}"
            )
        values = dict(data)
        values.pop("predicted_seconds", None)
        values.pop("predicted_cost", None)
        _require_keys(values, _PLAN_KEYS, "the plan")
        rungs = values.pop("rungs")
        if not isinstance(rungs, list) or not rungs:
            raise ValueError(f"the plan's rungs={rungs!r:.80} must be a non-empty list of rungs.")
        for index, rung in enumerate(rungs):
            if not isinstance(rung, dict):
                raise ValueError(
                    f"rung {index} of the plan is {rung!r:.60}; it must be a dict with keys "
                    f"{', '.join(_RUNG_KEYS)}."
                )
            _require_keys(rung, _RUNG_KEYS, f"rung {index} of the plan", _OPTIONAL_RUNG_KEYS)
        return cls(rungs=tuple(Rung(**r) for r in rungs), **values)

    def __str__(self) -> str:
        head = (
            f"SEER plan: {self.n_configs} configurations, {len(self.rungs)} rungs, "
            f"reduction factor {self.reduction_factor}\n"
            f"time  {format_seconds(self.predicted_seconds)} of {format_seconds(self.deadline_s)}"
            f" deadline\ncost  ${self.predicted_cost:,.2f} of ${self.budget_dollars:,.2f} budget"
            f" at ${self.price_per_gpu_second * 3600:.2f}/GPU-hour\n"
        )
        columns = (
            "rung",
            "trials",
            "epochs",
            "GPUs/trial",
            "at once",
            "waves",
            "start",
            "end",
            "cost",
        )
        rows = [
            (
                str(r.index),
                str(r.n_trials),
                str(r.resource),
                str(r.gpus_per_trial),
                str(r.concurrent_trials),
                str(r.waves),
                format_seconds(r.start_s),
                format_seconds(r.end_s),
                f"${r.cost:,.2f}",
            )
            for r in self.rungs
        ]
        return head + format_table(columns, rows)


# Rung keys in the order Plan.to_dict has always written them (the index first).
_RUNG_KEYS = ("index", *(f.name for f in fields(Rung) if f.name != "index"))
_PLAN_KEYS = tuple(f.name for f in fields(Plan))
_OPTIONAL_RUNG_KEYS = ("startup_s",)  # absent from plans written before it was recorded


def _require_keys(
    data: dict[str, Any], keys: tuple[str, ...], what: str, optional: tuple[str, ...] = ()
) -> None:
    """Refuse ``data`` unless its keys are exactly ``keys`` (``optional`` ones may be missing),
    naming the odd ones."""
    missing = [k for k in keys if k not in data and k not in optional]
    unknown = sorted(str(k) for k in data if k not in keys)
    problems = ([f"lacks {missing}"] if missing else []) + (
        [f"has unknown key(s) {unknown}"] if unknown else []
    )
    if problems:
        raise ValueError(f"{what} {' and '.join(problems)}; valid keys: {', '.join(keys)}.")
