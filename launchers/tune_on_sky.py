"""Tune the digits example on SkyPilot clusters: a complete tune script for ``sky launch``.

Run it from a checkout of optuna-seer (its ``examples/`` hold the training code), on your
laptop or as the driver of ``launchers/driver.yaml`` / ``launchers/driver-job.yaml``::

    SEER_CHECKPOINTS=s3://my-seer-bucket/seer SEER_ADVERTISE_HOST=<public IP> \\
        python launchers/tune_on_sky.py

Every setting but ``SEER_CHECKPOINTS`` has a default; these variables change it (the driver
templates pass them):

* ``SEER_STORAGE_URL``: the study (default ``sqlite:///study.db``; served to the nodes by the
  backend's storage proxy). As a managed job (``sky jobs launch``) it must be an RDB URL: a
  restarted driver continues the study stored there.
* ``SEER_CHECKPOINTS``: ``s3://bucket/prefix`` (or ``gs://…``) for the trials' checkpoints
  (required).
* ``SEER_STUDY`` (``digits-on-sky``), ``SEER_DEADLINE`` (``12h``), ``SEER_BUDGET`` (dollars,
  ``400``), ``SEER_ACCELERATORS`` (``A100:8``), ``SEER_CLOUDS`` (``aws,gcp``), ``SEER_SPOT``
  (``1``), ``SEER_MAX_GPUS`` (``32``), ``SEER_TRAIN`` (``examples/lightning_digits.py:train``),
  ``SEER_PROXY_PORT`` (``13000``).

It prints the run's report with both the ledger's dollars and SkyPilot's bill.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
import os
from pathlib import Path
from typing import Any, TypeVar

import optuna

from optuna_seer.backends.skypilot.backend import SkyPilotBackend
from optuna_seer.execution.report import format_report
from optuna_seer.execution.results import TuningResult
from optuna_seer.execution.tuner import ElasticTuner
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.workload import Workload

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Settings:
    """What one run tunes, where, and within what deadline and budget."""

    checkpoints: str
    storage: str = "sqlite:///study.db"
    study: str = "digits-on-sky"
    deadline: str = "12h"
    budget_dollars: float = 400.0
    accelerators: str = "A100:8"
    clouds: tuple[str, ...] = ("aws", "gcp")
    use_spot: bool = True
    max_gpus: int = 32
    train: str = "examples/lightning_digits.py:train"
    workdir: str = "."
    proxy_port: int = 13000
    epoch_seconds: float = 600.0
    scaling: str = "amdahl:0.95"
    max_epochs: int = 40
    price_per_gpu_hour: float = 3.0
    max_configs: int = 10_000
    reduction_factor: int = 3
    managed_job: bool = False
    backend_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``SEER_*`` variables (see the module docstring)."""
        env = os.environ if env is None else env
        if not env.get("SEER_CHECKPOINTS"):
            raise SystemExit(
                "set SEER_CHECKPOINTS=s3://bucket/prefix (or gs://…): every trial's "
                "checkpoints go there."
            )
        defaults = cls(checkpoints=env["SEER_CHECKPOINTS"])
        return replace(
            defaults,
            storage=env.get("SEER_STORAGE_URL", defaults.storage),
            study=env.get("SEER_STUDY", defaults.study),
            deadline=env.get("SEER_DEADLINE", defaults.deadline),
            budget_dollars=_number(env, "SEER_BUDGET", defaults.budget_dollars, float),
            accelerators=env.get("SEER_ACCELERATORS", defaults.accelerators),
            clouds=tuple(c for c in env.get("SEER_CLOUDS", "aws,gcp").split(",") if c),
            use_spot=env.get("SEER_SPOT", "1") not in ("0", "false", "no"),
            max_gpus=_number(env, "SEER_MAX_GPUS", defaults.max_gpus, int),
            train=env.get("SEER_TRAIN", defaults.train),
            proxy_port=_number(env, "SEER_PROXY_PORT", defaults.proxy_port, int),
            # driver-job.yaml sets SEER_MANAGED_JOB; SkyPilot's task id of a managed job
            # (``sky jobs launch``) says "managed-" too.
            managed_job=env.get("SEER_MANAGED_JOB", "") not in ("", "0")
            or "managed-" in env.get("SKYPILOT_TASK_ID", ""),
        )


def _number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    """``env[name]`` as a positive ``kind`` (``default`` when unset); a bad value stops the
    script with one line naming the variable, not a traceback."""
    if name not in env:
        return default
    try:
        value = kind(env[name])
    except ValueError:
        value = None
    if value is None or not value > 0:
        what = "a whole number" if kind is int else "a number"
        raise SystemExit(f"{name}={env[name]!r} must be {what} > 0 (default {default}).")
    return value


def tune(settings: Settings, sdk: Any = None) -> tuple[TuningResult, SkyPilotBackend]:
    """Plan, launch and run the study on SkyPilot; ``sdk`` replaces the ``sky`` client
    (tests pass a fake at the SDK boundary)."""
    if settings.managed_job and settings.storage.startswith("sqlite"):
        raise SystemExit(
            f"SEER_STORAGE_URL={settings.storage!r} is a file on this driver's disk, which a "
            "managed job loses when it is recovered: pass an RDB URL (postgresql://...) "
            "with --secret SEER_STORAGE_URL."
        )
    gpus_per_node = int(settings.accelerators.partition(":")[2] or 1)
    workload = Workload(
        epoch_seconds=settings.epoch_seconds,
        scaling=settings.scaling,
        max_epochs=settings.max_epochs,
        gpus_per_node=gpus_per_node,
    )
    budget = Budget(
        deadline=settings.deadline,
        dollars=settings.budget_dollars,
        price_per_gpu_hour=settings.price_per_gpu_hour,
    )
    limits = ClusterLimits(max_gpus=settings.max_gpus)
    pruner = SeerPruner(
        budget,
        workload,
        settings.reduction_factor,
        limits=limits,
        max_configs=settings.max_configs,
    )
    study = optuna.create_study(
        study_name=settings.study,
        storage=settings.storage,
        direction="maximize",
        sampler=SeerSampler(),
        pruner=pruner,
        load_if_exists=True,  # a restarted (managed-job) driver continues the stored study
    )
    backend = SkyPilotBackend(
        resources=settings.accelerators,
        clouds=list(settings.clouds),
        use_spot=settings.use_spot,
        checkpoints=settings.checkpoints,
        max_gpus=settings.max_gpus,
        proxy_port=settings.proxy_port,
        workdir=settings.workdir,
        price_per_gpu_hour=settings.price_per_gpu_hour,
        sdk=sdk,
        **dict(settings.backend_options),
    )
    train = settings.train
    if ":" in train and train.partition(":")[0].endswith(".py"):
        train = str(Path(settings.workdir, train).resolve())  # under workdir: nodes have it
    tuner = ElasticTuner(
        study,
        backend=backend,
        train=train,
        checkpoints=settings.checkpoints,
        workload=workload,
        progress=sdk is None,
    )
    return tuner.run(), backend


def main() -> None:
    """Run with the settings of the environment and print the report."""
    result, backend = tune(Settings.from_env())
    print(format_report(result, bill=backend.bill()))  # CLI output


if __name__ == "__main__":
    main()
