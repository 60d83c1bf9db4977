"""Bring clusters up with SkyPilot, in parallel, timing each step.

Each cluster is brought up in two ``sky launch`` calls on the same cluster name, so the time
before its first trial can run is measured where it goes:

1. **boot**: the nodes alone (resources and ``num_nodes``; no workdir, mounts or setup):
   SkyPilot provisions the instances and its runtime. With ``resize=True`` this grows or
   shrinks an idle cluster to the new node count instead of launching a new one.
2. **setup**: the full cluster task on the cluster that is now up: SkyPilot provisions
   nothing, syncs the workdir and the file mounts (the driver's optuna-seer wheel) and runs
   the template's ``setup`` on every node.

Every launch asks for autodown (``idle_minutes_to_autostop`` + ``down=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import time
from typing import Any

from optuna_seer.backends.skypilot.clusters import ClusterRecord
from optuna_seer.backends.skypilot.failures import launch_failure
from optuna_seer.planning.placement import ClusterShape, OpenCluster, Placement, place
from optuna_seer.pricing.clusters import launched_hourly_price


@dataclass(frozen=True)
class Bringup:
    """What bringing one cluster up gave: seconds of each step, SkyPilot's handle, or the
    error that stopped it."""

    boot_s: float | None = None
    setup_s: float | None = None
    handle: Any = None
    error: BaseException | None = None


@dataclass(frozen=True)
class Target:
    """One cluster to bring up: its name, the shape it must have, and whether it exists
    already with another node count (``resize``)."""

    name: str
    shape: ClusterShape
    resize: bool = False


def bring_up(
    sdk: Any,
    targets: list[Target],
    *,
    boot_task: Callable[[ClusterShape], Any],
    cluster_task: Callable[[ClusterShape], Any],
    autostop_minutes: int,
) -> dict[str, Bringup]:
    """Bring every target up at once (one thread each: ``sky.get`` blocks); name → outcome."""

    def one(target: Target) -> Bringup:
        started = time.monotonic()
        boot_s = None
        try:
            options: dict[str, Any] = {
                "cluster_name": target.name,
                "idle_minutes_to_autostop": autostop_minutes,
                "down": True,
            }
            resize = {"resize": True} if target.resize else {}
            sdk.get(sdk.launch(boot_task(target.shape), **options, **resize))
            booted = time.monotonic()
            boot_s = booted - started
            _, handle = sdk.get(sdk.launch(cluster_task(target.shape), **options))
            return Bringup(boot_s, time.monotonic() - booted, handle)
        except Exception as exc:  # no capacity, quota, credentials, a failing setup …
            return Bringup(boot_s=boot_s, error=exc)

    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="sky-launch") as pool:
        outcomes = list(pool.map(one, targets))
    return {target.name: outcome for target, outcome in zip(targets, outcomes)}


def resize_candidates(
    new: Mapping[str, ClusterShape], spare: Mapping[str, ClusterShape]
) -> dict[str, str]:
    """Which idle clusters (``spare``: name → shape) to resize into which new shapes
    (placeholder → shape): one with the same GPUs per node, the closest node count first.

    Example:
        >>> resize_candidates({"new-0": ClusterShape(2, 4)},
        ...                   {"c1": ClusterShape(1, 4), "c2": ClusterShape(1, 8)})
        {'new-0': 'c1'}
    """
    left = dict(spare)
    chosen: dict[str, str] = {}
    for placeholder, shape in new.items():
        fits = [n for n, s in left.items() if s.gpus_per_node == shape.gpus_per_node]
        if fits:
            name = min(fits, key=lambda n: (abs(left[n].nodes - shape.nodes), n))
            chosen[placeholder] = name
            del left[name]
    return chosen


def place_within_quota(
    batch: Sequence[str],
    demands: Mapping[str, int],
    clusters: Mapping[str, ClusterRecord],
    *,
    gpus_per_node: int,
    node_sizes: Sequence[int],
    max_gpus: int,
) -> tuple[list[str], Placement | None]:
    """The longest head of ``batch`` (launch handles, oldest first) whose placement keeps the
    GPUs provisioned within ``max_gpus`` (the clusters kept, busy or used, plus the new ones),
    and that placement; the launches left out wait for capacity."""
    batch = list(batch)
    while batch:
        open_clusters = [OpenCluster(c.name, c.shape, c.free_gpus) for c in clusters.values()]
        placement = place(
            {h: demands[h] for h in batch},
            gpus_per_node,
            open_clusters=open_clusters,
            node_sizes=node_sizes,
        )
        used = {slot.cluster for slot in placement.slots.values()}
        kept = sum(c.shape.gpus for c in clusters.values() if not c.idle or c.name in used)
        if kept + placement.new_gpus <= max_gpus:
            return batch, placement
        batch.pop()  # the quota is full: the last-started launch waits for capacity
    return [], None


def record_bringups(
    clusters: Mapping[str, ClusterRecord],
    outcomes: Mapping[str, Bringup],
    resized: Collection[str],
) -> None:
    """Write each cluster's bring-up into its record: boot and setup seconds, the failure
    (naming the cluster, its shape, SkyPilot's error and ``sky logs --provision``), and the
    price of the instances SkyPilot launched. A new cluster of which nothing came up is not
    billed; a ``resized`` one keeps its price."""
    for name, outcome in outcomes.items():
        cluster = clusters[name]
        cluster.boot_s, cluster.setup_s = outcome.boot_s, outcome.setup_s
        if outcome.error is not None:
            cluster.launch_error = launch_failure(
                cluster=name,
                nodes=cluster.shape.nodes,
                gpus_per_node=cluster.shape.gpus_per_node,
                error=outcome.error,
            )
            if outcome.boot_s is None and name not in resized:  # nothing came up
                cluster.hourly_price, cluster.price_source = 0.0, "launch failed: not billed"
            continue
        launched = launched_hourly_price(outcome.handle, cluster.shape.nodes)
        if launched is not None:  # what SkyPilot says the instances it got cost
            cluster.hourly_price, cluster.price_source = launched
