"""What the SkyPilot backend remembers: its clusters, its trials' launches, and each cluster's bill.

Plain records the cluster manager (:mod:`optuna_seer.backends.skypilot.backend`) updates as
it launches, reuses and tears down clusters; :func:`cluster_cost` turns one into a line of its
cost report, and :func:`checked_node_sizes` says which node sizes its clusters may have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna_seer.backends.base import LaunchSpec, LaunchState, LaunchStatus
from optuna_seer.planning.placement import ClusterShape, TrialSlot


@dataclass
class ClusterRecord:
    """One cluster this backend launched: its shape, free GPUs, price and trials.

    ``hourly_price`` is the whole cluster's at its current node count; ``resizes`` holds
    ``(time, nodes)`` for every node count it had (a ``sky launch --resize`` adds one), so its
    bill follows them. ``boot_s``/``setup_s`` are the seconds SkyPilot took to provision its
    instances and to sync and run its setup; ``busy_gpu_s`` the GPU-seconds trials held.
    """

    name: str
    shape: ClusterShape
    free_gpus: int
    launched_at: float
    hourly_price: float | None
    price_source: str
    downed_at: float | None = None
    launch_error: str | None = None
    trials: set[str] = field(default_factory=set)
    resizes: list[tuple[float, int]] = field(default_factory=list)
    boot_s: float | None = None
    setup_s: float | None = None
    busy_gpu_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.resizes:
            self.resizes.append((self.launched_at, self.shape.nodes))

    @property
    def idle(self) -> bool:
        """No trial holds any of its GPUs."""
        return self.free_gpus == self.shape.gpus

    def resize(self, shape: ClusterShape, now: float) -> None:
        """The cluster (idle) now has ``shape``'s nodes: its price per node stays."""
        if self.hourly_price is not None:
            self.hourly_price = self.hourly_price / self.shape.nodes * shape.nodes
        self.resizes.append((now, shape.nodes))
        self.shape, self.free_gpus = shape, shape.gpus

    def node_seconds(self, now: float, minimum_s: float = 0.0) -> float:
        """Node-seconds up so far (to ``downed_at`` or ``now``), each node billed at least
        ``minimum_s`` from when it came up (a provider's billing minimum)."""
        end = self.downed_at if self.downed_at is not None else now
        total, nodes_before = 0.0, 0
        for index, (since, nodes) in enumerate(self.resizes):
            until = self.resizes[index + 1][0] if index + 1 < len(self.resizes) else end
            total += nodes * max(until - since, 0.0)
            if nodes > nodes_before:  # nodes added here: each bills at least the minimum
                total += (nodes - nodes_before) * max(minimum_s - (end - since), 0.0)
            nodes_before = nodes
        return total


@dataclass
class LaunchRecord:
    """One trial launch: queued, then placed on a slot and submitted as a SkyPilot job.

    ``queue_s`` is the time from start (or a relaunch after preemption) to placement;
    ``boot_s``/``setup_s`` those of the cluster it was placed on when that cluster was
    launched or resized for it (``0.0`` on a cluster already up).
    """

    spec: LaunchSpec
    started_at: float
    queued_at: float = 0.0
    slot: TrialSlot | None = None
    job_id: int | None = None
    preemptions: int = 0
    status: LaunchStatus | None = None  # set once final
    submitted_at: float | None = None
    queue_s: float | None = None
    boot_s: float | None = None
    setup_s: float | None = None

    def placed(self, slot: TrialSlot, cluster: ClusterRecord | None, placed_at: float) -> None:
        """It got ``slot`` at ``placed_at`` (monotonic); ``cluster`` is the one brought up or
        resized for it (its boot and setup seconds count), ``None`` for one already up."""
        self.slot = slot
        self.queue_s = (self.queue_s or 0.0) + placed_at - self.queued_at
        self.boot_s = (self.boot_s or 0.0) + ((cluster.boot_s or 0.0) if cluster else 0.0)
        self.setup_s = (self.setup_s or 0.0) + ((cluster.setup_s or 0.0) if cluster else 0.0)

    def current(
        self, state: LaunchState, message: str, finished_at: float | None = None
    ) -> LaunchStatus:
        """Its status as the backend reports it, with the queue, boot and setup seconds."""
        return LaunchStatus(
            state,
            self.started_at,
            finished_at,
            message,
            queue_s=self.queue_s,
            boot_s=self.boot_s,
            setup_s=self.setup_s,
        )


@dataclass(frozen=True)
class ClusterCost:
    """One cluster's bill: how long it was up and what it cost (whole nodes, from the launch
    request to ``sky down``: provisioning, setup and idle GPUs included)."""

    name: str
    nodes: int
    gpus_per_node: int
    seconds: float
    hourly_price: float | None
    dollars: float | None
    price_source: str
    idle_gpu_seconds: float = 0.0
    setup_seconds: float = 0.0


def cluster_cost(cluster: ClusterRecord, now: float, minimum_s: float = 0.0) -> ClusterCost:
    """The bill of ``cluster``: every node from launch until torn down (or ``now``), at its
    price per node, each node at least ``minimum_s``.

    Example:
        >>> record = ClusterRecord("seer-0", ClusterShape(2, 4), 8, 0.0, 3.0, "configured")
        >>> cluster_cost(record, 1800.0).dollars
        1.5
        >>> cluster_cost(record, 10.0, minimum_s=60.0).dollars  # 2 nodes x 60 s at $1.5/h
        0.05
    """
    end = cluster.downed_at if cluster.downed_at is not None else now
    seconds = end - cluster.launched_at
    node_seconds = cluster.node_seconds(now, minimum_s)
    price = cluster.hourly_price
    node_price = None if price is None else price / cluster.shape.nodes
    gpu_seconds = cluster.node_seconds(now) * cluster.shape.gpus_per_node
    return ClusterCost(
        name=cluster.name,
        nodes=cluster.shape.nodes,
        gpus_per_node=cluster.shape.gpus_per_node,
        seconds=seconds,
        hourly_price=price,
        dollars=None if node_price is None else node_price * node_seconds / 3600.0,
        price_source=cluster.price_source,
        idle_gpu_seconds=max(gpu_seconds - cluster.busy_gpu_s, 0.0),
        setup_seconds=(cluster.boot_s or 0.0) + (cluster.setup_s or 0.0),
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


def cluster_is_up(sdk: Any, name: str) -> bool:
    """Whether ``sky status`` says cluster ``name`` is UP (no answer: assume it is, and ask
    again at the next poll)."""
    try:
        records = sdk.get(sdk.status(cluster_names=[name]))
    except Exception:
        return True
    for record in records:
        status = _field(record, "status")
        if _field(record, "name") == name:
            return str(getattr(status, "value", status)) == "UP"
    return False


def clusters_still_up(sdk: Any, names: Sequence[str]) -> list[str]:
    """Which of ``names`` ``sky status`` still lists (no answer: trust the downs)."""
    if not names:
        return []
    try:
        records = sdk.get(sdk.status(cluster_names=list(names)))
    except Exception:
        return []
    return sorted(str(_field(r, "name")) for r in records)


def _field(record: Any, name: str) -> Any:
    """A field of a ``sky.status`` record (a response object, or a dict)."""
    return record[name] if isinstance(record, Mapping) else getattr(record, name, None)
