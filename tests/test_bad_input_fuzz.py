"""Malformed inputs to the core: always a ValueError/TypeError that names the bad value.

Every junk value that no field of its kind ever accepts (``None``, NaN, infinities, a bool,
a list, a value of the wrong type, a non-positive number where a positive one is required)
must be refused; junk that happens to be valid (the string ``"5"`` as a deadline, a cost of
0) may be accepted.
"""

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

# What a field accepts: enough to tell junk that is never valid from junk that may be.
POSITIVE = "a positive number"
NON_NEGATIVE = "a number >= 0"
POSITIVE_INT = "an int >= 1"
NON_NEGATIVE_INT = "an int >= 0"
DURATION = "a positive duration (number or string)"
SCALING = "a scaling spec (string or table)"

VALID_BUDGET: dict[str, Any] = {"deadline": "1h", "dollars": 10.0, "price_per_gpu_hour": 3.0}
BUDGET_KINDS = {"deadline": DURATION, "dollars": POSITIVE, "price_per_gpu_hour": POSITIVE}
VALID_WORKLOAD: dict[str, Any] = {
    "epoch_seconds": 60.0,
    "scaling": "amdahl:0.9",
    "max_epochs": 9,
    "gpus_per_node": 4,
    "startup_seconds": 0.0,
}
WORKLOAD_KINDS = {
    "epoch_seconds": POSITIVE,
    "scaling": SCALING,
    "max_epochs": POSITIVE_INT,
    "gpus_per_node": POSITIVE_INT,
    "startup_seconds": NON_NEGATIVE,
}
PLANNER_KINDS = {
    "reduction_factor": POSITIVE_INT,
    "min_resource": POSITIVE_INT,
    "min_marginal_speedup": POSITIVE,
    "max_configs": POSITIVE_INT,
}


def never_valid(kind: str, value: object) -> bool:
    """Whether no field of ``kind`` may accept ``value``, whatever else is passed with it."""
    if value is None or isinstance(value, (bool, list)):
        return True
    if isinstance(value, float) and not math.isfinite(value):
        return True
    if isinstance(value, dict):
        return kind != SCALING
    if isinstance(value, str):
        return kind not in (DURATION, SCALING)
    assert isinstance(value, (int, float)), value
    if kind == SCALING or (kind in (POSITIVE_INT, NON_NEGATIVE_INT) and isinstance(value, float)):
        return True
    if kind in (NON_NEGATIVE, NON_NEGATIVE_INT):
        return value < 0
    return value <= 0


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (POSITIVE, None, True),
        (POSITIVE, math.nan, True),
        (POSITIVE, -math.inf, True),
        (POSITIVE, 0.0, True),
        (POSITIVE, "3", True),
        (POSITIVE, True, True),
        (NON_NEGATIVE, 0.0, False),
        (NON_NEGATIVE, -1, True),
        (POSITIVE_INT, -0.0, True),
        (NON_NEGATIVE_INT, 0, False),
        (DURATION, "5m", False),
        (DURATION, 0, True),
        (SCALING, "linear", False),
        (SCALING, {}, False),
        (SCALING, 2.0, True),
        (SCALING, [1], True),
    ],
)
def test_never_valid_classifies_junk(kind: str, value: object, expected: bool) -> None:
    assert never_valid(kind, value) is expected


def _names_it(error: Exception, field: str, value: object) -> bool:
    text = str(error)
    return field in text or repr(value) in text or (str(value) != "" and str(value) in text)


