"""SeerPruner: eliminate trials rung by rung as the SEER plan says, within deadline and budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
import time

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_seer.budget import Budget
from optuna_seer.cost_model import ClusterLimits
from optuna_seer.ledger import settle_trial, spent_gpu_seconds
from optuna_seer.plan import Plan, Rung, format_seconds
from optuna_seer.seer_planner import plan_seer
from optuna_seer.trial_attrs import (
    STUDY_MODE,
    STUDY_STARTED_AT,
    SYNCHRONOUS,
    TRIAL_BEYOND_PLAN,
    TRIAL_LEDGER,
    TRIAL_PLACEMENT,
    TRIAL_STOP_REASON,
    promoted_key,
    rung_value_key,
)
from optuna_seer.workload import Workload


@dataclass(frozen=True)
class RungDecision:
    """Who survived a rung, by trial number, best first."""

    rung: int
    promoted: tuple[int, ...]
    eliminated: tuple[int, ...]


def _is_better(a: float, b: float, direction: StudyDirection) -> bool:
    return a > b if direction == StudyDirection.MAXIMIZE else a < b


def _promotable(
    value: float, competing: list[float], keep: int, seen: int, direction: StudyDirection
) -> bool:
    """ASHA's rule with SEER's fraction: in the top ``keep/seen`` of the values seen so far."""
    top = (len(competing) * keep) // seen
    ordered = sorted(competing, reverse=direction == StudyDirection.MAXIMIZE)
    if top == 0:
        return value == ordered[0]
    worst_kept = ordered[top - 1]
    return value == worst_kept or _is_better(value, worst_kept, direction)


class SeerPruner(BasePruner):
    """Prune by the SEER plan: keep the top ``n_{r+1}`` of each rung, stop before the deadline.

    The plan is computed once, on construction, by :func:`~optuna_seer.plan_seer` (or given).
    Rung ``r`` ends when a trial has reported ``plan.rungs[r].resource`` epochs (report the
    cumulative epoch count as ``step``).

    Two modes make the same decisions:

    * **Synchronous** (the elastic executor): once every trial of a rung has reported, the
      executor calls :meth:`decide_rung`, which keeps exactly the top ``n_{r+1}``.
    * **Asynchronous** (plain ``study.optimize`` on a fixed pool): a trial reaching a rung's end
      is promoted when its value is in the top ``n_{r+1}/n_r`` of the values seen at that rung
      (ASHA); with all ``n_r`` values seen this is the synchronous rule. A trial promoted
      early gives its place back at its next rung end (or before completing) once ``n_{r+1}``
      trials have beaten its value at a rung it passed, so the finalists converge to the
      plan's survivors. It is also deadline-aware: a trial that, at its epoch rate measured
      since its last rung end (the plan's rate before that), cannot finish its current rung
      before the deadline is stopped, and one is stopped when the study's ledger shows the
      budget spent. The reason is recorded in the trial's ``seer:stop_reason`` system attr.

    It needs :class:`~optuna_seer.SeerSampler`, which places trials in the plan; a study
    without it raises a ``ValueError`` at the first report, naming the fix.

    Args:
        budget: Deadline, dollars and GPU price (with ``workload``), or pass ``plan``.
        workload: Epoch time, scaling, max epochs.
        reduction_factor: ``η``, at least 2.
        plan: A ready plan instead of ``budget``/``workload``.
        limits, min_resource, min_marginal_speedup, max_configs: See :func:`plan_seer`.
        clock: Seconds since the epoch; replaced by a simulated clock in replays.

    Example:
        >>> import optuna
        >>> from optuna_seer import Budget, SeerPruner, SeerSampler, Workload
        >>> pruner = SeerPruner(Budget(deadline="2h", dollars=50, price_per_gpu_hour=3.0),
        ...                     Workload(epoch_seconds=60, scaling="linear", max_epochs=9))
        >>> study = optuna.create_study(direction="maximize", pruner=pruner,
        ...                             sampler=SeerSampler(optuna.samplers.RandomSampler(0)))
        >>> pruner.plan.n_configs > 1
        True
    """

    def __init__(
        self,
        budget: Budget | None = None,
        workload: Workload | None = None,
        reduction_factor: int = 3,
        *,
        plan: Plan | None = None,
        limits: ClusterLimits | None = None,
        min_resource: int = 1,
        min_marginal_speedup: float = 0.2,
        max_configs: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if plan is not None:
            if budget is not None or workload is not None:
                raise ValueError("give either plan=... or budget=... and workload=..., not both.")
            if not isinstance(plan, Plan):
                raise TypeError(f"plan={plan!r} must be an optuna_seer.Plan.")
            self._plan = plan
        else:
            if budget is None or workload is None:
                raise ValueError(
                    "SeerPruner needs budget=Budget(...) and workload=Workload(...), or plan=..."
                )
            self._plan = plan_seer(
                budget,
                workload,
                reduction_factor,
                limits=limits,
                min_resource=min_resource,
                min_marginal_speedup=min_marginal_speedup,
                max_configs=max_configs,
            )
        if not callable(clock):
            raise TypeError(f"clock={clock!r} must be a callable returning seconds.")
        self._clock = clock
        self._study_info: dict[int, tuple[float, bool]] = {}

    @property
    def plan(self) -> Plan:
        """The SEER schedule this pruner enforces."""
        return self._plan

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def _study_state(self, study: optuna.Study) -> tuple[float, bool]:
        """(clock start, synchronous?) of ``study``, read once per process."""
        info = self._study_info.get(study._study_id)
        if info is None:
            attrs = study._storage.get_study_system_attrs(study._study_id)
            if STUDY_STARTED_AT not in attrs:
                return self._clock(), attrs.get(STUDY_MODE) == SYNCHRONOUS
            info = (float(attrs[STUDY_STARTED_AT]), attrs.get(STUDY_MODE) == SYNCHRONOUS)
            self._study_info[study._study_id] = info
        return info

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        if study._is_multi_objective():
            raise ValueError(
                "SeerPruner ranks trials by one reported value; multi-objective studies "
                f"(directions={study.directions}) are not supported."
            )
        step = trial.last_step
        if step is None:
            return False
        attrs = trial.system_attrs
        if attrs.get(TRIAL_BEYOND_PLAN):
            return True
        if TRIAL_PLACEMENT not in attrs:
            raise ValueError(
                f"trial {trial.number} was not placed in the SEER plan: SeerPruner needs "
                "create_study(sampler=SeerSampler(...), pruner=SeerPruner(...)) so that "
                "every trial gets its rung and GPUs."
            )
        value = trial.intermediate_values[step]
        if not math.isfinite(value):
            raise ValueError(
                f"trial {trial.number} reported {value!r} at step {step}; SeerPruner ranks "
                "finite values only. Report a finite metric, or raise optuna.TrialPruned() "
                "for a diverged run."
            )
        started_at, synchronous = self._study_state(study)
        now = self._clock()
        if synchronous:
            return self._pruned_by_decision(study, trial, step)
        reason = self._asynchronous_verdict(study, trial, step, value, now)
        if reason is not None:
            return self._stop(study, trial, reason)
        return self._out_of_time(study, trial, step, now, started_at)

    def _asynchronous_verdict(
        self, study: optuna.Study, trial: FrozenTrial, step: int, value: float, now: float
    ) -> str | None:
        """Why ``trial`` must stop at ``step`` in asynchronous mode, or ``None``.

        Reads all trials only when the trial crosses a rung end (as Optuna's
        SuccessiveHalvingPruner does), so the cost per ``should_prune`` stays comparable.
        """
        rungs = self._plan.rungs
        attrs = trial.system_attrs
        mine = {
            r.index: float(attrs[rung_value_key(r.index)])
            for r in rungs[:-1]
            if rung_value_key(r.index) in attrs
        }
        crossed = [r for r in rungs[:-1] if r.resource <= step and r.index not in mine]
        if not crossed and step < self._plan.max_epochs:
            return None
        others = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number]
        direction = study.direction
        for rung in crossed:
            key = rung_value_key(rung.index)
            keep = rungs[rung.index + 1].n_trials
            competing = [float(t.system_attrs[key]) for t in others if key in t.system_attrs]
            competing.append(value)
            study._storage.set_trial_system_attr(trial._trial_id, key, value)
            mine[rung.index] = value
            gpu_seconds = settle_trial(study._storage, trial, now)
            spent = (gpu_seconds + spent_gpu_seconds(others, now)) * self._plan.price_per_gpu_second
            if spent >= self._plan.budget_dollars:
                return (
                    f"budget: ${spent:,.2f} of "
                    f"${self._plan.budget_dollars:,.2f} spent when rung {rung.index} ended"
                )
            if not _promotable(value, competing, keep, rung.n_trials, direction):
                return (
                    f"rung {rung.index}: {value:.6g} not in the top {keep}/{rung.n_trials} "
                    f"of {len(competing)} values seen"
                )
        # A trial promoted early, before better ones reported, gives its place back: at every
        # rung end it must still rank within the plan's survivors of each rung it passed.
        for index, own in mine.items():
            key = rung_value_key(index)
            keep = rungs[index + 1].n_trials
            better = sum(
                1
                for t in others
                if key in t.system_attrs and _is_better(float(t.system_attrs[key]), own, direction)
            )
            if better >= keep:
                return (
                    f"rung {index}: displaced, {better} trials beat {own:.6g} and the plan "
                    f"keeps {keep}"
                )
        return None

    def _out_of_time(
        self, study: optuna.Study, trial: FrozenTrial, step: int, now: float, started_at: float
    ) -> bool:
        if step >= self._plan.max_epochs or step <= 0:
            return False
        rung = self._plan.rung_for_step(step)
        # Epoch time measured since the last rung end (the ledger settles there), so launch
        # start-up never counts as training; the plan's estimate until a rung end is timed.
        attrs = trial.system_attrs
        passed = [r for r in self._plan.rungs[:-1] if rung_value_key(r.index) in attrs]
        account = attrs.get(TRIAL_LEDGER)
        if passed and account is not None and step > passed[-1].resource:
            seconds_per_epoch = max(now - float(account[1]), 0.0) / (step - passed[-1].resource)
        else:
            seconds_per_epoch = rung.epoch_seconds
        needed = (rung.resource - step) * seconds_per_epoch
        left = started_at + self._plan.deadline_s - now
        if needed <= left:
            return False
        return self._stop(
            study,
            trial,
            (
                f"deadline: rung {rung.index} needs {needed:.0f} s more "
                f"({rung.resource - step} epochs at {seconds_per_epoch:.1f} s), "
                f"{max(left, 0.0):.0f} s left of {format_seconds(self._plan.deadline_s)}"
            ),
        )

    def _pruned_by_decision(self, study: optuna.Study, trial: FrozenTrial, step: int) -> bool:
        for rung in self._plan.rungs[:-1]:
            if step < rung.resource:
                return False
            survived = trial.system_attrs.get(promoted_key(rung.index))
            if survived is False:
                return True
        return False

    @staticmethod
    def _stop(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
        study._storage.set_trial_system_attr(trial._trial_id, TRIAL_STOP_REASON, reason)
        return True

    def decide_rung(self, study: optuna.Study, rung_index: int) -> RungDecision:
        """Synchronous decision for ``rung_index``: keep the top ``n_{r+1}`` trials.

        Considers every placed trial that reported at (or past) the rung's end and was not
        already eliminated; ties go to the lower trial number. Records each trial's value and
        verdict in its system attrs, so later ``should_prune`` calls in any process agree.

        Raises:
            ValueError: ``rung_index`` is not a rung that promotes (the last one does not).
        """
        rungs = self._plan.rungs
        if not (0 <= rung_index < len(rungs) - 1):
            raise ValueError(
                f"rung_index={rung_index}: rungs that promote are 0..{len(rungs) - 2}."
            )
        study._storage.set_study_system_attr(study._study_id, STUDY_MODE, SYNCHRONOUS)
        self._study_info.pop(study._study_id, None)
        rung: Rung = rungs[rung_index]
        keep = rungs[rung_index + 1].n_trials
        contenders: list[tuple[float, int, float, FrozenTrial]] = []
        for t in study.get_trials(deepcopy=False):
            if TRIAL_PLACEMENT not in t.system_attrs or t.system_attrs.get(TRIAL_BEYOND_PLAN):
                continue
            if any(t.system_attrs.get(promoted_key(r)) is False for r in range(rung_index)):
                continue
            steps = [s for s in t.intermediate_values if s >= rung.resource]
            if not steps or t.state not in (
                TrialState.RUNNING,
                TrialState.WAITING,
                TrialState.COMPLETE,
            ):
                continue
            value = t.intermediate_values[min(steps)]
            if not math.isfinite(value):
                raise ValueError(
                    f"trial {t.number} reported {value!r} at rung {rung_index}; SeerPruner "
                    "ranks finite values only."
                )
            order = -value if study.direction == StudyDirection.MAXIMIZE else value
            contenders.append((order, t.number, value, t))
        contenders.sort(key=lambda c: (c[0], c[1]))
        promoted = {c[1] for c in contenders[:keep]}
        for _, number, value, t in contenders:
            study._storage.set_trial_system_attr(t._trial_id, rung_value_key(rung_index), value)
            study._storage.set_trial_system_attr(
                t._trial_id, promoted_key(rung_index), number in promoted
            )
            if number not in promoted:
                self._stop(
                    study, t, f"rung {rung_index}: not in the top {keep} of {len(contenders)}"
                )
        return RungDecision(
            rung=rung_index,
            promoted=tuple(c[1] for c in contenders[:keep]),
            eliminated=tuple(c[1] for c in contenders[keep:]),
        )
