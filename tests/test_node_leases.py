"""The per-node lease model (``planning/node_leases.py``): which nodes a shrink releases, what
each lease bills, and the planner searching shrinks and grows in place under it."""

from __future__ import annotations

import numpy as np
import pytest

from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.node_leases import NodePool, node_lease_run, release_key
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.rubberband import PlanningProblem, SuccessiveHalvingJob, plan_rubberband
from optuna_seer.planning.simulator import CloudModel, simulate
from optuna_seer.planning.stage_plan import ElasticPlan, Stage

HOURLY = BillingRule.parse("per-hour")
NODE = PriceQuote("gpu1", "V100", 1, 3600.0)  # $1 a node-second: costs read as seconds


def test_a_shrink_releases_the_nodes_whose_paid_hour_ends_soonest() -> None:
    pool = NodePool(HOURLY, samples=2)
    pool.add(np.array([0.0, 0.0]), 2, dollars_per_second=1.0)  # paid to 3600 s
    pool.add(np.array([3000.0, 1000.0]), 1, dollars_per_second=1.0)
    # At 3500 s: sample 0's late node has 3100 s paid left, the first two 100 s each, so two
    # of those go; sample 1's late node has 1100 s left: the same. Released: 2 hours each.
    pool.shrink(np.array([3500.0, 3500.0]), keep=1)
    assert pool.cost.tolist() == [7200.0, 7200.0]
    assert pool.nodes.tolist() == [1.0, 1.0]
    # The node kept is the late one: its lease runs on (one hour at 4000 s, two at 4700 s).
    pool.release_all(np.array([4000.0, 4700.0]))
    assert pool.cost.tolist() == [7200.0 + 3600.0, 7200.0 + 7200.0]


def test_release_key_prefers_the_least_paid_time_left_then_the_latest_start() -> None:
    assert release_key(0.0, 3500.0, HOURLY) < release_key(3000.0, 3500.0, HOURLY)
    assert release_key(100.0, 100.0, BillingRule()) < release_key(0.0, 100.0, BillingRule())
    with pytest.raises(ValueError, match=r"dollars_per_second=2\.0 differs"):
        pool = NodePool(HOURLY, 1)
        pool.add(np.zeros(1), 1, 1.0)
        pool.add(np.zeros(1), 1, 2.0)


def test_growing_provisions_only_the_new_nodes_and_a_new_type_releases_all() -> None:
    other = PriceQuote("gpu1b", "V100", 1, 7200.0)
    stages = [Stage(2, 1, 1, NODE, 2), Stage(1, 2, 1, NODE, 3), Stage(1, 3, 1, other, 1)]
    hour = np.full(1, 3600.0)
    jct, cost, detail = node_lease_run(
        stages,
        lambda i: (hour * 0.25, hour * 0),
        lambda i: (hour * 0 + 60.0, hour * 0 + 120.0),
        BillingRule(),
        1,
        True,
    )
    # Each stage 900 s; the first and the grow wait 180 s, the new type too.
    assert jct.tolist() == [3 * 900.0 + 3 * 180.0]
    # Exact billing, from each lease's end of queueing to its release: the first two nodes
    # from 60 s to 2,160 s (the new type), the added one from 1,080 + 60 s, the other type's
    # node (at $2 a node-second) from 2,160 + 60 s to the end.
    first_two = 2 * (2160.0 - 60.0)
    added = 2160.0 - 1140.0
    last = 2 * (3240.0 - 2220.0)
    assert cost.tolist() == [pytest.approx(first_two + added + last)]
    assert [float(start[0]) for start, _, _ in detail] == [0.0, 1080.0, 2160.0]


def test_simulator_bills_per_node_under_coarse_billing_only() -> None:
    profile = Profile(epoch_seconds=600.0, scaling="linear")
    plan = ElasticPlan((Stage(4, 1, 1, NODE, 4), Stage(1, 3, 1, NODE, 1)))
    # 4 nodes for 600 s, one kept 1,200 s more: 4 node-hours per node, 5 per cluster.
    assert simulate(plan, profile, CloudModel(billing="per-hour"), samples=1).cost[0] == 4 * 3600
    clusters = CloudModel(billing="per-hour", node_leases=False)
    assert simulate(plan, profile, clusters, samples=1).cost[0] == 5 * 3600
    with pytest.raises(TypeError, match="node_leases='yes' must be True, False or None"):
        CloudModel(node_leases="yes")  # type: ignore[arg-type]


