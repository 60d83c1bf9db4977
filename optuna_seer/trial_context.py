"""The contract between the executor and a training script: which trial, how far, where to save.

A backend starts the user's script with these environment variables (the launchers'
templates set the same ones on cloud nodes); :func:`trial_context` reads them back.

==========================  ===================================================
``SEER_STUDY``              study name
``SEER_STORAGE``            storage URL reachable from the worker
``SEER_TRIAL``              Optuna trial number
``SEER_RUNG``               rung index in the plan
``SEER_TARGET_EPOCHS``      cumulative epochs to reach before exiting
``SEER_CHECKPOINT_URI``     the trial's checkpoint directory or ``s3://`` prefix
``SEER_RESUME_FROM``        checkpoint to resume from (absent: start fresh)
``SEER_PARAMS``             the trial's hyperparameters, as JSON
==========================  ===================================================

The world size and rank come from ``torch.distributed``'s usual variables (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``), set by ``torchrun`` or Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import json
import os
from typing import Any

from optuna_seer.backends.base import LaunchSpec

ENV_STUDY = "SEER_STUDY"
ENV_STORAGE = "SEER_STORAGE"
ENV_TRIAL = "SEER_TRIAL"
ENV_RUNG = "SEER_RUNG"
ENV_TARGET_EPOCHS = "SEER_TARGET_EPOCHS"
ENV_CHECKPOINT_URI = "SEER_CHECKPOINT_URI"
ENV_RESUME_FROM = "SEER_RESUME_FROM"
ENV_PARAMS = "SEER_PARAMS"


@dataclass(frozen=True)
class TrialContext:
    """What one launch of a training script must do."""

    study_name: str
    storage: str
    trial_number: int
    rung: int
    target_epochs: int
    checkpoint_uri: str
    resume_checkpoint: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    world_size: int = 1
    rank: int = 0


def launch_env(spec: LaunchSpec) -> dict[str, str]:
    """The environment variables that carry ``spec`` to a training script."""
    env = {
        ENV_STUDY: spec.study_name,
        ENV_STORAGE: spec.storage,
        ENV_TRIAL: str(spec.trial_number),
        ENV_RUNG: str(spec.rung),
        ENV_TARGET_EPOCHS: str(spec.target_epochs),
        ENV_CHECKPOINT_URI: spec.checkpoint_uri,
        ENV_PARAMS: json.dumps(dict(spec.params), sort_keys=True),
    }
    if spec.resume_from is not None:
        env[ENV_RESUME_FROM] = spec.resume_from
    return env


def trial_context(environ: Mapping[str, str] | None = None) -> TrialContext:
    """Read the launch contract from the environment.

    Raises:
        RuntimeError: A variable is missing or malformed; the message names it.
    """
    env = os.environ if environ is None else environ

    def need(name: str) -> str:
        value = env.get(name)
        if value is None or value == "":
            raise RuntimeError(
                f"{name} is not set: this script must be started by an optuna_seer backend "
                "(ElasticTuner) or a launcher template, which set SEER_* variables."
            )
        return value

    def whole(name: str, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise RuntimeError(f"{name}={value!r} is not a whole number.") from None

    try:
        params = json.loads(env.get(ENV_PARAMS, "{}"))
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{ENV_PARAMS} is not JSON: {exc}") from None
    return TrialContext(
        study_name=need(ENV_STUDY),
        storage=need(ENV_STORAGE),
        trial_number=whole(ENV_TRIAL, need(ENV_TRIAL)),
        rung=whole(ENV_RUNG, need(ENV_RUNG)),
        target_epochs=whole(ENV_TARGET_EPOCHS, need(ENV_TARGET_EPOCHS)),
        checkpoint_uri=need(ENV_CHECKPOINT_URI),
        resume_checkpoint=env.get(ENV_RESUME_FROM) or None,
        params=params,
        world_size=whole("WORLD_SIZE", env.get("WORLD_SIZE", "1")),
        rank=whole("RANK", env.get("RANK", "0")),
    )
