"""SeerPruner: eliminate trials rung by rung as the SEER plan says, within deadline and budget."""

from __future__ import annotations

from collections.abc import Callable, Mapping
import math
import threading
import time
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optuna_seer._logging import get_logger
from optuna_seer._optuna import storage_of, study_id_of, trial_id_of
from optuna_seer.integration.admission import (
    FinishedTrials,
    SpendView,
    out_of_time,
    over_budget,
    spend_view,
)
from optuna_seer.integration.clock import study_time
from optuna_seer.integration.decisions import (
    RungDecision,
    check_rung_index,
    decide_rung,
    eliminated,
)
from optuna_seer.integration.default_plan import plan_for_pool
from optuna_seer.integration.keys import (
    STUDY_MODE,
    STUDY_STARTED_AT,
    SYNCHRONOUS,
    TRIAL_BEYOND_PLAN,
    TRIAL_LEASE,
    TRIAL_RERUN_OF,
    TRIAL_STOP_REASON,
    RungRank,
    counted_rank,
    rung_end,
    rung_end_key,
    rung_rank,
)
from optuna_seer.integration.ledger import settled
from optuna_seer.integration.ranking import Promotion, rung_mean
from optuna_seer.integration.reruns import PARKED, final_rung_full, park_reason, with_reserve
from optuna_seer.integration.seats import SEAT, displacement, shown
from optuna_seer.integration.steps import check_steps, mark_segment
from optuna_seer.integration.trial_gpus import (
    ImplicitPlacement,
    implicit_placement,
    placement_of,
)
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.learning_curves import CurvePrior
from optuna_seer.planning.plan import Plan, Rung
from optuna_seer.planning.workload import Workload

_logger = get_logger(__name__)


def _log_stop(trial: FrozenTrial, reason: str) -> None:
    """Say why SEER stops ``trial``, beside Optuna's own "Trial N pruned." line (which has
    the reason only when the objective passes it to ``TrialPruned``)."""
    _logger.info("SEER stops trial %d: %s", trial.number, reason)


