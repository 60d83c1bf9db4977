"""Malformed inputs to the core: always a ValueError/TypeError that names the bad value."""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from optuna_seer import Budget, Plan, ScalingCurve, Workload, plan_seer

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.integers(-(10**6), 0),
    st.floats(-1e6, 0.0),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)

VALID_BUDGET: dict[str, Any] = {"deadline": "1h", "dollars": 10.0, "price_per_gpu_hour": 3.0}
VALID_WORKLOAD: dict[str, Any] = {
    "epoch_seconds": 60.0,
    "scaling": "amdahl:0.9",
    "max_epochs": 9,
    "gpus_per_node": 4,
    "startup_seconds": 0.0,
}


def _names_it(error: Exception, field: str, value: object) -> bool:
    text = str(error)
    return field in text or repr(value) in text or str(value) in text


def _rejected(build: Any, field: str, value: object) -> None:
    try:
        build()
    except (ValueError, TypeError) as error:
        assert _names_it(error, field, value), f"{error!r} names neither {field} nor {value!r}"
    # Accepting is fine only when the junk happens to be valid (e.g. a numeric string).


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(VALID_BUDGET)), JUNK)
def test_budget_fields(field: str, value: object) -> None:
    kwargs = {**VALID_BUDGET, field: value}
    _rejected(lambda: Budget(**kwargs), field, value)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(VALID_WORKLOAD)), JUNK)
def test_workload_fields(field: str, value: object) -> None:
    kwargs = {**VALID_WORKLOAD, field: value}
    _rejected(lambda: Workload(**kwargs), field, value)


@settings(max_examples=80, deadline=None)
@given(
    st.one_of(JUNK, st.dictionaries(st.integers(-3, 40), st.one_of(st.floats(), JUNK), max_size=4))
)
def test_scaling_specs(spec: object) -> None:
    _rejected(lambda: ScalingCurve.parse(spec), "scaling", spec)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["reduction_factor", "min_resource", "min_marginal_speedup", "max_configs"]),
    JUNK,
)
def test_planner_arguments(field: str, value: object) -> None:
    budget = Budget(**VALID_BUDGET)
    workload = Workload(**VALID_WORKLOAD)
    if field == "reduction_factor":
        _rejected(lambda: plan_seer(budget, workload, value), field, value)  # type: ignore[arg-type]
    else:
        _rejected(lambda: plan_seer(budget, workload, **{field: value}), field, value)


VALID_PLAN = plan_seer(Budget(**VALID_BUDGET), Workload(**VALID_WORKLOAD)).to_dict()
PLAN_FIELDS = sorted(
    k for k in VALID_PLAN if k not in ("rungs", "predicted_seconds", "predicted_cost")
)
RUNG_FIELDS = sorted(VALID_PLAN["rungs"][0])


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.tuples(st.just("plan"), st.sampled_from(PLAN_FIELDS), JUNK),
        st.tuples(st.just("rung"), st.sampled_from(RUNG_FIELDS), JUNK),
    )
)
def test_plan_dicts(mutation: tuple[str, str, object]) -> None:
    where, field, value = mutation
    data = copy.deepcopy(VALID_PLAN)
    if where == "plan":
        data[field] = value
    else:
        data["rungs"][-1][field] = value
    try:
        plan = Plan.from_dict(data)
    except ValueError as error:
        assert field in str(error) or repr(value) in str(error)
    else:  # the junk happened to be valid (e.g. a cost of 0): it must round-trip
        assert Plan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize("junk", [None, [], "plan", 3, {"rungs": []}, {"rungs": "x"}])
def test_plan_from_dict_rejects_junk(junk: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        Plan.from_dict(junk)  # type: ignore[arg-type]
