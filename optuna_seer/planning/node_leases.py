"""Per-node leases: what a cluster that grows and shrinks in place costs, and when it is up.

Under coarse billing (whole hours, one-hour minimum) a resize that releases a cluster and
provisions another pays every node's rounding again. A cloud bills *instances*, though: a
node kept from one stage to the next keeps its lease, and is billed once, for its whole lease
rounded up by the :class:`~optuna_seer.planning.billing.BillingRule`. This module prices a
plan that way (the *node-lease model*):

* consecutive stages on the same instance type (and market) keep their nodes;
* growing adds leases for the new nodes only: they wait the provisioning delay (queueing,
  unbilled; boot, billed) and the stage starts when they are up (a conservative bound: the
  kept nodes could start sooner);
* shrinking releases nodes at the stage's start, with no delay: first the nodes whose paid
  time ends soonest (the cheapest to let go: the least paid time left unused), the most
  recently started first among equals;
* a new instance type releases every node and provisions its own;
* with spares (``launch_s``), a shrink keeps the nodes it gives up working until their paid
  time ends, and a grow takes them back first (:mod:`~optuna_seer.planning.spare_nodes`).

:func:`node_lease_run` is the simulator's loop under this model (vectorised over Monte Carlo
samples); :func:`release_key` is the order both it and the executor's
``StagedCluster`` release nodes in. Pure: standard library and numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import math

import numpy as np
import numpy.typing as npt

from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.spare_nodes import RELEASE_BEFORE_S, spare_slots, spare_waves
from optuna_seer.planning.stage_plan import Stage

Array = npt.NDArray[np.float64]

__all__ = ["NodePool", "node_lease_run", "release_key"]


def release_key(started_at: float, now: float, billing: BillingRule) -> tuple[float, float]:
    """Sort key of a node (or a group of nodes started together) to release at ``now``:
    paid seconds it would leave unused, then the most recently started first.

    Example:
        >>> hourly = BillingRule.parse("per-hour")
        >>> sorted([0.0, 1800.0, 3400.0], key=lambda s: release_key(s, 7000.0, hourly))
        [3400.0, 0.0, 1800.0]
    """
    held = max(now - started_at, 0.0)
    return billing.billed_seconds(held) - held, -started_at


class NodePool:
    """The nodes held now, per Monte Carlo sample, in groups started together.

    Args:
        billing: How each node's lease is rounded.
        samples: Monte Carlo samples (every array has this length).

    Example:
        >>> pool = NodePool(BillingRule.parse("per-hour"), samples=1)
        >>> pool.add(np.zeros(1), 4, dollars_per_second=1 / 3600)
        >>> pool.shrink(np.full(1, 1800.0), keep=1)  # 3 nodes released: 3 paid hours
        >>> pool.release_all(np.full(1, 5400.0))  # the last one: 2 paid hours
        >>> pool.cost.tolist()
        [5.0]
    """

    def __init__(self, billing: BillingRule, samples: int) -> None:
        self.billing = billing
        self.samples = samples
        self.cost: Array = np.zeros(samples)
        self._rate = 0.0
        self._starts: list[Array] = []
        self._counts: list[Array] = []
        self._spares: list[tuple[Array, Array, Array]] = []  # (start, count, paid seconds)

    @property
    def nodes(self) -> Array:
        """Nodes held, per sample."""
        return np.asarray(sum(self._counts, np.zeros(self.samples)), dtype=float)

    def accrued(self, now: Array) -> Array:
        """Dollars the held nodes have used so far, unrounded (for a running total)."""
        used = sum(
            (c * (now - s) for s, c in zip(self._starts, self._counts)), np.zeros(self.samples)
        )
        return np.asarray(self._rate * used, dtype=float)

    def add(self, started_at: Array, count: int | Array, dollars_per_second: float) -> None:
        """``count`` new nodes (per sample, or the same in all) whose leases (billing) start
        at ``started_at``."""
        if self._counts and dollars_per_second != self._rate:
            raise ValueError(
                f"dollars_per_second={dollars_per_second!r} differs from the pool's "
                f"{self._rate!r}: release the pool before changing instance type."
            )
        counts = np.broadcast_to(np.asarray(count, dtype=float), (self.samples,))
        if (counts < 0).any():
            raise ValueError(f"count={count!r} must be >= 0.")
        self._rate = dollars_per_second
        if counts.any():
            self._starts.append(np.asarray(started_at, dtype=float))
            self._counts.append(counts.copy())

    def release_all(self, now: Array) -> None:
        """Release every node at ``now``: each billed its whole lease, rounded."""
        for start, count in zip(self._starts, self._counts):
            self.cost = self.cost + self._rate * count * self.billing.billed_array(now - start)
        self._starts, self._counts = [], []
        for _, count, paid in self._spares:
            self.cost = self.cost + self._rate * count * paid
        self._spares = []

    def shrink(self, now: Array, keep: int, spares: bool = False) -> None:
        """Release all but ``keep`` nodes at ``now``, in :func:`release_key` order; with
        ``spares``, keep them as spares until their paid time ends instead
        (:mod:`~optuna_seer.planning.spare_nodes`)."""
        if not self._counts:
            return
        starts = np.stack(self._starts)
        counts = np.stack(self._counts)
        held = np.maximum(now - starts, 0.0)
        billed = np.stack([self.billing.billed_array(h) for h in held])
        # lexsort: the last key is the primary one (paid time left), then the latest start.
        order = np.lexsort((-starts, billed - held), axis=0)
        extra = np.maximum(counts.sum(axis=0) - keep, 0.0)
        for rank in range(len(counts)):
            group = order[rank : rank + 1]
            have = np.take_along_axis(counts, group, axis=0)[0]
            take = np.minimum(have, extra)
            paid = np.take_along_axis(billed, group, axis=0)[0]
            if spares and take.any():
                began = np.take_along_axis(starts, group, axis=0)[0]
                self._spares.append((began, take, paid))
            elif not spares:
                self.cost = self.cost + self._rate * take * paid
            np.put_along_axis(counts, group, (have - take)[None, :], axis=0)
            extra = extra - take
        kept = [i for i in range(len(counts)) if counts[i].any()]
        self._starts = [starts[i] for i in kept]
        self._counts = [counts[i] for i in kept]

    def spares(self, now: Array) -> tuple[Array, Array]:
        """(count, release time) of the spares still paid after ``now``, samples × groups;
        the expired ones are released (billed their paid time)."""
        live: list[tuple[Array, Array, Array]] = []
        for start, count, paid in self._spares:
            until = start + paid - RELEASE_BEFORE_S
            over = until <= now
            self.cost = self.cost + self._rate * count * paid * over
            count = count * ~over
            if count.any():
                live.append((start, count, paid))
        self._spares = live
        if not live:
            return np.zeros((self.samples, 0)), np.zeros((self.samples, 0))
        counts = np.stack([count for _, count, _ in live], axis=1)
        until = np.stack([start + paid - RELEASE_BEFORE_S for start, _, paid in live], axis=1)
        return counts, until

    def take_back(self, now: Array, need: int) -> Array:
        """Move up to ``need`` spares back into the cluster at ``now`` (those paid longest
        first, each keeping its lease); the nodes taken back, per sample."""
        taken = np.zeros(self.samples)
        counts, until = self.spares(now)
        if not counts.size:
            return taken
        order = np.argsort(-until, axis=1, kind="stable")
        for rank in range(counts.shape[1]):
            group = order[:, rank]
            start, count, paid = (np.stack(part, axis=1) for part in zip(*self._spares))
            have = np.take_along_axis(count, group[:, None], axis=1)[:, 0]
            take = np.minimum(have, need - taken)
            if take.any():
                self._starts.append(np.take_along_axis(start, group[:, None], axis=1)[:, 0])
                self._counts.append(take)
                np.put_along_axis(count, group[:, None], (have - take)[:, None], axis=1)
                self._spares = [
                    (start[:, j], count[:, j], paid[:, j]) for j in range(count.shape[1])
                ]
            taken = taken + take
        return taken


def _spare_speedup(
    stage: Stage, spares: tuple[Array, Array], now: Array, launch_s: float, widest: int
) -> Array:
    """Per sample, the share of its waves ``stage`` still takes with the ``spares`` (count,
    release time) helping from ``now`` (1: no spare fits a launch)."""
    counts, until = spares
    if not counts.size:
        return np.ones(len(now))
    k, c, n = stage.gpus_per_trial, stage.concurrent_trials, stage.n_trials
    slots = spare_slots(counts, stage.instance.gpus, k)
    runs = np.floor(np.maximum(until - now[:, None], 0.0) / max(launch_s, 1e-9))
    waves = spare_waves(n, c, slots, runs, max(widest // k - c, 0))
    return waves / math.ceil(n / c)


def node_lease_run(
    stages: Sequence[Stage],
    work: Callable[[int], tuple[Array, Array]],
    delay: Callable[[int], tuple[Array, Array]],
    billing: BillingRule,
    samples: int,
    detail: bool,
    launch_s: Callable[[int], float] | None = None,
) -> tuple[Array, Array, list[tuple[Array, Array, Array]]]:
    """Completion time and cost samples of ``stages`` under the node-lease model.

    Args:
        stages: The plan's stages.
        work: ``work(index) -> (makespan, interruption delay)`` samples of stage ``index``.
        delay: ``delay(index) -> (queue, boot)`` samples of nodes provisioned at ``index``.
        billing: How each node's lease is rounded.
        samples: Monte Carlo samples.
        detail: Also return, per stage, (start, end, cumulative cost) samples.
        launch_s: ``launch_s(index)``: seconds a launch of stage ``index`` needs on a spare
            (:func:`~optuna_seer.planning.spare_nodes.launch_estimate`). Given, a shrink
            keeps the nodes it gives up as spares (:mod:`~optuna_seer.planning.spare_nodes`):
            they run the stage's trials while a launch fits their paid time, and a grow takes
            them back first. ``None``: a shrink releases them at once.

    Example:
        >>> from optuna_seer.planning.prices import PriceQuote
        >>> q = PriceQuote("gpu1", "V100", 1, 3600.0)  # $1 a node-second
        >>> stages = [Stage(4, 1, 1, q, 4), Stage(1, 2, 1, q, 1)]
        >>> hour = np.full(1, 3600.0)
        >>> jct, cost, _ = node_lease_run(stages, lambda i: (hour * 0.5, hour * 0),
        ...     lambda i: (hour * 0, hour * 0), BillingRule.parse("per-hour"), 1, False)
        >>> jct.tolist(), (cost / 3600).tolist()  # 4 nodes for 1/2 h, 1 kept for 1 h
        ([3600.0], [4.0])
    """
    clock: Array = np.zeros(samples)
    pool = NodePool(billing, samples)
    per_stage: list[tuple[Array, Array, Array]] = []
    previous: Stage | None = None
    widest = max(s.concurrent_trials * s.gpus_per_trial for s in stages) if stages else 0
    for index, stage in enumerate(stages):
        start = clock
        makespan, interruptions = work(index)
        rate = stage.instance.dollars_per_second
        same_type = previous is not None and previous.instance == stage.instance
        if not same_type:
            pool.release_all(clock)
            held = 0
        else:
            assert previous is not None
            held = previous.nodes
            if stage.nodes < held:
                pool.shrink(clock, stage.nodes, spares=launch_s is not None)
        if stage.nodes > held:
            queue, boot = delay(index)
            new = (
                stage.nodes - held - (pool.take_back(clock, stage.nodes - held) if launch_s else 0)
            )
            pool.add(clock + queue, new, rate)
            clock = clock + (queue + boot) * (np.asarray(new) > 0)
        if launch_s is not None:
            makespan = makespan * _spare_speedup(
                stage, pool.spares(clock), clock, launch_s(index), widest
            )
        clock = clock + makespan + interruptions
        if detail:
            per_stage.append((start, clock, pool.cost + pool.accrued(clock)))
        previous = stage
    pool.release_all(clock)
    if detail and per_stage:
        start, end, _ = per_stage[-1]
        per_stage[-1] = (start, end, pool.cost)
    return clock, pool.cost, per_stage