WAIT = "wait"
"""What :meth:`SeerPruner.final_rung_entry` says when a trial should wait before its last
rung."""
_LAST_RUNG_SLACK = 1.5
"""A waiting trial goes once the time left is no more than this times its last rung's."""


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
      early gives its place back at its next report once ``n_{r+1}`` trials have beaten its
      value at a rung it passed, so the finalists converge to the plan's survivors. A plain
      trial enters the last rung only when its place is certain, else it is parked there
      and re-run if it ranks among the finalists (:mod:`optuna_seer.integration.reruns`).
      At every report it also checks the deadline (at the epoch rate measured since the
      trial's last rung end) and the budget: the trial stops once what the ledger shows spent,
      plus what trials ahead of it will cost to their rungs' ends, plus what its own rung
      still costs at its measured epoch time, exceeds the budget (see
      :mod:`optuna_seer.integration.admission`). Read why with
      :func:`~optuna_seer.integration.keys.stop_reason`.

    Steps must be cumulative epochs: a step beyond the plan's ``max_epochs``, or one after a
    larger one, raises a ``ValueError`` saying so. A NaN or infinite value prunes the trial,
    with the reason, as Optuna's own pruners do.

    Per trial and rung end, the asynchronous mode writes one system attr
    (``seer:rung_<r>_end``: the value, the mean over the rung that breaks ties in it, the
    settled cost, why it stops there), where Optuna's ``SuccessiveHalvingPruner`` writes
    its ``completed_rung_<r>``.

    It needs :class:`~optuna_seer.SeerSampler`, which places trials in the plan; a study
    without it raises a ``ValueError`` at the first report, naming the fix.

    Args:
        budget: Deadline, dollars and GPU price (with ``workload``), or pass ``plan``.
        workload: Epoch time, scaling, max epochs.
        reduction_factor: ``η``, at least 2.
        plan: A ready plan instead of ``budget``/``workload``.
        limits: The workers the plan may use at once (see :func:`plan_seer`). ``None`` (the
            default): the workers here, as ``optuna_seer.rungs`` leases them: one per visible
            GPU, else CPU processes (up to 8), or ``OPTUNA_SEER_WORKERS`` (a count, or ``none``
            for no cap) when set; set it alike on every machine sharing the study. Pass
            ``ClusterLimits(max_gpus=n_jobs)`` when trials train in ``n_jobs`` threads, or
            ``ClusterLimits()`` for a cloud cluster that grows with the plan. On a pool
            (``max_gpus`` set) the plan's last rung also takes the workers its finalists would
            leave idle, within the deadline and the budget (:func:`plan_seer`, step 4).
        min_resource, min_marginal_speedup, max_configs: See :func:`plan_seer`.
        epoch_cv, quantile: With one epoch's relative time spread above 0 (a ``Profile``'s
            ``epoch_cv``), deadline and budget hold at this quantile of the stragglers (p95),
            not only at mean epoch times (:func:`plan_seer`); 0 (the default): at the means.
        clock: Seconds since the epoch; replaced by a simulated clock in replays.
        curve_prior: Opt-in curve-aware promotion: synchronous rung decisions rank by the
            final value this :class:`~optuna_seer.planning.learning_curves.CurvePrior`
            predicts from each curve (:func:`~optuna_seer.integration.ranking.curve_rank_key`)
            instead of the rung-end value. ``None`` (the default): the rung-end value.
        promote_by: ``"value"`` (the default): rung decisions rank by the reported value.
            ``"tie_break"``: by the tie-break metric workers report with it
            (``SeerCallback(tie_break="val_loss")``) at the rung end, then the value, in
            both modes; the final selection still ranks by the value. Finer than an accuracy
            on a small validation set after a few epochs (:mod:`.ranking`).

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
        epoch_cv: float | Mapping[int, float] = 0.0,
        quantile: float = 0.95,
        clock: Callable[[], float] = time.time,
        curve_prior: CurvePrior | None = None,
        promote_by: str = "value",
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
            self._plan = plan_for_pool(
                budget,
                workload,
                reduction_factor,
                limits=limits,
                min_resource=min_resource,
                min_marginal_speedup=min_marginal_speedup,
                max_configs=max_configs,
                epoch_cv=epoch_cv,
                quantile=quantile,
            )
        if not callable(clock):
            raise TypeError(f"clock={clock!r} must be a callable returning seconds.")
        self._clock = clock
        self._promotion = Promotion(promote_by, curve_prior)
        self._caches: dict[tuple[int, int], FinishedTrials] = {}
        self._lock = threading.Lock()

    @property
    def plan(self) -> Plan:
        """The SEER schedule this pruner enforces."""
        return self._plan

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def _cache(self, study: optuna.Study) -> FinishedTrials:
        """This process's cache for ``study`` (two storages may hold studies with one id)."""
        key = (id(storage_of(study)), study_id_of(study))
        with self._lock:
            cache = self._caches.get(key)
            if cache is None or cache.storage is not storage_of(study):
                cache = FinishedTrials(storage_of(study), len(self._plan.rungs) - 1)
                self._caches[key] = cache
            return cache

    def _study_state(self, study: optuna.Study) -> tuple[float, bool]:
        """(clock start, synchronous?) of ``study``, read once per process."""
        cache = self._cache(study)
        if cache.state is None:
            attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
            synchronous = attrs.get(STUDY_MODE) == SYNCHRONOUS
            if STUDY_STARTED_AT not in attrs:
                return self._clock(), synchronous
            cache.state = (float(attrs[STUDY_STARTED_AT]), synchronous)
        return cache.state

    def spend_view(
        self,
        study: optuna.Study,
        now: float,
        implicit: ImplicitPlacement | None,
        trials: list[FrozenTrial] | None = None,
    ) -> tuple[SpendView, list[FrozenTrial]]:
        """The study's spend and its running trials' commitments as of ``now``, and the
        trials not finished (reads the study's trials unless given)."""
        if trials is None:
            trials = study.get_trials(deepcopy=False)
        finished = self._cache(study)
        with self._lock:
            unfinished = finished.gather(self._plan, trials, implicit)
            view = spend_view(self._plan, finished, unfinished, now, implicit)
        return view, unfinished

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
        implicit = implicit_placement(storage_of(study), study_id_of(study))
        if placement_of(trial, implicit) is None:
            raise ValueError(
                f"trial {trial.number} was not placed in the SEER plan: SeerPruner needs "
                "create_study(sampler=SeerSampler(...), pruner=SeerPruner(...)) so that "
                "every trial gets its rung and GPUs."
            )
        check_steps(trial, self._plan.max_epochs)
        value = trial.intermediate_values[step]
        if not math.isfinite(value):
            # As Optuna's own pruners do: a diverged trial is pruned, the study goes on.
            return self._stop(
                study, trial, f"reported {value!r} at step {step}; SEER ranks finite values only"
            )
        started_at, synchronous = self._study_state(study)
        now = study_time(study, self._clock)
        if synchronous:
            return eliminated(self._plan, trial, step)
        return self._asynchronous_verdict(study, trial, step, value, now, started_at, implicit)

    def _asynchronous_verdict(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        step: int,
        value: float,
        now: float,
        started_at: float,
        implicit: ImplicitPlacement | None,
    ) -> bool:
        """Whether ``trial`` must stop at ``step`` in asynchronous mode; records why.

        Every report reads the study's trials (finished ones once per process): the trial
        stops as soon as better trials displaced it at a rung it passed, when its rung's
        projected cost no longer fits the budget after the trials ahead of it, or when it
        cannot finish its rung before the deadline. At a rung end it also faces ASHA's rule
        (at the last rung's door, a trial on leased workers, which waits for its place there
        without workers, only stops once the last rung's width of trials beat it) and,
        entering the last rung, takes a seat there (see :mod:`.admission`). A rung end
        writes one record (value, settled cost, why it stops there if it does); between rung
        ends only a stop writes (its reason).
        """
        plan, attrs = self._plan, trial.system_attrs
        rungs = plan.rungs
        passed = {r.index: rung_rank(attrs, r.index) for r in rungs[:-1]}
        mine: dict[int, RungRank] = {i: own for i, own in passed.items() if own is not None}
        crossed = [r for r in rungs[:-1] if r.resource <= step and r.index not in mine]

        maximize = study.direction == StudyDirection.MAXIMIZE

        def at_end(rung: Rung) -> tuple[RungRank, float]:
            # Ranked as the synchronous decision ranks (the value, ties to the mean over the
            # rung; or the tie-break metric first); and the mean, for the record.
            mean = rung_mean(trial, plan.epochs_before(rung.index), rung.resource)
            return self._promotion.rank(trial, step, value, mean, maximize), mean

        def record_at(index: int, stop: str | None) -> dict[str, Any]:
            rank, mean = ends[index]
            return rung_end(value, mean, charged, as_of, stop, None if by_value else rank)

        ends = {r.index: at_end(r) for r in crossed}
        at_ends = {index: rank for index, (rank, _) in ends.items()}
        rerun = attrs.get(TRIAL_RERUN_OF) is not None  # its place is certain: no ranking
        ranked = {} if rerun else {**mine, **at_ends}
        seen, better, view = self._rank_among_others(study, trial, ranked, now, implicit)
        charged, as_of = settled(trial, now, implicit) or (0.0, now)
        # Displaced at a rung passed before this report: it stops so, and is never parked.
        by_value = self._promotion.by == "value"
        reason = None if rerun else displacement(rungs, mine, better, by_value=by_value)
        parked = False
        waits = TRIAL_LEASE in attrs  # rungs(): it can wait for the last rung without workers
        for rung in [] if rerun or reason else crossed:
            # ASHA's rule with SEER's fraction: in the top n_{r+1}/n_r of the values seen;
            # at the last rung's door a trial that can wait (final_rung_entry) stops only
            # once the plan's last width of trials beat it, and one that cannot is parked
            # unless its place there is certain (reruns.py).
            keep = rungs[rung.index + 1].n_trials
            if rung.index == len(rungs) - 2 and better[rung.index] < keep:
                reason, certain = (None, True)
                if not waits:
                    reason, certain = park_reason(
                        self._plan,
                        study.get_trials(deepcopy=False),
                        (trial, better[rung.index], value),
                        started_at + self._plan.deadline_s - now,
                        view,
                        maximize,
                    )
                if reason is not None or certain:
                    parked = reason is not None
                    crossed = crossed[: crossed.index(rung) + 1]
                    break
            if better[rung.index] >= max(seen[rung.index] * keep // rung.n_trials, 1):
                reason = (
                    f"rung {rung.index}: {value:.6g} not in the top {keep}/{rung.n_trials} "
                    f"of {seen[rung.index]} values seen"
                )
                crossed = crossed[: crossed.index(rung) + 1]
                break
        if reason is None:
            # A trial promoted early, before better ones reported, gives its place back as
            # soon as it no longer ranks within the plan's survivors of a rung it passed.
            reason = displacement(rungs, ranked, better, by_value=by_value)
        if reason is None:
            if crossed and not (waits or rerun):  # a promotion: parked finalists' re-runs first
                trials = study.get_trials(deepcopy=False)
                view = with_reserve(self._plan, trials, maximize, view, trial.number)[0]
            reason = over_budget(self._plan, trial, step, now, implicit, view, crossed)
        if reason is None:
            mark_segment(self._plan, study, trial, step, now)
            reason = out_of_time(self._plan, trial, step, now, started_at, implicit)
        storage = storage_of(study)
        if not crossed:
            if reason is None:
                return False
            if step < self._plan.max_epochs:
                return self._stop(study, trial, reason)
            crossed = [rungs[-1]]  # stopped at the last epoch: the last rung's end
            ends[rungs[-1].index] = at_end(rungs[-1])
        seat = reason is None and crossed[-1].index == len(rungs) - 2
        for rung in crossed:
            stop = reason if rung is crossed[-1] else None
            record = record_at(rung.index, stop)
            if (seat or parked) and rung is crossed[-1]:
                record[PARKED if parked else SEAT] = True
            storage.set_trial_system_attr(trial_id_of(trial), rung_end_key(rung.index), record)
        if seat:
            reason = final_rung_full(self._plan, study.get_trials(deepcopy=False), maximize)
            if reason is not None:
                record = record_at(crossed[-1].index, reason)
                storage.set_trial_system_attr(
                    trial_id_of(trial), rung_end_key(crossed[-1].index), record
                )
        if reason is not None:
            _log_stop(trial, reason)
        return reason is not None

    def final_rung_entry(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """May ``trial``, which just ended the last-but-one rung with a seat, start the last
        rung now? ``None``: go; :data:`WAIT`: not yet; any other string: why it stops.

        An asynchronous promotion into the last rung is made on the values seen so far; a
        trial that starts the last rung early can finish it before better ones report, so
        more trials than the plan's last width would train fully. A caller that can hold a
        trial between rungs (:func:`optuna_seer.rungs` does) asks this first: the trial
        waits until the last-but-one rung has the plan's number of values (or the deadline
        leaves just the last rung's time), then goes only if it is still in the top
        ``n_last`` of them.
        """
        rungs = self._plan.rungs
        if len(rungs) < 2:
            return None
        previous, last = rungs[-2], rungs[-1]
        own = rung_rank(trial.system_attrs, previous.index)
        if own is None:
            return None
        now = study_time(study, self._clock)
        implicit = implicit_placement(storage_of(study), study_id_of(study))
        ranked = {previous.index: own}
        seen, better, _ = self._rank_among_others(study, trial, ranked, now, implicit)
        if better[previous.index] >= last.n_trials:
            reason = (
                f"rung {previous.index}: displaced, {better[previous.index]} trials beat "
                f"{shown(own, self._promotion.by == 'value')} and the plan keeps {last.n_trials}"
            )
            self._stop(study, trial, reason)
            return reason
        if seen[previous.index] >= previous.n_trials:
            return None
        started_at, _ = self._study_state(study)
        needed = (last.resource - previous.resource) * last.epoch_seconds
        if now + needed * _LAST_RUNG_SLACK >= started_at + self._plan.deadline_s:
            return None  # no time to wait for more values: go on what is known
        return WAIT

    def _rank_among_others(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        ranked: dict[int, RungRank],
        now: float,
        implicit: ImplicitPlacement | None,
    ) -> tuple[dict[int, int], dict[int, int], SpendView]:
        """For each rung in ``ranked``: how many values were seen there (``trial``'s own
        included) and how many beat ``trial``'s; and the study's spend view as of ``now``
        without ``trial``'s commitment.

        Finished trials never change, so each process gathers them once (see
        :class:`~optuna_seer.integration.admission.FinishedTrials`); a call then reads only the
        trials still running.
        """
        maximize = study.direction == StudyDirection.MAXIMIZE
        view, unfinished = self.spend_view(study, now, implicit)
        finished = self._cache(study)
        with self._lock:
            seen = {index: 1 + len(finished.values[index]) for index in ranked}
            better = {
                index: finished.beating(index, own, maximize) for index, own in ranked.items()
            }
        for other in (t for t in unfinished if t.number != trial.number):
            for index, own in ranked.items():
                theirs = counted_rank(other.system_attrs, index)
                if theirs is not None:
                    seen[index] += 1
                    if theirs > own if maximize else theirs < own:
                        better[index] += 1
        return seen, better, view

    @staticmethod
    def _stop(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
        storage_of(study).set_trial_system_attr(trial_id_of(trial), TRIAL_STOP_REASON, reason)
        _log_stop(trial, reason)
        return True

    def decide_rung(self, study: optuna.Study, rung_index: int) -> RungDecision:
        """Synchronous decision for ``rung_index``: keep the top ``n_{r+1}`` trials.

        Considers every placed trial that reported at (or past) the rung's end and was not
        already eliminated, ranked by :func:`optuna_seer.integration.ranking.rank_key`: ties in the
        rung-end value go to the higher mean over the rung, then the lower trial number.
        Records each trial's value and verdict in its system attrs, so later
        ``should_prune`` calls in any process agree.

        A trial that reported NaN or infinity at the rung's end is eliminated, with the reason.

        Raises:
            ValueError: ``rung_index`` is not a rung that promotes (the last one does not).
        """
        check_rung_index(self._plan, rung_index)
        storage_of(study).set_study_system_attr(study_id_of(study), STUDY_MODE, SYNCHRONOUS)
        self._cache(study).state = None
        return decide_rung(
            study, self._plan, rung_index, self._promotion.key_for(self._plan), self._stop
        )
