"""SeerSampler: any Optuna sampler, plus placement of each trial in the SEER plan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import contextlib
import dataclasses
import threading
import time
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._optuna import (
    fresh_trials,
    set_trial_attrs,
    storage_of,
    study_id_of,
    trial_id_of,
)
from optuna_seer.integration import dashboard
from optuna_seer.integration.admission import (
    WidthCount,
    budget_refusal,
    commitment,
    launch_rungs,
)
from optuna_seer.integration.clock import study_time
from optuna_seer.integration.heartbeat import on_trial_end, on_trial_start
from optuna_seer.integration.keys import (
    STUDY_EXECUTOR_PROGRESS,
    STUDY_IMPLICIT_PLACEMENT,
    STUDY_MODE,
    STUDY_PLAN,
    STUDY_STARTED_AT,
    SYNCHRONOUS,
    TRIAL_AWAITING_RERUN,
    TRIAL_BEYOND_PLAN,
    TRIAL_LEASE,
    TRIAL_LEDGER,
    TRIAL_PLACEMENT,
    TRIAL_STOP_REASON,
)
from optuna_seer.integration.ledger import settled, settled_at_stop, start_clock
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.reruns import (
    claim_rerun,
    door_state,
    finished_plan,
    may_park,
    rerun_cost,
    reruns_left,
    with_reserve,
)
from optuna_seer.integration.trial_gpus import (
    ImplicitPlacement,
    implicit_placement,
    keeps_true_start_times,
    placement,
    placement_of,
)
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.spending import affordable_width


class SeerSampler(BaseSampler):
    """Wrap a sampler so every new trial is placed in the plan of the study's ``SeerPruner``.

    Parameter values come from ``base_sampler`` unchanged (TPE by default). In
    ``before_trial`` the sampler places the trial: the GPUs the plan gives it in each rung
    (read them with :func:`optuna_seer.gpus_for`) and the start of its cost account; it also
    stores the plan in the study, so every process and a restarted driver use the same one,
    and starts the study's deadline clock. On the wall clock the placement costs no storage
    write: the study holds the plan's GPUs once and a trial is placed at its
    ``datetime_start`` (see :mod:`optuna_seer.integration.trial_gpus`); on a simulated clock it is
    written to the trial's system attrs.

    A new trial is refused (pruned at its first ``suggest_*`` or :func:`~optuna_seer.gpus_for`,
    and the study asked to stop) when it is beyond the plan's width (``plan.n_configs``
    configurations, counted over all processes by the trials placed before it that did not
    fail, so a rerun after a crash trains the full width), or when its first rung, at the
    epoch time measured so far, does not fit the budget left once the trials in play finish
    their rungs (see :mod:`optuna_seer.integration.admission`; under an
    :class:`~optuna_seer.ElasticTuner`, its own guard admits launches instead). The trial that
    takes the last place stops the study, so no objective runs beyond the width, unless
    trials parked at the last rung's door may need re-runs: trials asked beyond the width
    then train the parked configurations that rank among the last width, once the door's
    values are all in (:mod:`optuna_seer.integration.reruns`; leave ``n_trials`` out, or
    above the width plus the last width). A study holding trials SEER did not run (another
    sampler's or pruner's) is refused by name.

    Why the sampler reads ``study.pruner`` directly: Optuna hands a sampler a per-bracket
    filtered study only for ``HyperbandPruner`` subclasses, and SEER has a single bracket
    whose rungs change GPUs, not brackets; reading the pruner (as OptunaHub's DEHB pair does)
    keeps one plan, one source of truth, with no Hyperband machinery to inherit. Without a
    ``SeerPruner`` the sampler is a transparent wrapper, so it can stand in anywhere.

    With ``widen=True`` (a pool of workers that should never idle, e.g. with
    :func:`optuna_seer.rungs`), trials beyond the plan's width are admitted too, as
    asynchronous successive halving admits them, while a new configuration can still train
    every rung by the deadline at the plan's epoch times and the budget allows it: more
    configurations compete in the first rungs, and the last rung keeps the plan's width.

    Args:
        base_sampler: The sampler that proposes parameter values; ``TPESampler()`` if ``None``.
        clock: Seconds since the epoch; must match the pruner's clock (replays simulate it).
        widen: Admit configurations beyond the plan's width while they can still finish.

    Example:
        >>> import optuna
        >>> sampler = SeerSampler(optuna.samplers.TPESampler(seed=0))
        >>> study = optuna.create_study(sampler=sampler)
        >>> study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    """

    def __init__(
        self,
        base_sampler: BaseSampler | None = None,
        *,
        clock: Callable[[], float] | None = None,
        widen: bool = False,
    ) -> None:
        if base_sampler is not None and not isinstance(base_sampler, BaseSampler):
            raise TypeError(
                f"base_sampler={base_sampler!r} must be an optuna.samplers.BaseSampler."
            )
        if clock is not None and not callable(clock):
            raise TypeError(
                f"clock={clock!r} must be a callable returning seconds since the epoch, e.g. "
                "time.time, or None for the pruner's clock."
            )
        if not isinstance(widen, bool):
            raise TypeError(f"widen={widen!r} must be True or False.")
        self._widen = widen
        self._base = base_sampler if base_sampler is not None else TPESampler()
        self._clock = clock
        self._refused: dict[int, str] = {}
        self._lock = threading.Lock()
        self._prepared_studies: set[int] = set()
        self._executor_studies: set[int] = set()
        self._widths: dict[tuple[int, int], WidthCount] = {}
        self._reruns: dict[int, FrozenTrial] = {}  # trial id -> the parked trial it re-runs

    @property
    def base_sampler(self) -> BaseSampler:
        return self._base

    def __str__(self) -> str:
        return f"SeerSampler({self._base})"

    def _now(self, pruner: SeerPruner, study: optuna.Study) -> float:
        # Study time: the wall clock shifted onto the storage's (see integration/clock.py).
        return study_time(study, self._clock or pruner.clock)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._refuse_if_beyond_plan(trial)
        target = self._rerun_target(trial)
        if target is not None:  # a re-run: its parked trial's values, where they fit
            return {
                name: target.params[name]
                for name, distribution in search_space.items()
                if target.distributions.get(name) == distribution
            }
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._refuse_if_beyond_plan(trial)
        target = self._rerun_target(trial)
        if target is not None and target.distributions.get(param_name) == param_distribution:
            return target.params[param_name]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def _rerun_target(self, trial: FrozenTrial) -> FrozenTrial | None:
        with self._lock:
            return self._reruns.get(trial_id_of(trial))

    def _refuse_if_beyond_plan(self, trial: FrozenTrial) -> None:
        with self._lock:
            reason = self._refused.get(trial_id_of(trial))
        if reason is not None:
            raise optuna.TrialPruned(reason)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        pruner = study.pruner
        if not isinstance(pruner, SeerPruner):
            return
        if study._is_multi_objective():
            raise ValueError(
                "SeerSampler/SeerPruner rank trials by one value; this study has "
                f"directions={study.directions}. Use a single-objective study."
            )
        plan = pruner.plan
        now = self._now(pruner, study)
        wall_clock = (self._clock or pruner.clock) is time.time
        self._prepare_study(study, trial, plan, now, wall_clock)
        storage = storage_of(study)
        # One fresh read of the study's trials (this trial among them, so of any two processes
        # the later counts the earlier), then dead workers' trials failed, and this one beats
        # (integration/heartbeat.py): read again only if some were failed.
        trials = fresh_trials(storage, study_id_of(study))
        start = on_trial_start(study, trial, self._clock or pruner.clock, trials)
        if start.failed:
            trials = fresh_trials(storage, study_id_of(study))
        writes = start.first_beat  # written below, with whatever else this start writes
        rank = self._width_count(study).rank(trials, trial.number)
        reason = None
        widening = self._widen and rank > plan.n_configs and self._worth_widening(study, plan, now)
        rerun = None
        executor = study_id_of(study) in self._executor_studies  # no parking: no re-runs
        if rank > plan.n_configs and not widening:
            if not executor:
                rerun = self._rerun(study, pruner, trial, trials, wall_clock)
            if rerun is None:
                reason = (
                    f"beyond the plan's width: {rank - 1} configurations were placed before "
                    f"trial {trial.number} (failed ones not counted) and the plan starts "
                    f"{plan.n_configs}"
                )
        if rerun is not None:  # it may have waited: what the study holds now
            trials = fresh_trials(storage, study_id_of(study))
            now = self._now(pruner, study)
        if reason is None and not executor:
            reason = self._over_budget(
                study, pruner, trial, trials, now, rank, widening, rerun, reserve=not self._widen
            )
            if reason is not None and rerun is None and not widening:
                # No new configuration fits: a parked finalist's re-run may.
                rerun = self._rerun(study, pruner, trial, trials, wall_clock, closed=True)
                if rerun is not None:
                    trials = fresh_trials(storage, study_id_of(study))
                    now = self._now(pruner, study)
                    reason = self._over_budget(study, pruner, trial, trials, now, rank, rerun=rerun)
        if reason is not None:
            writes |= {TRIAL_BEYOND_PLAN: True, TRIAL_STOP_REASON: reason}
            set_trial_attrs(storage, trial_id_of(trial), system=writes)
            with self._lock:
                self._refused[trial_id_of(trial)] = reason
                self._reruns.pop(trial_id_of(trial), None)
            self._stop(study)
            return
        if (rank == plan.n_configs and not self._widen) or rerun is not None:
            # The last place (or re-run): ask for no further trial, so no objective runs
            # beyond the width, unless a parked trial may still need a re-run.
            maximize = study.direction == StudyDirection.MAXIMIZE
            if rerun is None:
                others = [t for t in trials if t.number != trial.number]
                state = door_state(plan, others, maximize, closed=True)  # this is the last
                more = state.due or state.waiting or may_park(plan, others)
            else:
                state = door_state(plan, fresh_trials(storage, study_id_of(study)), maximize)
                more = state.due or state.waiting
            if not more:
                self._stop(study)
        if rerun is not None or not (
            wall_clock
            and implicit_placement(storage, study_id_of(study)) is not None
            and keeps_true_start_times(storage)
        ):  # else placed at its datetime_start, which the storage wrote; a re-run is placed
            # when it found its configuration, not charged for the wait
            if rerun is not None:
                now = self._now(pruner, study)
                writes[TRIAL_AWAITING_RERUN] = False
            writes[TRIAL_PLACEMENT] = placement(
                [r.gpus_per_trial for r in plan.rungs], [r.resource for r in plan.rungs], now
            )
        set_trial_attrs(storage, trial_id_of(trial), system=writes)

    def _rerun(
        self,
        study: optuna.Study,
        pruner: SeerPruner,
        trial: FrozenTrial,
        trials: list[FrozenTrial],
        wall_clock: bool,
        *,
        closed: bool = False,
    ) -> FrozenTrial | None:
        """The parked trial whose configuration ``trial``, asked beyond the width, trains
        again (recorded in its system attrs), or ``None``. On the wall clock it waits while
        values may still arrive at the last rung's door (others train), up to the deadline."""
        target = claim_rerun(
            study, pruner.plan, trial, trials, lambda: self._now(pruner, study), wall_clock, closed
        )
        if target is not None:
            with self._lock:
                self._reruns[trial_id_of(trial)] = target
        return target

    def _width_count(self, study: optuna.Study) -> WidthCount:
        """This process's :class:`WidthCount` of ``study`` (two storages may hold studies with
        one id)."""
        storage = storage_of(study)
        key = (id(storage), study_id_of(study))
        with self._lock:
            count = self._widths.get(key)
            if count is None or count.storage is not storage:
                count = WidthCount(storage)
                self._widths[key] = count
            return count

    @staticmethod
    def _worth_widening(study: optuna.Study, plan: Plan, now: float) -> bool:
        """Whether a configuration started ``now`` beyond the plan's width can still train
        every rung by the deadline, at the plan's epoch times (asynchronous promotion may
        take it to the end if it is good)."""
        started = storage_of(study).get_study_system_attrs(study_id_of(study)).get(STUDY_STARTED_AT)
        if started is None:
            return True
        needed, since = 0.0, 0
        for rung in plan.rungs:
            needed += (rung.resource - since) * rung.epoch_seconds
            since = rung.resource
        return now + needed <= float(started) + plan.deadline_s

    @staticmethod
    def _stop(study: optuna.Study) -> None:
        # Outside study.optimize (ask/tell) stop() raises: the executor checks the width.
        with contextlib.suppress(RuntimeError):
            study.stop()

    @staticmethod
    def _over_budget(
        study: optuna.Study,
        pruner: SeerPruner,
        trial: FrozenTrial,
        trials: list[FrozenTrial],
        now: float,
        rank: int,
        widening: bool = False,
        rerun: FrozenTrial | None = None,
        *,
        reserve: bool = True,
    ) -> str | None:
        """Why the new ``trial`` may not start: its first rung, at the epoch time measured so
        far, does not fit what is left once the trials in play finish their rungs, and the
        re-runs of parked finalists (``rank``: its :func:`width_rank` among ``trials``). A
        re-run of ``rerun`` must fit whole, every rung, after the trials in play."""
        plan = pruner.plan
        implicit = implicit_placement(storage_of(study), study_id_of(study))
        view, _ = pruner.spend_view(study, now, implicit, trials)
        leased = any(TRIAL_LEASE in t.system_attrs for t in trials)
        starts = launch_rungs(plan, leases=leased)
        affordable = affordable_width(plan, view.scale, widen=widening, starts=starts)
        if rerun is None and rank > affordable:
            return (
                f"budget: with epochs {view.scale:.2f} times as long as planned, "
                f"${plan.budget_dollars:,.2f} pays for {affordable} configurations of the "
                f"plan's shape, and trial {trial.number} would be configuration {rank}"
            )
        mine = commitment(plan, trial, now, implicit, view.scales, step=0, since=(now, 0))
        if mine is None:
            return None
        if rerun is not None:
            whole = rerun_cost(plan, view.scale)[1]
            others = reruns_left(plan, trials, view.scale, trial.number)
            return budget_refusal(
                plan,
                dataclasses.replace(view, spent=view.spent + others),
                dataclasses.replace(mine, gpu_seconds=whole),
                f" and {{ahead}} committed to trials in play; re-running trial {rerun.number}'s "
                "configuration needs {own}",
            )
        maximize = study.direction == StudyDirection.MAXIMIZE
        plain = reserve and not leased
        reserved, kept = (
            with_reserve(plan, trials, maximize, view, trial.number) if plain else (view, 0.0)
        )
        return budget_refusal(
            plan,
            reserved,
            mine,
            f" (with ${kept * plan.price_per_gpu_second:,.2f} kept to re-run parked finalists)"
            " and {ahead} committed to trials in play; a new trial's first rung needs {own}",
        )

    def _prepare_study(
        self, study: optuna.Study, trial: FrozenTrial, plan: Plan, now: float, wall_clock: bool
    ) -> None:
        """Once per study and process: store (or check) the plan, start the deadline clock.

        The process that starts the clock on the wall clock first stores the implicit-placement
        rule, so whoever sees the clock running knows whether the study has one. A study that
        already holds trials SEER did not run is refused (with ``trial``, the one being asked).
        """
        if study_id_of(study) in self._prepared_studies:
            return
        attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
        stored = attrs.get(STUDY_PLAN)
        if stored is None:
            _refuse_foreign_trials(study, trial)
            storage_of(study).set_study_system_attr(study_id_of(study), STUDY_PLAN, plan.to_dict())
        elif not plan.matches(Plan.from_dict(stored)):
            raise ValueError(
                f"study {study.study_name!r} was started with another SEER plan "
                f"({Plan.from_dict(stored).n_configs} configurations, this process's has "
                f"{plan.n_configs}); resume it with the same Budget, Workload, reduction factor "
                "and pool (limits=ClusterLimits(max_gpus=N), or OPTUNA_SEER_WORKERS set alike on "
                "every machine), or use a new study name."
            )
        if (
            wall_clock
            and STUDY_STARTED_AT not in attrs
            and STUDY_IMPLICIT_PLACEMENT not in attrs
            and keeps_true_start_times(storage_of(study))
        ):
            storage_of(study).set_study_system_attr(
                study_id_of(study),
                STUDY_IMPLICIT_PLACEMENT,
                ImplicitPlacement.for_plan(plan).to_dict(),
            )
        start_clock(study, now)
        if STUDY_EXECUTOR_PROGRESS in attrs or attrs.get(STUDY_MODE) == SYNCHRONOUS:
            self._executor_studies.add(study_id_of(study))  # its guard admits launches
        self._prepared_studies.add(study_id_of(study))

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        with self._lock:
            self._refused.pop(trial_id_of(trial), None)
            self._reruns.pop(trial_id_of(trial), None)
        on_trial_end(study, trial)
        pruner = study.pruner
        account = None
        if isinstance(pruner, SeerPruner):
            rule = implicit_placement(storage_of(study), study_id_of(study))
            if placement_of(trial, rule) is not None and not (
                state == TrialState.PRUNED and settled_at_stop(trial, rule)
            ):
                account = settled(trial, self._now(pruner, study), rule)
        # The account settled, and the user attrs the dashboard shows, in one write.
        dashboard.on_trial_end(
            study,
            trial,
            state,
            self._clock,
            settled={} if account is None else {TRIAL_LEDGER: list(account)},
        )
        if (
            isinstance(pruner, SeerPruner)
            and not self._widen
            and trial.number >= pruner.plan.n_configs - 1
            and study_id_of(study) not in self._executor_studies
            and finished_plan(
                pruner.plan,
                fresh_trials(storage_of(study), study_id_of(study)),
                study.direction == StudyDirection.MAXIMIZE,
            )
        ):  # the plan's last trial (or re-run) ended and nothing is left: ask for no other
            self._stop(study)
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()


def _refuse_foreign_trials(study: optuna.Study, asked: FrozenTrial) -> None:
    """Refuse a study that holds finished trials SEER did not run (another sampler's or
    pruner's): the plan's width, the ranking and the ledger would count them. The trial being
    asked is told ``FAIL`` first, so it does not stay ``RUNNING``."""
    foreign = [
        t.number
        for t in storage_of(study).get_all_trials(
            study_id_of(study),
            deepcopy=False,
            states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL),
        )
        if not any(key.startswith("seer:") for key in t.system_attrs)
    ]
    if not foreign:
        return
    storage_of(study).set_trial_state_values(trial_id_of(asked), TrialState.FAIL)
    raise ValueError(
        f"study {study.study_name!r} already holds {len(foreign)} trials that SEER did not run "
        f"(numbers {foreign[0]}..{foreign[-1]}, e.g. from another sampler or pruner): the SEER "
        "plan's width, ranking and ledger need a study of their own. Optimize a new study "
        "(another study_name) with SeerSampler and SeerPruner."
    )
