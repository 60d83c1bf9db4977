"""The methods SEER is compared with, each on the same replayed curves and simulated clock.

Every method runs on a :class:`~optuna_seer.backends.replay.ReplayBackend` over the same
recorded curves, with the same straggler draws, and sees the configurations in the same order:
trial number ``i`` trains configuration ``config_order(n, seed)[i % n]``.

* **Optuna pruners on a fixed pool** (:func:`run_optuna_pruner`): what Optuna users do today.
  The budget buys ``P = dollars / (price × deadline)`` one-GPU workers for the whole deadline.
  Each worker asks the study for a trial, trains it epoch by epoch, reports, and asks
  ``trial.should_prune()`` after every epoch; a pruned or finished trial frees the worker for
  the next one. At the deadline every running trial is stopped. The pool is billed for its
  ``P`` GPUs from start to end.
* **Rung-synchronous plans** (:func:`run_plan`): every trial of a rung is launched with the
  rung's GPUs per trial, the top ``n_{r+1}`` are promoted by
  :meth:`~optuna_seer.SeerPruner.decide_rung`, and survivors resume from their checkpoints.
  Used for the *static plan* (SEER's plan from :func:`~optuna_seer.plan_seer`, executed as
  computed up front, never re-planned) and for *naive elastic SHA*
  (:func:`naive_elastic_plan`: a pool of ``P`` GPUs split evenly among a rung's survivors,
  planned as if scaling were linear).

The selected configuration is the trial with the best validation accuracy among those that
completed (all ``max_epochs``); if none did, the best last-reported validation accuracy of any
trial (ties: more epochs, then the earlier trial), as ``study.best_trial`` would pick; with
``tie_break=True`` (an ablation: what if Optuna users broke ties as SEER does) ties in
validation accuracy go first to the lower validation loss the replayed worker reported. The
rung-synchronous plans rank their finalists by SEER's selection rule instead (the mean over
the last rung first: :func:`~optuna_seer.integration.ranking.best_finalist`, as the elastic executor
does). Its score is the recorded *test* accuracy of that trial's model at its last trained
epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, InMemoryStorage
from optuna.trial import FrozenTrial, TrialState

from benchmarks.curves import CurveSet
from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.replay import ReplayBackend
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.ranking import best_finalist
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.integration.tie_break import tie_break_key
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan, Rung
from optuna_seer.planning.seer import rung_resources
from optuna_seer.planning.workload import Workload

CONFIG_PARAM = "config_id"

SEER_PROMOTE_BY = "value"
"""The SEER arms' rung rule (``SeerPruner(promote_by=...)``), the library's default: rung
decisions rank by the validation accuracy. Their replayed workers also report the validation
loss (as ``SeerCallback(tie_break="val_loss")`` does); ``run.py --seer-promote-by tie_break``
ranks rungs by it instead (``docs/benchmarks.md``, "Promotion by the validation loss")."""


@dataclass(frozen=True)
class Scenario:
    """A deadline, a budget and a scaling preset, on a simulated GPU.

    Attributes:
        name: Short label for tables.
        deadline_s: The job's deadline in simulated seconds.
        dollars: The job's budget.
        scaling: Speedup preset of one trial on ``k`` GPUs (see :class:`ScalingCurve`).
        price_per_gpu_hour: Dollars per GPU-hour.
        epoch_seconds: Simulated seconds of one epoch on one GPU (``t1``).
        startup_seconds: Simulated seconds to (re)start a trial: processes, checkpoint load.
        straggler_cv: Coefficient of variation of each epoch's time.
        reduction_factor: ``η`` of every successive-halving method.
    """

    name: str
    deadline_s: float
    dollars: float
    scaling: str
    price_per_gpu_hour: float = 3.0
    epoch_seconds: float = 60.0
    startup_seconds: float = 30.0
    straggler_cv: float = 0.1
    reduction_factor: int = 3

    def __post_init__(self) -> None:
        if self.pool_gpus < 1:
            raise ValueError(
                f"scenario {self.name!r}: ${self.dollars} does not buy one GPU for the whole "
                f"deadline of {self.deadline_s} s at ${self.price_per_gpu_hour}/GPU-hour."
            )

    @property
    def budget(self) -> Budget:
        return Budget(self.deadline_s, self.dollars, self.price_per_gpu_hour)

    @property
    def price_per_gpu_second(self) -> float:
        return self.price_per_gpu_hour / 3600.0

    @property
    def pool_gpus(self) -> int:
        """GPUs the budget buys for the whole deadline: the fixed-cluster baselines' pool."""
        return math.floor(self.dollars / (self.price_per_gpu_second * self.deadline_s) + 1e-9)

    def workload(self, max_epochs: int) -> Workload:
        return Workload(
            epoch_seconds=self.epoch_seconds,
            scaling=self.scaling,
            max_epochs=max_epochs,
            startup_seconds=self.startup_seconds,
        )

    def backend(self, curves: CurveSet, seed: int, slots: int, **kwargs: Any) -> ReplayBackend:
        """A fresh replay of ``curves`` under this scenario's timing."""
        return ReplayBackend(
            curves.curves,
            self.scaling,
            self.epoch_seconds,
            straggler_cv=self.straggler_cv,
            seed=seed,
            slots=slots,
            startup_seconds=self.startup_seconds,
            **kwargs,
        )


