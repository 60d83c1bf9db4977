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

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import time
from typing import Any

from optuna_seer.planning.placement import ClusterShape


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
