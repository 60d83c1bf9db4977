"""The placement controller: which trial runs on which nodes, using the fewest nodes per trial.

Pure function over plain data (no I/O). Nodes have at most ``G`` GPUs (``gpus_per_node``) and
every node of one trial runs the same number of workers (``torchrun --nproc_per_node``), so:

* a trial with ``k <= G`` GPUs lives on **one** node; several such trials share a node
  (best-fit decreasing), preferring nodes already provisioned;
* a trial with ``k > G`` spans the fewest nodes ``m >= ceil(k / G)`` that split ``k`` evenly
  (``k = 16, G = 8``: 2 nodes of 8; ``k = 12, G = 8``: 2 nodes of 6) and owns its cluster;
* a new node is provisioned with the smallest size in ``node_sizes`` that holds its load, so
  a lone 2-GPU trial need not buy an 8-GPU machine where a 2-GPU one exists.

A *cluster* here is what SkyPilot provisions in one ``sky launch``: either one node shared by
small trials, or ``m`` nodes for one large trial. SkyPilot cannot grow a cluster, so a
placement only ever reuses an open cluster whose shape already fits, and asks for new ones.

Example:
    >>> p = place({"a": 1, "b": 1, "c": 2, "d": 16}, gpus_per_node=8)
    >>> p.slots["d"]
    TrialSlot(cluster='new-0', nodes=2, gpus_per_node=8)
    >>> p.slots["a"].cluster == p.slots["b"].cluster == p.slots["c"].cluster
    True
    >>> [(s.nodes, s.gpus_per_node) for s in p.new_clusters.values()]
    [(2, 8), (1, 8)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import math


@dataclass(frozen=True)
class ClusterShape:
    """``nodes`` machines with ``gpus_per_node`` GPUs each."""

    nodes: int
    gpus_per_node: int

    def __post_init__(self) -> None:
        for name in ("nodes", "gpus_per_node"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an int >= 1.")

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class OpenCluster:
    """A cluster that is already provisioned.

    Attributes:
        name: Its cluster name.
        shape: Its nodes and GPUs per node.
        free_gpus: GPUs not used by a running trial. A multi-node cluster hosts one trial at a
            time, so it is reusable only when entirely free.
    """

    name: str
    shape: ClusterShape
    free_gpus: int

    def __post_init__(self) -> None:
        if not 0 <= self.free_gpus <= self.shape.gpus:
            raise ValueError(
                f"cluster {self.name!r}: free_gpus={self.free_gpus} must be in "
                f"[0, {self.shape.gpus}]."
            )


@dataclass(frozen=True)
class TrialSlot:
    """Where one trial runs: ``nodes`` nodes of ``cluster``, ``gpus_per_node`` workers each."""

    cluster: str
    nodes: int
    gpus_per_node: int

    @property
    def workers(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class Placement:
    """The result of :func:`place`.

    Attributes:
        slots: Trial key → its slot. Clusters named ``new-<i>`` are to be provisioned.
        new_clusters: ``new-<i>`` → the shape to provision, in the order they were opened.
    """

    slots: Mapping[str, TrialSlot]
    new_clusters: Mapping[str, ClusterShape] = field(default_factory=dict)

    @property
    def new_gpus(self) -> int:
        """GPUs the new clusters add."""
        return sum(shape.gpus for shape in self.new_clusters.values())

    def trials_on(self, cluster: str) -> list[str]:
        """Keys of the trials placed on ``cluster``, sorted."""
        return sorted(key for key, slot in self.slots.items() if slot.cluster == cluster)


def split_across_nodes(gpus: int, gpus_per_node: int) -> tuple[int, int]:
    """The fewest ``(nodes, workers_per_node)`` with ``nodes * workers_per_node == gpus``.

    Example:
        >>> split_across_nodes(4, 8), split_across_nodes(16, 8), split_across_nodes(12, 8)
        ((1, 4), (2, 8), (2, 6))
    """
    _check_count(gpus, "gpus")
    _check_count(gpus_per_node, "gpus_per_node")
    for nodes in range(math.ceil(gpus / gpus_per_node), gpus + 1):
        if gpus % nodes == 0 and gpus // nodes <= gpus_per_node:
            return nodes, gpus // nodes
    raise AssertionError("unreachable: nodes == gpus always splits")  # pragma: no cover


def place(
    demands: Mapping[str, int],
    gpus_per_node: int,
    *,
    open_clusters: Sequence[OpenCluster] = (),
    node_sizes: Sequence[int] | None = None,
) -> Placement:
    """Place trials (key → GPUs) on open clusters and as few new nodes as possible.

    Args:
        demands: Trial key → GPUs (workers) it needs.
        gpus_per_node: GPUs of the largest node type (``G``).
        open_clusters: Provisioned clusters with their free GPUs; reused before new ones.
        node_sizes: GPU counts a new node may have (default: only ``gpus_per_node``).

    Raises:
        ValueError: A demand or size is not a positive int, or a size exceeds ``G``.
    """
    _check_count(gpus_per_node, "gpus_per_node")
    sizes = sorted(set(node_sizes if node_sizes is not None else (gpus_per_node,)))
    for size in sizes:
        _check_count(size, "node size")
        if size > gpus_per_node:
            raise ValueError(
                f"node size {size} exceeds gpus_per_node={gpus_per_node}; valid sizes are "
                f"1..{gpus_per_node}."
            )
    if gpus_per_node not in sizes:
        sizes.append(gpus_per_node)
    for key, gpus in demands.items():
        _check_count(gpus, f"GPUs of trial {key!r}")

    order = sorted(demands, key=lambda key: (-demands[key], key))
    slots: dict[str, TrialSlot] = {}
    new: dict[str, ClusterShape] = {}

    # Large trials: a whole cluster each, reusing an idle one of the same node count.
    idle_multi = [c for c in open_clusters if c.shape.nodes > 1 and c.free_gpus == c.shape.gpus]
    for key in (k for k in order if demands[k] > gpus_per_node):
        nodes, per_node = split_across_nodes(demands[key], gpus_per_node)
        fits = [
            c for c in idle_multi if c.shape.nodes == nodes and c.shape.gpus_per_node >= per_node
        ]
        if fits:
            chosen = min(fits, key=lambda c: (c.shape.gpus_per_node, c.name))
            idle_multi.remove(chosen)
            name = chosen.name
        else:
            name = f"new-{len(new)}"
            new[name] = ClusterShape(nodes, _smallest_size(per_node, sizes))
        slots[key] = TrialSlot(name, nodes, per_node)

    # Small trials: best-fit decreasing on single nodes, open ones first.
    open_free = {c.name: c.free_gpus for c in open_clusters if c.shape.nodes == 1 and c.free_gpus}
    new_load: dict[str, int] = {}
    for key in (k for k in order if demands[k] <= gpus_per_node):
        gpus = demands[key]
        reused = _best_fit(open_free, gpus)
        if reused is not None:
            open_free[reused] -= gpus
            slots[key] = TrialSlot(reused, 1, gpus)
            continue
        room = {n: gpus_per_node - load for n, load in new_load.items()}
        name = _best_fit(room, gpus) or f"new-{len(new)}"
        if name not in new_load:
            new[name] = ClusterShape(1, gpus_per_node)
            new_load[name] = 0
        new_load[name] += gpus
        slots[key] = TrialSlot(name, 1, gpus)
    for name, load in new_load.items():
        new[name] = ClusterShape(1, _smallest_size(load, sizes))
    return Placement(slots=slots, new_clusters=new)


def _best_fit(free: Mapping[str, int], gpus: int) -> str | None:
    fits = [(room, name) for name, room in free.items() if room >= gpus]
    return min(fits)[1] if fits else None


def _smallest_size(load: int, sizes: Sequence[int]) -> int:
    return min(size for size in sizes if size >= load)


def _check_count(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be an int >= 1.")