@dataclass(frozen=True)
class Outcome:
    """What one method achieved in one seeded run."""

    method: str
    seed: int
    config_id: int | None
    val_acc: float | None
    test_acc: float | None
    epochs: int
    seconds: float
    dollars: float
    configs_tried: int
    within_deadline: bool
    within_budget: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_order(n_configs: int, seed: int) -> list[int]:
    """The order every method sees the configurations in, for ``seed``."""
    return [int(i) for i in np.random.default_rng(seed).permutation(n_configs)]


def _outcome(
    method: str,
    seed: int,
    scenario: Scenario,
    study: optuna.Study,
    backend: ReplayBackend,
    seconds: float,
    dollars: float,
    selected: FrozenTrial | None = None,
    tie_break: bool = False,
) -> Outcome:
    """Score ``selected`` (default: the best validation accuracy, as described above)."""
    trials = [t for t in study.get_trials(deepcopy=False) if CONFIG_PARAM in t.params]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best: tuple[float, int, float, int] | None = None  # (validation, epochs, -loss, -number)
    for t in [selected] if selected is not None else complete or trials:
        value = backend.validation_accuracy(study.study_name, t.number)
        epochs = backend.epochs_trained(study.study_name, t.number)
        loss = tie_break_key(t, max(t.intermediate_values, default=0)) if tie_break else 0.0
        if value is not None and (best is None or (value, epochs, -loss, -t.number) > best):
            best = (value, epochs, -loss, -t.number)
    if best is None:
        config_id, val, test, epochs = None, None, None, 0
    else:
        number = -best[3]
        config_id = int(study.trials[number].params[CONFIG_PARAM])
        val, epochs = best[0], best[1]
        test = backend.test_accuracy(study.study_name, number)
    return Outcome(
        method=method,
        seed=seed,
        config_id=config_id,
        val_acc=val,
        test_acc=test,
        epochs=epochs,
        seconds=seconds,
        dollars=dollars,
        configs_tried=len({t.params[CONFIG_PARAM] for t in trials}),
        within_deadline=seconds <= scenario.deadline_s + 1e-6,
        within_budget=dollars <= scenario.dollars + 1e-6,
    )


class ConfigOrderSampler(BaseSampler):
    """Gives trial number ``i`` configuration ``order[i % len(order)]``: the same for every method.

    It samples only :data:`CONFIG_PARAM` (``trial.suggest_int("config_id", 0, n - 1)``).
    """

    def __init__(self, order: Sequence[int]) -> None:
        self._order = list(order)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name != CONFIG_PARAM:
            raise ValueError(
                f"ConfigOrderSampler samples only {CONFIG_PARAM!r}, not {param_name!r}."
            )
        return self._order[trial.number % len(self._order)]


def search_space(trial: optuna.Trial, n_configs: int) -> int:
    """The benchmark's search space: which recorded configuration the trial trains."""
    return trial.suggest_int(CONFIG_PARAM, 0, n_configs - 1)


def _spec(
    study: optuna.Study, trial: optuna.Trial, rung: int, epochs: int, workers: int
) -> LaunchSpec:
    return LaunchSpec(
        study_name=study.study_name,
        storage="in-memory",
        trial_number=trial.number,
        params=trial.params,
        rung=rung,
        target_epochs=epochs,
        workers=workers,
        checkpoint_uri=f"replay://{study.study_name}/{trial.number}",
        resume_from=None if rung == 0 else f"replay://{study.study_name}/{trial.number}/{rung}",
    )


