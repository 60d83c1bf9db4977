"""The placement controller: fewest nodes per trial, small trials packed, clusters reused."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from optuna_seer.planning.placement import (
    ClusterShape,
    OpenCluster,
    place,
    split_across_nodes,
)


def test_a_rung_of_small_trials_packs_into_full_nodes() -> None:
    placement = place({f"t{i}": 1 for i in range(16)}, gpus_per_node=8)
    assert list(placement.new_clusters.values()) == [ClusterShape(1, 8), ClusterShape(1, 8)]
    assert all(slot.nodes == 1 for slot in placement.slots.values())
    assert [len(placement.trials_on(n)) for n in placement.new_clusters] == [8, 8]


def test_large_trials_span_the_fewest_nodes_and_own_their_cluster() -> None:
    placement = place({"big": 16, "odd": 12, "tiny": 1}, gpus_per_node=8)
    assert (placement.slots["big"].nodes, placement.slots["big"].gpus_per_node) == (2, 8)
    assert (placement.slots["odd"].nodes, placement.slots["odd"].gpus_per_node) == (2, 6)
    clusters = {placement.slots[k].cluster for k in ("big", "odd", "tiny")}
    assert len(clusters) == 3


def test_new_nodes_shrink_to_the_smallest_size_that_holds_them() -> None:
    placement = place({"a": 2, "b": 1}, gpus_per_node=8, node_sizes=[1, 2, 4])
    assert list(placement.new_clusters.values()) == [ClusterShape(1, 4)]
    assert place({"a": 8}, 8, node_sizes=[1, 2]).new_clusters["new-0"] == ClusterShape(1, 8)


def test_open_clusters_are_reused_only_where_their_shape_fits() -> None:
    open_clusters = [
        OpenCluster("node-a", ClusterShape(1, 8), free_gpus=3),
        OpenCluster("pair-idle", ClusterShape(2, 8), free_gpus=16),
        OpenCluster("pair-busy", ClusterShape(2, 8), free_gpus=0),
        OpenCluster("quad-idle", ClusterShape(4, 8), free_gpus=32),
    ]
    placement = place(
        {"small": 2, "big": 16, "big2": 16, "medium": 4},
        gpus_per_node=8,
        open_clusters=open_clusters,
    )
    assert placement.slots["small"].cluster == "node-a"
    # One idle 2-node cluster: one 16-GPU trial reuses it, the other needs a new one;
    # the 4-node cluster is never used by a 2-node trial (SkyPilot cannot shrink it either).
    assert {placement.slots["big"].cluster, placement.slots["big2"].cluster} == {
        "pair-idle",
        "new-0",
    }
    assert placement.slots["medium"].cluster == "new-1"  # node-a has 1 GPU left
    assert placement.new_gpus == 16 + 8


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: place({"a": 0}, 8), "GPUs of trial 'a'=0"),
        (lambda: place({"a": 1}, 0), "gpus_per_node=0"),
        (lambda: place({"a": 1}, 8, node_sizes=[16]), "node size 16 exceeds"),
        (lambda: split_across_nodes(4, True), "gpus_per_node=True"),
        (lambda: OpenCluster("x", ClusterShape(1, 8), 9), r"free_gpus=9 must be in \[0, 8\]"),
    ],
)
def test_bad_input_is_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


@settings(max_examples=200, deadline=None)
@given(
    demands=st.lists(st.integers(1, 40), min_size=1, max_size=20),
    gpus_per_node=st.sampled_from([1, 2, 4, 8]),
    free=st.lists(st.integers(0, 8), max_size=4),
)
def test_every_placement_fits_and_uses_the_fewest_nodes(
    demands: list[int], gpus_per_node: int, free: list[int]
) -> None:
    open_clusters = [
        OpenCluster(f"open-{i}", ClusterShape(1, gpus_per_node), min(f, gpus_per_node))
        for i, f in enumerate(free)
    ]
    keyed = {f"t{i}": k for i, k in enumerate(demands)}
    placement = place(keyed, gpus_per_node, open_clusters=open_clusters)
    shapes = {c.name: c.shape for c in open_clusters} | dict(placement.new_clusters)
    load: dict[str, int] = {}
    for key, gpus in keyed.items():
        slot = placement.slots[key]
        assert slot.workers == gpus
        assert slot.nodes == split_across_nodes(gpus, gpus_per_node)[0]
        assert slot.nodes >= math.ceil(gpus / gpus_per_node)
        shape = shapes[slot.cluster]
        assert shape.nodes == slot.nodes and shape.gpus_per_node >= slot.gpus_per_node
        if slot.nodes > 1:
            assert placement.trials_on(slot.cluster) == [key]
        load[slot.cluster] = load.get(slot.cluster, 0) + gpus
    for cluster in open_clusters:
        assert load.get(cluster.name, 0) <= cluster.free_gpus
    for name, shape in placement.new_clusters.items():
        assert 0 < load[name] <= shape.gpus
    # Best-fit never opens a new single node while all trials would fit in fewer.
    single = sum(
        g
        for k, g in keyed.items()
        if placement.slots[k].nodes == 1 and placement.slots[k].cluster in placement.new_clusters
    )
    new_single = [s for s in placement.new_clusters.values() if s.nodes == 1]
    assert len(new_single) <= max(1, 2 * math.ceil(single / gpus_per_node))
