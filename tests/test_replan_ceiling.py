"""benchmarks/replan_ceiling.py: the alternatives it weighs and the rules it replays."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from benchmarks import curves as recorded
from benchmarks import replan_ceiling
from benchmarks.run import SCENARIOS
from benchmarks.rung_rules import plan_for
from optuna_seer.planning.plan import Plan


@pytest.fixture(scope="module")
def plan() -> Plan:
    return plan_for(SCENARIOS[0], recorded.load("wine"), 1)


def test_alternatives_cost_no_more_than_the_plans_remaining_rungs(plan: Plan) -> None:
    today, options = replan_ceiling.shapes(plan)
    start = plan.rungs[0].resource
    assert today in options and len(options) > 1
    assert today.n == tuple(r.n_trials for r in plan.rungs[1:])
    budget = replan_ceiling._work(today, start)
    for shape in options:
        assert replan_ceiling._work(shape, start) <= budget
        assert list(shape.n) == sorted(shape.n, reverse=True)
        assert list(shape.ends) == sorted(set(shape.ends)) and shape.ends[0] > start


def test_a_longer_last_rung_selects_the_late_bloomer() -> None:
    early = np.array([0.8, 0.9, 0.9, 0.9, 0.9, 0.9])  # best after 2 epochs, then flat
    late = np.array([0.7, 0.8, 0.85, 0.95, 0.98, 0.99])  # passes it after epoch 3
    values = {0: early, 1: late}
    short = replan_ceiling.Shape(n=(2,), ends=(3,))
    full = replan_ceiling.Shape(n=(2,), ends=(6,))
    assert replan_ceiling.select(values, [0, 1], 1, short) == 0
    assert replan_ceiling.select(values, [0, 1], 1, full) == 1


def test_the_table_has_a_row_per_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert replan_ceiling.main(["--seeds", "1", "--datasets", "wine"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| wine")]
    assert len(rows) == len(SCENARIOS)
    for row in rows:
        cells = row.split(" | ")
        assert all(0.0 <= float(c.split(": ")[-1].strip(" |")) <= 1.0 for c in cells[2:])


@pytest.mark.parametrize("rule", ["number", "ties", "mean"])
def test_the_array_form_of_a_rule_orders_as_its_key(rule: str) -> None:
    # Values on a coarse grid (36 validation examples) so exact ties are common, NaN for a
    # diverged epoch; trial numbers in no particular order. rule_order (model_choice's form)
    # must rank every row as sorting by rule_key (select's form) does.
    from benchmarks.rung_rules import rule_key, rule_order

    rng = np.random.default_rng(3)
    values = rng.integers(30, 37, size=(40, 8, 5)) / 36.0
    values[rng.random(values.shape) < 0.05] = np.nan
    numbers = rng.permutation(8)
    since, end = 2, 5
    with warnings.catch_warnings():  # a window all NaN: "Mean of empty slice", ranked worst
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values[:, :, since:end], axis=2)
    order = rule_order(values[:, :, end - 1], mean, numbers, rule)
    for row, got in zip(values, order, strict=True):
        want = sorted(range(8), key=lambda i: rule_key(list(row[i]), since, end, numbers[i], rule))
        assert list(got) == want


def test_an_unknown_rule_is_refused_naming_the_valid_ones() -> None:
    from benchmarks.rung_rules import rule_key

    with pytest.raises(ValueError, match=r"rule='best'.*'mean'"):
        rule_key([0.5], 0, 1, 0, "best")