PrunerFactory = Callable[[int], BasePruner]
"""Builds a pruner for a given ``max_epochs``."""

OPTUNA_PRUNERS: dict[str, PrunerFactory] = {
    "optuna-sha": lambda e: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3
    ),
    "optuna-hyperband": lambda e: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=e, reduction_factor=3
    ),
    "optuna-median": lambda e: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
    "no-pruning": lambda e: optuna.pruners.NopPruner(),
}


def run_optuna_pruner(
    method: str, scenario: Scenario, curves: CurveSet, seed: int, *, tie_break: bool = False
) -> Outcome:
    """An Optuna study with ``OPTUNA_PRUNERS[method]`` on a fixed pool of one-GPU workers
    (``tie_break``: select with ties in validation accuracy broken by the validation loss)."""

    def build(backend: ReplayBackend, storage: BaseStorage, order: Sequence[int]) -> optuna.Study:
        return optuna.create_study(
            storage=storage,
            study_name=f"{method}-{seed}",
            direction="maximize",
            sampler=ConfigOrderSampler(order),
            pruner=OPTUNA_PRUNERS[method](curves.epochs),
        )

    return _run_pool(method, scenario, curves, seed, build, tie_break=tie_break)


StudyBuilder = Callable[[ReplayBackend, BaseStorage, Sequence[int]], optuna.Study]


def _run_pool(
    method: str,
    scenario: Scenario,
    curves: CurveSet,
    seed: int,
    build: StudyBuilder,
    max_epochs: int | None = None,
    tie_break: bool = False,
) -> Outcome:
    """Drive the study ``build`` makes on ``P`` one-GPU workers, each trial to ``max_epochs``
    (default: all recorded epochs), until the deadline."""
    max_epochs = max_epochs or curves.epochs
    pool = scenario.pool_gpus
    order = config_order(len(curves.curves), seed)
    storage = InMemoryStorage()
    running: dict[str, optuna.Trial] = {}
    pruned: set[str] = set()
    studies: list[optuna.Study] = []

    def worker_checks_pruning(handle: str, epoch: int, _value: float) -> None:
        # What ``trial.should_prune()`` does in the worker that reported the value; the
        # driver's Trial object caches its own reports, so ask the pruner with the stored trial.
        study = studies[0]
        if epoch < max_epochs and study.pruner.prune(
            study, storage.get_trial(running[handle]._trial_id)
        ):
            pruned.add(handle)
            backend.stop(handle)

    backend = scenario.backend(curves, seed, pool, storage=storage, observer=worker_checks_pruning)
    study = build(backend, storage, order)
    studies.append(study)
    started = backend.now()
    deadline = started + scenario.deadline_s

    def launch() -> bool:
        """Start the next trial; ``False`` when the sampler refuses more (a plan's width)."""
        trial = study.ask()
        try:
            search_space(trial, len(order))
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return False
        running[backend.start(_spec(study, trial, 0, max_epochs, 1))] = trial
        return True

    more = True
    for _ in range(pool):
        more = more and launch()
    while running:
        done = backend.wait(list(running), deadline - backend.now())
        if not done:
            for handle, trial in running.items():
                backend.stop(handle)
                study.tell(trial, state=TrialState.FAIL)
            break
        for handle in done:
            trial = running.pop(handle)
            if handle in pruned:
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, backend.validation_accuracy(study.study_name, trial.number))
            if more and backend.now() < deadline:
                more = launch()
    seconds = backend.now() - started
    dollars = pool * seconds * scenario.price_per_gpu_second
    return _outcome(method, seed, scenario, study, backend, seconds, dollars, tie_break=tie_break)


