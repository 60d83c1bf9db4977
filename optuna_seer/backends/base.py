"""The backend interface: start a trial with N workers, poll it, stop it, release everything.

The elastic executor talks only to this interface, so the same executor drives real Lightning
DDP processes on this machine (``LocalBackend``), clusters on the cloud (``SkyPilotBackend``)
and a simulated clock for benchmarks (``ReplayBackend``). A backend owns time too: ``now()``
and ``wait()`` are wall-clock for real backends and simulated for replays.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import enum
from typing import Any


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a backend needs to run one trial for one rung.

    Attributes:
        study_name: The Optuna study the trial belongs to.
        storage: Storage URL reachable from the workers (``sqlite:///…``, a journal path, an
            RDB URL or a gRPC proxy ``grpc://host:port``). Never logged unredacted.
        trial_number: The Optuna trial number.
        params: The trial's hyperparameters.
        rung: Rung index in the plan.
        target_epochs: Cumulative epochs the trial must have trained when this launch ends.
        workers: Data-parallel workers (GPUs, or CPU processes locally).
        checkpoint_uri: Where the trial's checkpoints live (directory or ``s3://…`` prefix).
        resume_from: Checkpoint to resume from, or ``None`` to start fresh.
        env: Extra environment variables for the workers.
        entrypoint: The training program: ``path/to/script.py``, ``path/to/file.py:function``
            or ``package.module:function`` (run by ``python -m optuna_seer.worker.entrypoint``).
    """

    study_name: str
    storage: str
    trial_number: int
    params: Mapping[str, Any]
    rung: int
    target_epochs: int
    workers: int
    checkpoint_uri: str
    resume_from: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: str = ""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be >= 1.")
        if self.target_epochs < 1:
            raise ValueError(f"target_epochs={self.target_epochs} must be >= 1.")


class LaunchState(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class LaunchStatus:
    """What a backend knows about one launch.

    ``queue_s``, ``boot_s`` and ``setup_s`` are where a cloud launch's time went before its
    job was submitted (``None`` where a backend does not measure them): waiting in the
    backend's queue for placement and capacity, provisioning the instances of its cluster,
    and syncing and running the cluster's setup (both ``0.0`` on a cluster already up).
    """

    state: LaunchState
    started_at: float
    finished_at: float | None = None
    message: str = ""
    queue_s: float | None = None
    boot_s: float | None = None
    setup_s: float | None = None

    @property
    def done(self) -> bool:
        return self.state is not LaunchState.RUNNING


class Backend(abc.ABC):
    """Runs launches on some capacity of workers (slots)."""

    @property
    @abc.abstractmethod
    def slots(self) -> int:
        """Workers that can run at once (``None``-free: elastic backends report their quota)."""

    @abc.abstractmethod
    def start(self, spec: LaunchSpec) -> str:
        """Start ``spec`` and return a handle; raises ``ValueError`` if it can never fit."""

    @abc.abstractmethod
    def poll(self, handle: str) -> LaunchStatus:
        """The launch's current status."""

    @abc.abstractmethod
    def stop(self, handle: str) -> None:
        """Stop a launch (idempotent)."""

    @abc.abstractmethod
    def release(self) -> None:
        """Stop everything and free all resources (idempotent; called on exit and on errors)."""

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds since the epoch on this backend's clock."""

    @abc.abstractmethod
    def wait(self, handles: Sequence[str], timeout_s: float) -> list[str]:
        """Block until one of ``handles`` is done or ``timeout_s`` passes; the done handles."""

    def billed_dollars(self) -> float | None:
        """What the provider bills for this backend's capacity so far, where it bills more
        than the ledger's worker-seconds (whole nodes, idle GPUs, setup, billing minimums);
        ``None`` (the default) when the ledger is the bill. A budget guard counts the larger.
        """
        return None

    @property
    def launches_end_with_driver(self) -> bool:
        """Whether this backend's launches end soon after the driver process dies.

        ``False`` (the default: a cloud cluster keeps running, and billing, until it stops
        itself). When ``True``, a resumed executor charges the launches a killed driver left
        running only up to the driver's last heartbeat, not up to the resume.
        """
        return False
