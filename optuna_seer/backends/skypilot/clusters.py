"""What the SkyPilot backend remembers: its clusters, its trials' launches, and each cluster's bill.

Plain records the cluster manager (:mod:`optuna_seer.backends.skypilot.backend`) updates as
it launches, reuses and tears down clusters; :func:`cluster_cost` turns one into a line of its
cost report, and :func:`checked_node_sizes` says which node sizes its clusters may have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna_seer.backends.base import LaunchSpec, LaunchStatus
from optuna_seer.planning.placement import ClusterShape, TrialSlot


@dataclass
class ClusterRecord:
    """One cluster this backend launched: its shape, free GPUs, price and trials."""

    name: str
    shape: ClusterShape
    free_gpus: int
    launched_at: float
    hourly_price: float | None
    price_source: str
    downed_at: float | None = None
    launch_error: str | None = None
    trials: set[str] = field(default_factory=set)

    @property
    def idle(self) -> bool:
        """No trial holds any of its GPUs."""
        return self.free_gpus == self.shape.gpus


@dataclass
class LaunchRecord:
    """One trial launch: queued, then placed on a slot and submitted as a SkyPilot job."""

    spec: LaunchSpec
    started_at: float
    queued_at: float = 0.0
    slot: TrialSlot | None = None
    job_id: int | None = None
    preemptions: int = 0
    status: LaunchStatus | None = None  # set once final


@dataclass(frozen=True)
class ClusterCost:
    """One cluster's bill: how long it was up and what it cost."""

    name: str
    nodes: int
    gpus_per_node: int
    seconds: float
    hourly_price: float | None
    dollars: float | None
    price_source: str


def cluster_cost(cluster: ClusterRecord, now: float) -> ClusterCost:
    """The bill of ``cluster``: up from launch until torn down (or ``now``), at its price.

    Example:
        >>> record = ClusterRecord("seer-0", ClusterShape(2, 4), 8, 0.0, 3.0, "configured")
        >>> cluster_cost(record, 1800.0).dollars
        1.5
    """
    seconds = (cluster.downed_at or now) - cluster.launched_at
    price = cluster.hourly_price
    return ClusterCost(
        name=cluster.name,
        nodes=cluster.shape.nodes,
        gpus_per_node=cluster.shape.gpus_per_node,
        seconds=seconds,
        hourly_price=price,
        dollars=None if price is None else price * seconds / 3600.0,
        price_source=cluster.price_source,
    )


def checked_node_sizes(
    node_sizes: Sequence[int] | None,
    gpus_per_node: int,
    max_gpus: int,
    resources: str | Mapping[str, Any],
) -> tuple[int, ...]:
    """The GPU counts a node may have, smallest first: ``node_sizes`` plus the full node.

    Raises:
        TypeError: A size is not an int.
        ValueError: A size is outside ``1..gpus_per_node`` (the node of ``resources``), or
            even the smallest node does not fit in ``max_gpus``.

    Example:
        >>> checked_node_sizes([2, 4], 8, 64, "A100:8")
        (2, 4, 8)
    """
    sizes = set(node_sizes or ()) | {gpus_per_node}
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"node size {size!r} must be an int.")
        if not 1 <= size <= gpus_per_node:
            raise ValueError(
                f"node size {size} must be in 1..{gpus_per_node} (GPUs of {resources!r})."
            )
    if min(sizes) > max_gpus:
        raise ValueError(f"max_gpus={max_gpus} is smaller than the smallest node ({min(sizes)}).")
    return tuple(sorted(sizes))
