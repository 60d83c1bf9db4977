"""Leases of a staged cluster's nodes: what is held, what a shrink releases, what it bills.

A :class:`Lease` is a group of nodes of one instance type provisioned together (one request,
queue and boot); :class:`NodeSet` is the nodes a :class:`~optuna_seer.execution.
staged_cluster.StagedCluster` holds now, each with its free GPUs, when it is up and (spot)
when it is reclaimed, and the leases they belong to. With per-node leases
(:mod:`optuna_seer.planning.node_leases`) a resize on the same instance type keeps nodes:
a shrink releases the idle nodes whose paid time ends soonest, splitting their lease; a grow
adds a lease for the new nodes only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
import math

from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.node_leases import release_key
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.spare_nodes import paid_until
from optuna_seer.planning.stage_plan import Stage

__all__ = ["Lease", "Node", "NodeSet", "ProvisioningDelay", "no_delay"]

ProvisioningDelay = Callable[[int, Stage], tuple[float, float]]
"""``delay(n, stage) -> (queue_s, boot_s)`` for the ``n``-th cluster provisioned (0 first)."""


def no_delay(number: int, stage: Stage) -> tuple[float, float]:
    """No provisioning delay: the capacity is there already (local slots)."""
    return 0.0, 0.0


@dataclass(frozen=True)
class Lease:
    """Nodes provisioned together, from their request to their release (backend clock, s).

    A cluster released whole is one lease; with per-node leases, a shrink splits off the
    nodes it releases as a lease of their own (same request, boot and price).

    Attributes:
        first_stage: The stage that asked for it (later stages on the same cluster share it).
        instance: Its instance type and price.
        nodes: Its instance count.
        requested_at: When it was asked for.
        queue_s: Waiting for capacity (not billed).
        boot_s: Instance start-up until it runs trials (billed).
        released_at: When it was released (``None``: still held).

    Example:
        >>> q = PriceQuote("gpu1", "V100", 1, 3.6)
        >>> lease = Lease(0, q, 2, 0.0, 10.0, 20.0, released_at=130.0)
        >>> lease.ready_at, lease.billed_seconds(BillingRule.parse("per-hour"))
        (30.0, 3600.0)
        >>> round(lease.dollars(BillingRule.parse("exact")), 4)
        0.24
    """

    first_stage: int
    instance: PriceQuote
    nodes: int
    requested_at: float
    queue_s: float
    boot_s: float
    released_at: float | None = None
    stages: tuple[int, ...] = field(default=())

    @property
    def ready_at(self) -> float:
        return self.requested_at + self.queue_s + self.boot_s

    @property
    def held_seconds(self) -> float:
        """Seconds billed before rounding: boot plus the time held after it (0 while held)."""
        if self.released_at is None:
            return 0.0
        return max(self.released_at - self.requested_at - self.queue_s, 0.0)

    def billed_seconds(self, billing: BillingRule) -> float:
        return billing.billed_seconds(self.held_seconds)

    def dollars(self, billing: BillingRule) -> float:
        """What the cloud charges for the lease: every node, rounded by ``billing``."""
        return self.nodes * self.instance.dollars_per_second * self.billed_seconds(billing)


@dataclass(eq=False)
class Node:
    """One node held now: its lease (index), free GPUs, when it is up, when (spot) it is
    next reclaimed and, for a spare (:mod:`~optuna_seer.planning.spare_nodes`), when it is
    released. Compared by identity: a launch remembers the nodes it runs on."""

    lease: int
    free: int
    ready_at: float
    reclaim_at: float = float("inf")
    spare_until: float = float("inf")

    @property
    def spare(self) -> bool:
        return not math.isinf(self.spare_until)


class NodeSet:
    """The nodes held now and every lease so far (released ones included)."""

    def __init__(self) -> None:
        self.leases: list[Lease] = []
        self.nodes: list[Node] = []

    def holds(self, node: Node) -> bool:
        return any(node is held for held in self.nodes)

    def add(self, lease: Lease, gpus_per_node: int) -> list[Node]:
        """Hold ``lease``'s nodes (up once it is ready); the new nodes."""
        self.leases.append(lease)
        added = [
            Node(len(self.leases) - 1, gpus_per_node, lease.ready_at) for _ in range(lease.nodes)
        ]
        self.nodes.extend(added)
        return added

    def join(self, stage: int) -> None:
        """Stage ``stage`` runs on the nodes held now: their leases list it."""
        for index in sorted({node.lease for node in self.nodes}):
            lease = self.leases[index]
            if stage not in lease.stages:
                self.leases[index] = replace(lease, stages=(*lease.stages, stage))

    def release_all(self, now: float) -> None:
        for index in sorted({node.lease for node in self.nodes}):
            self.leases[index] = replace(self.leases[index], released_at=now)
        self.nodes = []

    @property
    def cluster(self) -> list[Node]:
        """The nodes held that are not spares."""
        return [node for node in self.nodes if not node.spare]

    def shrink(
        self, keep: int, now: float, billing: BillingRule, gpus_per_node: int, spares: bool = False
    ) -> int:
        """Give up idle nodes until ``keep`` non-spare nodes are held, those whose paid time
        ends soonest first (:func:`~optuna_seer.planning.node_leases.release_key`), the latest
        started among equals: released (a released node's lease is split off), or with
        ``spares`` kept as spares until their paid time ends. Returns the nodes given up (a
        busy node is never given up, so fewer if too few are idle)."""
        cluster = self.cluster
        idle = [node for node in cluster if node.free == gpus_per_node]

        def key(node: Node) -> tuple[float, float, int]:
            lease = self.leases[node.lease]
            return (*release_key(lease.requested_at + lease.queue_s, now, billing), -node.lease)

        chosen = sorted(idle, key=key)[: max(len(cluster) - keep, 0)]
        for node in chosen if spares else ():
            lease = self.leases[node.lease]
            node.spare_until = paid_until(lease.requested_at + lease.queue_s, now, billing)
        # Nodes with no paid time left (billed per second, say) go at once.
        self.release([node for node in chosen if not spares or node.spare_until <= now], now)
        return len(chosen)

    def take_back(self, count: int, now: float) -> int:
        """Make up to ``count`` spares still paid after ``now`` cluster nodes again, those
        paid longest first; returns how many."""
        spares = sorted(
            (n for n in self.nodes if n.spare and n.spare_until > now),
            key=lambda n: -n.spare_until,
        )
        for node in spares[:count]:
            node.spare_until = float("inf")
        return min(count, len(spares))

    def expire(self, now: float, gpus_per_node: int) -> None:
        """Release the idle spares whose paid time has ended."""
        self.release(
            [n for n in self.nodes if n.spare_until <= now and n.free == gpus_per_node], now
        )

    def release(self, chosen: list[Node], now: float) -> None:
        """Release ``chosen`` nodes at ``now``, splitting their leases."""
        for index in sorted({node.lease for node in chosen}):
            count = sum(node.lease == index for node in chosen)
            lease = self.leases[index]
            if count == sum(node.lease == index for node in self.nodes):  # its last nodes held
                self.leases[index] = replace(lease, released_at=now)
            else:
                self.leases[index] = replace(lease, nodes=lease.nodes - count)
                self.leases.append(replace(lease, nodes=count, released_at=now))
        self.nodes = [node for node in self.nodes if not any(node is c for c in chosen)]
