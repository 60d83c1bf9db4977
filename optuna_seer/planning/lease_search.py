"""Hour-aware joint search over per-stage clusters under per-node leases.

Under coarse billing (whole hours, one-hour minimum) what a plan costs depends on where its
stage ends fall in each node's paid hours: a node released just before an hour ends wastes
nothing, one released just after pays a whole hour more. Single-stage moves rarely find the
plans whose several stage ends all fall just before hour boundaries, because changing one
stage moves every later boundary. :func:`joint_lease_plans` enumerates the per-stage choices
*jointly*, depth first, on a deterministic version of the node-lease model
(:mod:`~optuna_seer.planning.node_leases`: mean stage times and provisioning delays, nodes
kept across stages of one instance type, a shrink releasing the nodes whose paid time ends
soonest), pruned by two bounds:

* time: the clock plus the least time the remaining stages can take must meet the deadline;
* cost: what the prefix has spent (released leases, and the held leases rounded up at the
  current clock), plus the least unrounded cost of the remaining stages beyond the paid time
  the held nodes have left, must beat the ``keep``-th cheapest plan found so far.

It returns the ``keep`` cheapest plans; the planner simulates them (the deterministic model
knows neither stragglers nor the spread of delays) and searches on from the best. Pure:
standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import heapq
import itertools

from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.node_leases import release_key
from optuna_seer.planning.stage_plan import ElasticPlan, Stage

__all__ = ["TimedStage", "joint_lease_plans"]


@dataclass(frozen=True)
class TimedStage:
    """A stage option with the seconds its work takes (provisioning excluded)."""

    stage: Stage
    seconds: float

    @property
    def work_cost(self) -> float:
        """Its nodes' dollars for its own time, unrounded."""
        return self.stage.nodes * self.stage.instance.dollars_per_second * self.seconds


def _release(
    leases: list[tuple[float, int]], now: float, keep: int, billing: BillingRule
) -> tuple[list[tuple[float, int]], float]:
    """Keep ``keep`` nodes of ``leases`` ((start, count) groups); return them and the node
    seconds billed for the released ones."""
    order = sorted(leases, key=lambda lease: release_key(lease[0], now, billing))
    extra = sum(count for _, count in leases) - keep
    billed = 0.0
    kept: list[tuple[float, int]] = []
    for start, count in order:
        take = min(count, max(extra, 0))
        if take:
            billed += take * billing.billed_seconds(max(now - start, 0.0))
            extra -= take
        if count - take:
            kept.append((start, count - take))
    return kept, billed


def joint_lease_plans(
    options: Sequence[Sequence[TimedStage]],
    deadline_s: float,
    billing: BillingRule,
    queue_s: float,
    boot_s: float,
    keep: int = 24,
    max_nodes_visited: int = 20_000,
) -> list[tuple[float, float, ElasticPlan]]:
    """The ``keep`` cheapest plans (deterministic cost, finish time, plan) that meet
    ``deadline_s`` in the deterministic node-lease model, cheapest first.

    Args:
        options: Per stage, its candidate stages with their work seconds.
        deadline_s: The finish time a plan must meet (deterministic: mean times).
        billing: How each node's lease is rounded.
        queue_s: Mean unbilled wait of new nodes.
        boot_s: Mean billed boot of new nodes.
        keep: How many plans to return.
        max_nodes_visited: Stop the enumeration after this many partial plans (a bound on
            planning time; the cheapest plans found so far are returned).

    Example:
        >>> from optuna_seer.planning.prices import PriceQuote
        >>> q = PriceQuote("gpu1", "V100", 1, 3600.0)  # $1 a node-second
        >>> first = [TimedStage(Stage(4, 1, 1, q, n), 3000.0 * 4 / n) for n in (1, 2, 4)]
        >>> second = [TimedStage(Stage(2, 2, 1, q, n), 1200.0 * 2 / n) for n in (1, 2)]
        >>> hourly = BillingRule.parse("per-hour")
        >>> cost, end, plan = joint_lease_plans([first, second], 9000.0, hourly, 0.0, 0.0)[0]
        >>> # 2 nodes × 2 h: the second stage fills their second paid hour (4 nodes, then 2,
        >>> # would pay 2 × 1 h + 2 × 2 h; 1 node at the end, a third hour for it)
        >>> [s.nodes for s in plan.stages], cost / 3600, end
        ([2, 2], 4.0, 7200.0)
    """
    rungs = len(options)
    ordered = [sorted(opts, key=lambda o: (o.work_cost, o.seconds)) for opts in options]
    if any(not opts for opts in ordered):
        return []
    least_time = [min(o.seconds for o in opts) for opts in ordered]
    least_cost = [min(o.work_cost for o in opts) for opts in ordered]
    time_tail = [sum(least_time[r:]) for r in range(rungs)] + [0.0]
    cost_tail = [sum(least_cost[r:]) for r in range(rungs)] + [0.0]
    best: list[tuple[float, int, float, tuple[Stage, ...]]] = []  # max-heap by -cost
    counter = itertools.count()
    visited = 0

    def bound() -> float:
        return -best[0][0] if len(best) >= keep else float("inf")

    def descend(
        prefix: tuple[Stage, ...],
        clock: float,
        leases: list[tuple[float, int]],
        spent: float,
    ) -> None:
        nonlocal visited
        r = len(prefix)
        visited += 1
        previous = prefix[-1] if prefix else None
        rate = previous.instance.dollars_per_second if previous is not None else 0.0
        if r == rungs:
            total = spent + rate * sum(
                count * billing.billed_seconds(clock - start) for start, count in leases
            )
            if total < bound():
                item = (-total, next(counter), clock, prefix)
                if len(best) >= keep:
                    heapq.heapreplace(best, item)
                else:
                    heapq.heappush(best, item)
            return
        held_billed = sum(count * billing.billed_seconds(clock - start) for start, count in leases)
        held_used = sum(count * max(clock - start, 0.0) for start, count in leases)
        spare = rate * (held_billed - held_used)
        floor = spent + rate * held_billed + max(cost_tail[r] - spare, 0.0)
        if floor >= bound() or clock + time_tail[r] > deadline_s:
            return
        for option in ordered[r]:
            if visited >= max_nodes_visited:
                return
            stage = option.stage
            now, cost, pool = clock, spent, leases
            if previous is None or previous.instance != stage.instance:
                if pool:
                    cost += rate * sum(
                        count * billing.billed_seconds(now - start) for start, count in pool
                    )
                pool, held = [], 0
            else:
                held = previous.nodes
                if stage.nodes < held:
                    pool, released = _release(pool, now, stage.nodes, billing)
                    cost += rate * released
            if stage.nodes > held:
                pool = [*pool, (now + queue_s, stage.nodes - held)]
                now += queue_s + boot_s
            now += option.seconds
            if now + time_tail[r + 1] > deadline_s:
                continue
            descend((*prefix, stage), now, pool, cost)

    descend((), 0.0, [], 0.0)
    return [
        (-neg, end, ElasticPlan(stages))
        for neg, _, end, stages in sorted(best, key=lambda item: (-item[0], item[1]))
    ]