def run_plan(
    method: str,
    plan: Plan,
    scenario: Scenario,
    curves: CurveSet,
    seed: int,
    *,
    billed_gpus: int | None = None,
    promote_by: str = "value",
) -> Outcome:
    """Execute ``plan`` rung by rung, as computed, with no re-planning.

    ``billed_gpus``: bill a fixed pool of that many GPUs for the whole run; by default each
    launch is billed for its own GPUs (elastic provisioning). ``promote_by``: the rung
    decisions' rule (``SeerPruner(promote_by=...)``).
    """
    order = config_order(len(curves.curves), seed)
    storage = InMemoryStorage()
    slots = max(r.gpus for r in plan.rungs)
    backend = scenario.backend(curves, seed, slots, storage=storage)
    study = optuna.create_study(
        storage=storage,
        study_name=f"{method}-{seed}",
        direction="maximize",
        sampler=SeerSampler(ConfigOrderSampler(order), clock=backend.now),
        pruner=SeerPruner(plan=plan, clock=backend.now, promote_by=promote_by),
    )
    pruner = study.pruner
    assert isinstance(pruner, SeerPruner)
    started = backend.now()
    alive = [study.ask() for _ in range(plan.n_configs)]
    for trial in alive:
        search_space(trial, len(order))
    for rung in plan.rungs:
        pending = {
            backend.start(_spec(study, t, rung.index, rung.resource, rung.gpus_per_trial))
            for t in alive
        }
        while pending:
            pending -= set(backend.wait(list(pending), math.inf))
        if rung.index < len(plan.rungs) - 1:
            decision = pruner.decide_rung(study, rung.index)
            by_number = {t.number: t for t in alive}
            for number in decision.eliminated:
                study.tell(by_number[number], state=TrialState.PRUNED)
            alive = [by_number[n] for n in decision.promoted]
    for trial in alive:
        study.tell(trial, backend.validation_accuracy(study.study_name, trial.number))
    seconds = backend.now() - started
    if billed_gpus is None:
        dollars = backend.gpu_seconds * scenario.price_per_gpu_second
    else:
        dollars = billed_gpus * seconds * scenario.price_per_gpu_second
    # The finalists are ranked by SEER's selection rule, as the elastic executor ranks its own.
    finalists = [study.trials[t.number] for t in alive]
    since = plan.epochs_before(len(plan.rungs) - 1)
    selected = best_finalist(finalists, since, plan.max_epochs, study.direction)
    return _outcome(method, seed, scenario, study, backend, seconds, dollars, selected)


def naive_elastic_plan(scenario: Scenario, max_epochs: int, max_configs: int) -> Plan:
    """Successive halving on the budget's pool of GPUs, split evenly among each rung's trials.

    Rungs keep ``n_r = ceil(n_0 / η^r)`` trials to geometric epochs ending at ``max_epochs``.
    A rung of ``n`` trials gives each ``max(1, P // n)`` of the pool's ``P`` GPUs (in waves
    when ``n > P``) whatever the scaling curve says: freed GPUs go to the survivors, the
    naive way to make SHA elastic. The width ``n_0`` and the number of rungs are the widest
    that finish by the deadline *if scaling were linear*.
    """
    pool = scenario.pool_gpus
    believed = Workload(
        epoch_seconds=scenario.epoch_seconds,
        scaling="linear",
        max_epochs=max_epochs,
        gpus_per_node=pool,
        startup_seconds=scenario.startup_seconds,
    )
    limits = ClusterLimits(max_gpus=pool)
    eta = scenario.reduction_factor
    best: tuple[tuple[int, int], tuple[Rung, ...]] | None = None
    n_rungs = 1
    while (resources := rung_resources(max_epochs, eta, n_rungs, 1)) is not None:
        for n_configs in range(eta ** (n_rungs - 1), max_configs + 1):
            n_trials = [math.ceil(n_configs / eta**r) for r in range(n_rungs)]
            shapes = [RungShape(n, e, max(1, pool // n)) for n, e in zip(n_trials, resources)]
            rungs = schedule(shapes, believed, scenario.price_per_gpu_second, limits)
            if rungs[-1].end_s > scenario.deadline_s:
                break
            if best is None or (n_configs, n_trials[-1]) > best[0]:
                best = ((n_configs, n_trials[-1]), rungs)
        n_rungs += 1
    if best is None:
        raise ValueError(
            f"scenario {scenario.name!r}: not even one configuration can be trained for "
            f"{max_epochs} epochs by the deadline on {pool} GPUs."
        )
    return Plan(
        rungs=best[1],
        reduction_factor=eta,
        deadline_s=scenario.deadline_s,
        budget_dollars=scenario.dollars,
        price_per_gpu_second=scenario.price_per_gpu_second,
        min_marginal_speedup=1.0,
    )