def test_the_planner_shrinks_in_place_under_per_hour_billing() -> None:
    quote = PriceQuote("p3.2xlarge", "V100", 1, 3.06)
    profile = Profile(epoch_seconds=600, scaling="amdahl:0.95", epoch_cv=0.05, startup_seconds=60)
    job = SuccessiveHalvingJob.geometric(81, 3, 27)
    cloud = CloudModel(queue_seconds=60, boot_seconds=120, provisioning_cv=0.3, billing="per-hour")
    problem = PlanningProblem(job, profile, (quote,), 3.83 * 3600, cloud=cloud, samples=200)
    result = plan_rubberband(problem)
    assert result.static_stats is not None
    assert result.stats.jct_quantile <= problem.deadline_s
    nodes = [s.nodes for s in result.plan.stages]
    assert len(set(nodes)) > 1 and nodes[-1] < nodes[0]  # it shrinks, on one instance type
    # Cheaper than the static cluster by more than rounding, and than the best plan the
    # planner finds when every resize is a new cluster.
    assert result.static_stats.cost / result.stats.cost > 1.1
    whole = PlanningProblem(
        job, profile, (quote,), 3.83 * 3600, cloud=CloudModel(
            queue_seconds=60, boot_seconds=120, provisioning_cv=0.3, billing="per-hour",
            node_leases=False), samples=200,
    )  # fmt: skip
    assert plan_rubberband(whole).stats.cost > result.stats.cost


def test_spares_run_the_next_stage_within_their_paid_hour_and_cost_no_more() -> None:
    # 8 nodes for 1,000 s, then 4 trials of 1,000 s on 1 node: released at the shrink, the
    # 7 others leave it 4 waves; kept as spares (paid to 3,600 s anyway) they run 3 of the
    # trials at once beside it: one wave, and the kept node needs no second hour.
    stages = [Stage(8, 1, 1, NODE, 8), Stage(4, 2, 1, NODE, 1)]
    second = np.full(1, 4000.0)  # 4 waves of 1,000 s

    def run(launch_s: float | None) -> tuple[float, float]:
        jct, cost, _ = node_lease_run(
            stages,
            lambda i: (np.full(1, 1000.0) if i == 0 else second, np.zeros(1)),
            lambda i: (np.zeros(1), np.zeros(1)),
            HOURLY,
            1,
            False,
            launch_s=None if launch_s is None else (lambda i: launch_s),
        )
        return float(jct[0]), float(cost[0]) / 3600

    assert run(None) == (5000.0, 9.0)  # 7 released at 1,000 s (1 h), 1 kept for 5,000 s (2 h)
    assert run(1000.0) == (2000.0, 8.0)  # 7 spares (1 h each), 1 kept for 2,000 s (1 h)
    # A launch that would outlast the spares' paid hour is not given to them.
    assert run(2700.0) == (5000.0, 9.0)
    # A later grow takes spares back: no new lease, so no second hour of boot for them.
    pool = NodePool(HOURLY, samples=1)
    pool.add(np.zeros(1), 4, dollars_per_second=1.0)
    pool.shrink(np.full(1, 600.0), keep=1, spares=True)
    assert pool.take_back(np.full(1, 1200.0), 2).tolist() == [2.0]
    assert pool.nodes.tolist() == [3.0]
    pool.release_all(np.full(1, 1800.0))
    assert pool.cost.tolist() == [4 * 3600.0]


def test_the_simulator_uses_spares_under_node_leases_unless_told_not_to() -> None:
    prof = Profile(epoch_seconds=600, scaling="linear", startup_seconds=60)
    plan = ElasticPlan((Stage(9, 1, 1, NODE, 9), Stage(3, 3, 1, NODE, 1)))
    hourly = CloudModel(billing="per-hour")
    spares = simulate(plan, prof, hourly, samples=1)
    without = simulate(plan, prof, CloudModel(billing="per-hour", spare_nodes=False), samples=1)
    assert spares.jct[0] == pytest.approx(660.0 + 1260.0)  # one wave instead of three
    assert without.jct[0] == pytest.approx(660.0 + 3 * 1260.0)
    assert spares.cost[0] <= without.cost[0]
