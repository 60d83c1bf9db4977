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
* a new instance type releases every node and provisions its own.

:func:`node_lease_run` is the simulator's loop under this model (vectorised over Monte Carlo
samples); :func:`release_key` is the order both it and the executor's
``StagedCluster`` release nodes in. Pure: standard library and numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from optuna_seer.planning.billing import BillingRule
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

    def add(self, started_at: Array, count: int, dollars_per_second: float) -> None:
        """``count`` new nodes whose leases (billing) start at ``started_at``."""
        if self._counts and dollars_per_second != self._rate:
            raise ValueError(
                f"dollars_per_second={dollars_per_second!r} differs from the pool's "
                f"{self._rate!r}: release the pool before changing instance type."
            )
        if count < 0:
            raise ValueError(f"count={count!r} must be >= 0.")
        self._rate = dollars_per_second
        if count:
            self._starts.append(np.asarray(started_at, dtype=float))
            self._counts.append(np.full(self.samples, float(count)))

    def release_all(self, now: Array) -> None:
        """Release every node at ``now``: each billed its whole lease, rounded."""
        for start, count in zip(self._starts, self._counts):
            self.cost = self.cost + self._rate * count * self.billing.billed_array(now - start)
        self._starts, self._counts = [], []

    def shrink(self, now: Array, keep: int) -> None:
        """Release all but ``keep`` nodes at ``now``, in :func:`release_key` order."""
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
            self.cost = self.cost + self._rate * take * paid
            np.put_along_axis(counts, group, (have - take)[None, :], axis=0)
            extra = extra - take
        kept = [i for i in range(len(counts)) if counts[i].any()]
        self._starts = [starts[i] for i in kept]
        self._counts = [counts[i] for i in kept]


def node_lease_run(
    stages: Sequence[Stage],
    work: Callable[[int], tuple[Array, Array]],
    delay: Callable[[int], tuple[Array, Array]],
    billing: BillingRule,
    samples: int,
    detail: bool,
) -> tuple[Array, Array, list[tuple[Array, Array, Array]]]:
    """Completion time and cost samples of ``stages`` under the node-lease model.

    Args:
        stages: The plan's stages.
        work: ``work(index) -> (makespan, interruption delay)`` samples of stage ``index``.
        delay: ``delay(index) -> (queue, boot)`` samples of nodes provisioned at ``index``.
        billing: How each node's lease is rounded.
        samples: Monte Carlo samples.
        detail: Also return, per stage, (start, end, cumulative cost) samples.

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
                pool.shrink(clock, stage.nodes)
        if stage.nodes > held:
            queue, boot = delay(index)
            pool.add(clock + queue, stage.nodes - held, rate)
            clock = clock + queue + boot
        clock = clock + makespan + interruptions
        if detail:
            per_stage.append((start, clock, pool.cost + pool.accrued(clock)))
        previous = stage
    pool.release_all(clock)
    if detail and per_stage:
        start, end, _ = per_stage[-1]
        per_stage[-1] = (start, end, pool.cost)
    return clock, pool.cost, per_stage