def _rejected(build: Any, field: str, value: object, kind: str) -> None:
    """``build()`` refuses ``value`` for ``field`` naming either, unless ``value`` may be valid."""
    try:
        build()
    except (ValueError, TypeError) as error:
        assert _names_it(error, field, value), f"{error!r} names neither {field} nor {value!r}"
    else:
        assert not never_valid(kind, value), (
            f"{field}={value!r} was accepted, but {field} must be {kind}"
        )


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf, 0, -1.0, "x", [], {}])
def test_rejected_fails_when_junk_is_accepted(value: object) -> None:
    with pytest.raises(AssertionError, match="was accepted"):
        _rejected(lambda: None, "dollars", value, POSITIVE)


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(VALID_BUDGET)), JUNK)
def test_budget_fields(field: str, value: object) -> None:
    kwargs = {**VALID_BUDGET, field: value}
    _rejected(lambda: Budget(**kwargs), field, value, BUDGET_KINDS[field])


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(VALID_WORKLOAD)), JUNK)
def test_workload_fields(field: str, value: object) -> None:
    kwargs = {**VALID_WORKLOAD, field: value}
    _rejected(lambda: Workload(**kwargs), field, value, WORKLOAD_KINDS[field])


@settings(max_examples=80, deadline=None)
@given(
    st.one_of(JUNK, st.dictionaries(st.integers(-3, 40), st.one_of(st.floats(), JUNK), max_size=4))
)
def test_scaling_specs(spec: object) -> None:
    _rejected(lambda: ScalingCurve.parse(spec), "scaling", spec, SCALING)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(PLANNER_KINDS)), JUNK)
def test_planner_arguments(field: str, value: object) -> None:
    budget = Budget(**VALID_BUDGET)
    workload = Workload(**VALID_WORKLOAD)
    kind = PLANNER_KINDS[field]
    if field == "reduction_factor":
        _rejected(lambda: plan_seer(budget, workload, value), field, value, kind)  # type: ignore[arg-type]
    else:
        _rejected(lambda: plan_seer(budget, workload, **{field: value}), field, value, kind)


VALID_PLAN = plan_seer(Budget(**VALID_BUDGET), Workload(**VALID_WORKLOAD)).to_dict()
PLAN_KINDS = {
    "reduction_factor": POSITIVE_INT,
    "deadline_s": POSITIVE,
    "budget_dollars": POSITIVE,
    "price_per_gpu_second": POSITIVE,
    "min_marginal_speedup": POSITIVE,
}
RUNG_KINDS = {
    "index": NON_NEGATIVE_INT,
    "n_trials": POSITIVE_INT,
    "resource": POSITIVE_INT,
    "gpus_per_trial": POSITIVE_INT,
    "concurrent_trials": POSITIVE_INT,
    "waves": POSITIVE_INT,
    "start_s": NON_NEGATIVE,
    "end_s": NON_NEGATIVE,
    "cost": NON_NEGATIVE,
    "epoch_seconds": NON_NEGATIVE,
    "startup_s": NON_NEGATIVE,
}


def test_plan_kinds_cover_every_field() -> None:
    written = set(VALID_PLAN) - {"rungs", "predicted_seconds", "predicted_cost"}
    assert set(PLAN_KINDS) == written
    assert set(RUNG_KINDS) == set(VALID_PLAN["rungs"][0])


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.tuples(st.just("plan"), st.sampled_from(sorted(PLAN_KINDS)), JUNK),
        st.tuples(st.just("rung"), st.sampled_from(sorted(RUNG_KINDS)), JUNK),
    )
)
def test_plan_dicts(mutation: tuple[str, str, object]) -> None:
    where, field, value = mutation
    data = copy.deepcopy(VALID_PLAN)
    if where == "plan":
        data[field] = value
    else:
        data["rungs"][-1][field] = value
    kind = (PLAN_KINDS if where == "plan" else RUNG_KINDS)[field]
    try:
        plan = Plan.from_dict(data)
    except ValueError as error:
        assert field in str(error) or repr(value) in str(error)
    else:  # the junk happened to be valid (e.g. a cost of 0): it must round-trip
        assert not never_valid(kind, value), f"{where} {field}={value!r} accepted; it is {kind}"
        assert Plan.from_dict(plan.to_dict()) == plan


@pytest.mark.parametrize("junk", [None, [], "plan", 3, {"rungs": []}, {"rungs": "x"}])
def test_plan_from_dict_rejects_junk(junk: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        Plan.from_dict(junk)  # type: ignore[arg-type]
