"""Checks of :class:`~optuna_seer.execution.tuner.ElasticTuner`'s arguments, each refused by
name with what would be valid, before anything is launched or written."""

from __future__ import annotations

import math
from pathlib import Path

import optuna

from optuna_seer.backends.base import Backend
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload
from optuna_seer.worker.checkpoints import open_store


def check_study(study: object, plan: Plan | None, backend: object) -> SeerPruner:
    """The study's :class:`SeerPruner`, once ``study``, ``plan`` and ``backend`` fit together."""
    if not isinstance(study, optuna.Study):
        raise TypeError(f"study={study!r} must be an optuna.Study.")
    pruner = study.pruner
    if not isinstance(pruner, SeerPruner) or not isinstance(study.sampler, SeerSampler):
        raise ValueError(
            "ElasticTuner needs optuna.create_study(sampler=SeerSampler(...), "
            f"pruner=SeerPruner(...)); got sampler={study.sampler!r}, pruner={pruner!r}."
        )
    if plan is not None and plan != pruner.plan:
        raise ValueError(
            "plan= differs from study.pruner.plan: the pruner decides rungs by its plan, so "
            "pass plan=pruner.plan (or leave it out)."
        )
    if not isinstance(backend, Backend):
        raise TypeError(f"backend={backend!r} must be an optuna_seer Backend.")
    widest = max(r.gpus_per_trial for r in pruner.plan.rungs)
    if widest > backend.slots:
        raise ValueError(
            f"the plan gives a trial {widest} workers but the backend has {backend.slots} "
            "slots; plan with ClusterLimits(max_gpus=slots)."
        )
    return pruner


def check_settings(
    checkpoints: object,
    workload: object,
    poll_seconds: float,
    max_launch_retries: object,
    resume: object,
) -> str:
    """The checkpoint root (no trailing ``/``), once the settings are valid."""
    if not isinstance(checkpoints, (str, Path)) or not str(checkpoints):
        raise ValueError(f"checkpoints={checkpoints!r} must be a directory or s3:// prefix.")
    root = str(checkpoints).rstrip("/")
    open_store(root)  # validates the URI early
    if workload is not None and not isinstance(workload, Workload):
        raise TypeError(f"workload={workload!r} must be an optuna_seer.Workload.")
    if not (poll_seconds > 0 and math.isfinite(poll_seconds)):
        raise ValueError(f"poll_seconds={poll_seconds!r} must be positive.")
    if (
        isinstance(max_launch_retries, bool)
        or not isinstance(max_launch_retries, int)
        or max_launch_retries < 0
    ):
        raise ValueError(
            f"max_launch_retries={max_launch_retries!r} must be a whole number >= 0 (0: a "
            "failed launch fails its trial)."
        )
    if not (isinstance(resume, bool) or resume == "auto"):
        raise ValueError(
            f"resume={resume!r} must be 'auto' (continue a started study, start a new "
            "one), True (must continue) or False (must be new)."
        )
    return root
