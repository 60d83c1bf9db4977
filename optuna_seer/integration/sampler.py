"""SeerSampler: any Optuna sampler, plus placement of each trial in the SEER plan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import contextlib
import threading
import time
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from optuna_seer._optuna import storage_of, study_id_of, trial_id_of
from optuna_seer.integration.keys import (
    STUDY_IMPLICIT_PLACEMENT,
    STUDY_PLAN,
    STUDY_STARTED_AT,
    TRIAL_BEYOND_PLAN,
    TRIAL_PLACEMENT,
    TRIAL_STOP_REASON,
)
from optuna_seer.integration.ledger import settle_trial, settled_at_stop, start_clock
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.trial_gpus import (
    ImplicitPlacement,
    implicit_placement,
    keeps_true_start_times,
    placement,
    placement_of,
)
from optuna_seer.planning.plan import Plan


class SeerSampler(BaseSampler):
    """Wrap a sampler so every new trial is placed in the plan of the study's ``SeerPruner``.

    Parameter values come from ``base_sampler`` unchanged (TPE by default). In
    ``before_trial`` the sampler places the trial: the GPUs the plan gives it in each rung
    (read them with :func:`optuna_seer.gpus_for`) and the start of its cost account; it also
    stores the plan in the study, so every process and a restarted driver use the same one,
    and starts the study's deadline clock. On the wall clock the placement costs no storage
    write: the study holds the plan's GPUs once and a trial is placed at its
    ``datetime_start`` (see :mod:`optuna_seer.integration.trial_gpus`); on a simulated clock it is
    written to the trial's system attrs. Trials past the plan's width (``plan.n_configs``
    trials, counted by trial number across all processes) are refused: the study is asked to
    stop, and the trial is pruned at its first ``suggest_*`` before any training runs.

    Why the sampler reads ``study.pruner`` directly: Optuna hands a sampler a per-bracket
    filtered study only for ``HyperbandPruner`` subclasses, and SEER has a single bracket
    whose rungs change GPUs, not brackets; reading the pruner (as OptunaHub's DEHB pair does)
    keeps one plan, one source of truth, with no Hyperband machinery to inherit. Without a
    ``SeerPruner`` the sampler is a transparent wrapper, so it can stand in anywhere.

    Args:
        base_sampler: The sampler that proposes parameter values; ``TPESampler()`` if ``None``.
        clock: Seconds since the epoch; must match the pruner's clock (replays simulate it).

    Example:
        >>> import optuna
        >>> sampler = SeerSampler(optuna.samplers.TPESampler(seed=0))
        >>> study = optuna.create_study(sampler=sampler)
        >>> study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=3)
    """

    def __init__(
        self, base_sampler: BaseSampler | None = None, *, clock: Callable[[], float] | None = None
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
        self._base = base_sampler if base_sampler is not None else TPESampler()
        self._clock = clock
        self._refused: dict[int, str] = {}
        self._lock = threading.Lock()
        self._prepared_studies: set[int] = set()

    @property
    def base_sampler(self) -> BaseSampler:
        return self._base

    def __str__(self) -> str:
        return f"SeerSampler({self._base})"

    def _now(self, pruner: SeerPruner) -> float:
        return (self._clock or pruner.clock)()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._refuse_if_beyond_plan(trial)
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        self._refuse_if_beyond_plan(trial)
        return self._base.sample_independent(study, trial, param_name, param_distribution)

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
        now = self._now(pruner)
        wall_clock = (self._clock or pruner.clock) is time.time
        self._prepare_study(study, plan, now, wall_clock)
        storage = storage_of(study)
        if trial.number >= plan.n_configs:
            reason = (
                f"beyond the plan's width: trial {trial.number} but the plan starts "
                f"{plan.n_configs} configurations"
            )
            storage.set_trial_system_attr(trial_id_of(trial), TRIAL_BEYOND_PLAN, True)
            storage.set_trial_system_attr(trial_id_of(trial), TRIAL_STOP_REASON, reason)
            with self._lock:
                self._refused[trial_id_of(trial)] = reason
            # Outside study.optimize (ask/tell) stop() raises: the executor checks the width.
            with contextlib.suppress(RuntimeError):
                study.stop()
            return
        if wall_clock:
            rule = implicit_placement(storage, study_id_of(study))
            if rule is not None and keeps_true_start_times(storage):
                return  # placed at its datetime_start, which the storage wrote
        storage.set_trial_system_attr(
            trial_id_of(trial),
            TRIAL_PLACEMENT,
            placement(
                [r.gpus_per_trial for r in plan.rungs], [r.resource for r in plan.rungs], now
            ),
        )

    def _prepare_study(self, study: optuna.Study, plan: Plan, now: float, wall_clock: bool) -> None:
        """Once per study and process: store (or check) the plan, start the deadline clock.

        The process that starts the clock on the wall clock first stores the implicit-placement
        rule, so whoever sees the clock running knows whether the study has one.
        """
        if study_id_of(study) in self._prepared_studies:
            return
        attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
        stored = attrs.get(STUDY_PLAN)
        if stored is None:
            storage_of(study).set_study_system_attr(study_id_of(study), STUDY_PLAN, plan.to_dict())
        elif Plan.from_dict(stored) != plan:
            raise ValueError(
                f"study {study.study_name!r} was started with another SEER plan "
                f"({Plan.from_dict(stored).n_configs} configurations); resume it with the same "
                "Budget, Workload and reduction factor, or use a new study name."
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
        pruner = study.pruner
        if isinstance(pruner, SeerPruner):
            rule = implicit_placement(storage_of(study), study_id_of(study))
            if placement_of(trial, rule) is not None and not (
                state == TrialState.PRUNED and settled_at_stop(trial, rule)
            ):
                settle_trial(storage_of(study), trial, self._now(pruner), rule)
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()
