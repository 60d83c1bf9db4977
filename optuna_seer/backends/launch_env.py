"""What a backend puts in a launch's environment: the ``SEER_*`` contract of a training script.

The worker side reads these variables (:func:`optuna_seer.worker.context.trial_context`); a
backend writes them from a :class:`~optuna_seer.backends.base.LaunchSpec`.

``SEER_CHECKPOINT_KEY`` carries the study's checkpoint key
(:func:`optuna_seer.worker.checkpoint_keys.study_key`: the driver's own
``SEER_CHECKPOINT_KEY``, else a per-study key file in its keyring), with which workers seal
and verify checkpoints. It is a credential: it stays out of the study's storage and the
checkpoint store, and a SkyPilot backend passes it (with the study URL) as a task *secret*.
Without a key (its keyring not writable) it is left out, and checkpoints get a plain SHA-256.
"""

from __future__ import annotations

import json

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.worker.checkpoint_keys import ENV_CHECKPOINT_KEY, study_key
from optuna_seer.worker.context import (
    ENV_CHECKPOINT_URI,
    ENV_PARAMS,
    ENV_RESUME_FROM,
    ENV_RUNG,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TARGET_EPOCHS,
    ENV_TRIAL,
)


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
    key = study_key(spec.study_name)
    if key is not None:
        env[ENV_CHECKPOINT_KEY] = key.text
    return env
