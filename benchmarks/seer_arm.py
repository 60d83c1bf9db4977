"""The SEER arm: the real :class:`~optuna_seer.execution.tuner.ElasticTuner` on the replay clock.

The tuner is the one that drives ``LocalBackend``'s DDP processes; only the backend differs.
The study uses :class:`~optuna_seer.SeerSampler` and :class:`~optuna_seer.SeerPruner` with
``clock=backend.now``, so the deadline, the ledger and the tuner's re-planning all run on
simulated time. The plan is :func:`~optuna_seer.plan_seer`'s for the scenario, with as many
slots as its widest rung; launches are billed per launch, as for the static plan.

The ``seer-curve`` arm is the same run with curve-aware promotion
(``SeerPruner(curve_prior=...)``): the prior is :func:`other_datasets_prior`, the validation
curves of the *other* data sets in the curves directory, which a user has before the study
(never the run's own data set's curves).
"""

from __future__ import annotations

from pathlib import Path
import tempfile

import optuna
from optuna.storages import InMemoryStorage

from benchmarks import curves as recorded
from benchmarks.baselines import (
    CONFIG_PARAM,
    SEER_PROMOTE_BY,
    ConfigOrderSampler,
    Outcome,
    Scenario,
    config_order,
    search_space,
)
from benchmarks.curves import CurveSet
from optuna_seer.backends.replay import ReplayBackend
from optuna_seer.execution.tuner import ElasticTuner, TuningResult
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.learning_curves import CurvePrior
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.seer import plan_seer
from optuna_seer.planning.workload import Workload

REPLAYED_TRAINING = "benchmarks.seer_arm:replayed_training"
"""What the tuner names as the training program; replays never run it."""


def replayed_training() -> None:
    """Stands for the training program in a replay: the ReplayBackend reports its epochs."""
    raise RuntimeError("a replayed trial is simulated by ReplayBackend, never run.")


def run_replayed(
    study: optuna.Study, plan: Plan, backend: ReplayBackend, workload: Workload, n_configs: int
) -> TuningResult:
    """The real ElasticTuner on a ReplayBackend, checkpoints in a scratch directory."""
    with tempfile.TemporaryDirectory(prefix="seer-replay-") as checkpoints:
        return ElasticTuner(
            study,
            plan,
            backend=backend,
            train=REPLAYED_TRAINING,
            checkpoints=checkpoints,
            search_space=lambda trial: search_space(trial, n_configs),
            workload=workload,
            storage_url="replay:in-memory",
            poll_seconds=5.0,
            progress=False,
        ).run()


def other_datasets_prior(
    dataset: str,
    directory: Path = recorded.CURVES_DIR,
    optimism: float = 0.0,
    monitor: str = "val_acc",
) -> CurvePrior:
    """A :class:`CurvePrior` of the validation curves of every data set recorded in
    ``directory`` but ``dataset`` (as ``benchmarks/rung_rules.py``'s "other data sets").

    Raises:
        ValueError: ``directory`` holds no other data set.
    """
    others = [
        recorded.load(d, directory, monitor=monitor)
        for d in recorded.available(directory)
        if d != dataset
    ]
    if not others:
        raise ValueError(
            f"no data set but {dataset!r} in {directory}: the curve prior needs another one."
        )
    return CurvePrior(
        [recorded.validation_values(c) for o in others for c in o.curves],
        optimism=optimism,
    )


def replay_seer(
    scenario: Scenario,
    curves: CurveSet,
    seed: int,
    curve_prior: CurvePrior | None = None,
    promote_by: str = SEER_PROMOTE_BY,
) -> tuple[optuna.Study, TuningResult, ReplayBackend]:
    """One seeded SEER run, ``ElasticTuner(...).run()`` on a ``ReplayBackend``: the study,
    the tuner's result and the backend (which knows the replayed test accuracies).
    ``curve_prior``: curve-aware promotion (``SeerPruner(curve_prior=...)``; it cannot be
    combined with ``promote_by="tie_break"``, which the pruner refuses); ``promote_by``:
    ``SeerPruner(promote_by=...)``."""
    n_configs = len(curves.curves)
    order = config_order(n_configs, seed)
    workload = scenario.workload(curves.epochs)
    plan = plan_seer(
        scenario.budget,
        workload,
        scenario.reduction_factor,
        max_configs=n_configs,
        epoch_cv=scenario.straggler_cv,  # deadline and budget held at p95 of the stragglers
        billing="per-launch",  # as the replay bills both arms
    )
    storage = InMemoryStorage()
    backend = scenario.backend(curves, seed, max(r.gpus for r in plan.rungs), storage=storage)
    study = optuna.create_study(
        storage=storage,
        study_name=f"seer-{seed}",
        direction="maximize",
        sampler=SeerSampler(ConfigOrderSampler(order), clock=backend.now),
        pruner=SeerPruner(
            plan=plan, clock=backend.now, curve_prior=curve_prior, promote_by=promote_by
        ),
    )
    return study, run_replayed(study, plan, backend, workload, n_configs), backend


def run_seer(
    scenario: Scenario,
    curves: CurveSet,
    seed: int,
    *,
    curve_prior: CurvePrior | None = None,
    method: str = "seer",
    promote_by: str = SEER_PROMOTE_BY,
) -> Outcome:
    """One seeded SEER run (:func:`replay_seer`), scored as ``method``."""
    study, result, backend = replay_seer(scenario, curves, seed, curve_prior, promote_by)
    best = result.best_trial
    seconds = result.wall_seconds
    dollars = backend.gpu_seconds * scenario.price_per_gpu_second
    trials = study.get_trials(deepcopy=False)
    return Outcome(
        method=method,
        seed=seed,
        config_id=None if best is None else int(best.params[CONFIG_PARAM]),
        val_acc=None if best is None else best.value,
        test_acc=None if best is None else backend.test_accuracy(study.study_name, best.number),
        epochs=0 if best is None else backend.epochs_trained(study.study_name, best.number),
        seconds=seconds,
        dollars=dollars,
        configs_tried=len({t.params[CONFIG_PARAM] for t in trials if CONFIG_PARAM in t.params}),
        within_deadline=seconds <= scenario.deadline_s + 1e-6,
        within_budget=dollars <= scenario.dollars + 1e-6,
    )
