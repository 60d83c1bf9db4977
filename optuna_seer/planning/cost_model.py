"""Deterministic time and cost of a rung-by-rung schedule: the model every planner shares.

Pure functions over plain data. For rung ``r`` with ``n`` trials, ``k`` GPUs each and
``Δe = e_r - e_{r-1}`` epochs to train, on a cluster of at most ``M`` GPUs:

* ``concurrent = min(n, M // k)`` trials run at once, in ``waves = ceil(n / concurrent)``;
* ``τ_r = d_r + Σ_waves c(m_w) · (startup + Δe · t1 / s(k))`` where ``d_r`` is the
  provisioning delay, paid when the number of provisioned GPUs changes (always for the first
  rung), and ``c(m_w)`` is the workload's contention for the ``m_w`` trials of wave ``w``
  running at once (1.0 unless trials share hardware, e.g. CPU cores);
* ``cost_r = concurrent · k · τ_r · p``: GPUs are billed while provisioned, waits included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math

from optuna_seer.planning.plan import Rung, RungShape
from optuna_seer.planning.workload import Workload

# RungShape lives with the rungs that extend it; it stays importable from here for callers.
__all__ = ["ClusterLimits", "RungShape", "schedule"]


@dataclass(frozen=True)
class ClusterLimits:
    """What the cloud lets the job have.

    Args:
        max_gpus: Most GPUs provisioned at once (quota); ``None`` means only the budget limits.
        provisioning_seconds: Delay before a newly shaped cluster can run (instance start-up,
            queueing); paid when a rung's cluster differs from the previous one.

    Example:
        >>> ClusterLimits(max_gpus=64, provisioning_seconds=120.0).max_gpus
        64
    """

    max_gpus: int | None = None
    provisioning_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.max_gpus is not None:
            if isinstance(self.max_gpus, bool) or not isinstance(self.max_gpus, int):
                raise TypeError(f"max_gpus={self.max_gpus!r} must be an int or None.")
            if self.max_gpus < 1:
                raise ValueError(f"max_gpus={self.max_gpus} must be >= 1 (or None for no limit).")
        if isinstance(self.provisioning_seconds, bool) or not isinstance(
            self.provisioning_seconds, (int, float)
        ):
            raise TypeError(
                f"provisioning_seconds={self.provisioning_seconds!r} must be a number of seconds."
            )
        if not math.isfinite(self.provisioning_seconds) or self.provisioning_seconds < 0:
            raise ValueError(
                f"provisioning_seconds={self.provisioning_seconds!r} must be >= 0 and finite."
            )


def schedule(
    shapes: Sequence[RungShape],
    workload: Workload,
    price_per_gpu_second: float,
    limits: ClusterLimits,
    start_resource: int = 0,
) -> tuple[Rung, ...]:
    """Time and price ``shapes`` run back to back; returns the timed rungs.

    ``start_resource`` is the epochs trials already have before the first shape (0 for a new
    job; the current rung's start when re-planning the rest of a running one).

    Raises:
        ValueError: A rung asks for more GPUs per trial than the cluster may have.
    """
    rungs: list[Rung] = []
    start = 0.0
    previous_resource = start_resource
    previous_gpus = 0
    for index, shape in enumerate(shapes):
        k = shape.gpus_per_trial
        if limits.max_gpus is not None and k > limits.max_gpus:
            raise ValueError(
                f"rung {index} wants {k} GPUs per trial but max_gpus={limits.max_gpus}."
            )
        concurrent = (
            shape.n_trials if limits.max_gpus is None else min(shape.n_trials, limits.max_gpus // k)
        )
        waves = math.ceil(shape.n_trials / concurrent)
        epoch_s = workload.epoch_seconds_on(k)
        gpus = concurrent * k
        delay = limits.provisioning_seconds if gpus != previous_gpus else 0.0
        # Each wave is slowed by the contention of its own number of trials at once: the
        # full waves by ``concurrent``'s, a last partial wave by its remainder's.
        full_waves, remainder = divmod(shape.n_trials, concurrent)
        slowdowns = full_waves * workload.contention_on(concurrent) + (
            workload.contention_on(remainder) if remainder else 0.0
        )
        seconds = delay + slowdowns * (
            workload.startup_on(k) + (shape.resource - previous_resource) * epoch_s
        )
        rungs.append(
            Rung(
                index=index,
                n_trials=shape.n_trials,
                resource=shape.resource,
                gpus_per_trial=k,
                start_s=start,
                end_s=start + seconds,
                cost=gpus * seconds * price_per_gpu_second,
                epoch_seconds=epoch_s * workload.contention_on(concurrent),
                concurrent_trials=concurrent,
                waves=waves,
                startup_s=workload.startup_on(k) * workload.contention_on(concurrent),
            )
        )
        start += seconds
        previous_resource = shape.resource
        previous_gpus = gpus
    return tuple(rungs)
