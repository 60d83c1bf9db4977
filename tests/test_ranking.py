"""SEER's ranking rules: promotion by the rung-end value (ties: the mean over the rung, then
the trial number); the final selection by the mean over the last rung, then the last value."""

from __future__ import annotations

import math

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
import pytest

from benchmarks import curves as recorded
from benchmarks.baselines import Scenario, config_order, run_plan
from benchmarks.seer_arm import replay_seer
from optuna_seer import plan_seer
from optuna_seer.backends.replay import RecordedCurve
from optuna_seer.integration.ranking import (
    best_finalist,
    rank_key,
    rank_trials,
    rung_score,
    selection_key,
)

MAX = StudyDirection.MAXIMIZE
MIN = StudyDirection.MINIMIZE


def _trial(number: int, values: dict[int, float]) -> FrozenTrial:
    trial = optuna.trial.create_trial(
        state=TrialState.RUNNING, intermediate_values=values, params={}, distributions={}
    )
    trial.number = number
    return trial


def test_ties_at_the_rung_end_go_to_the_higher_mean_over_the_rung() -> None:
    early = _trial(5, {1: 0.5, 2: 0.9, 3: 0.9, 4: 0.9})  # reached 0.9 first
    late = _trial(2, {1: 0.9, 2: 0.5, 3: 0.6, 4: 0.9})
    better = _trial(9, {1: 0.1, 2: 0.1, 3: 0.1, 4: 0.95})
    ranked = rank_trials([late, early, better], since_step=1, rung_end=4, direction=MAX)
    # The rung-end value decides first; step 1 (the previous rung) does not count.
    assert [t.number for t in ranked] == [9, 5, 2]
    assert rung_score(late, 1, 4) == (0.9, pytest.approx((0.5 + 0.6 + 0.9) / 3))


def test_a_full_tie_goes_to_the_lower_trial_number_and_minimize_flips_the_order() -> None:
    a, b = _trial(4, {1: 0.3, 2: 0.2}), _trial(3, {1: 0.3, 2: 0.2})
    assert [t.number for t in rank_trials([a, b], 0, 2, MAX)] == [3, 4]
    low, high = _trial(1, {1: 0.4, 2: 0.2}), _trial(0, {1: 0.6, 2: 0.2})
    assert [t.number for t in rank_trials([high, low], 0, 2, MIN)] == [1, 0]
    assert rank_key(low, 0, 2, MIN) == (0.2, pytest.approx(0.3), 1)


def test_the_rung_end_is_the_first_step_at_or_past_it_and_a_cut_trial_its_last() -> None:
    past = _trial(0, {2: 0.4, 5: 0.8, 6: 0.99})
    assert rung_score(past, 1, 4) == (0.8, pytest.approx(0.6))  # step 6 is after the rung
    cut = _trial(1, {2: 0.4, 3: 0.5})
    assert rung_score(cut, 1, 4) == (0.5, pytest.approx(0.45))
    idle = _trial(2, {1: 0.7})  # nothing after the previous rung: its last value alone
    assert rung_score(idle, 1, 4) == (0.7, 0.7)


def test_non_finite_values_inside_the_rung_are_left_out_but_not_at_its_end() -> None:
    assert rung_score(_trial(0, {1: math.nan, 2: 0.5, 3: 0.7}), 0, 3) == (0.7, pytest.approx(0.6))
    with pytest.raises(ValueError, match=r"trial 1 reported nan at step 3"):
        rung_score(_trial(1, {2: 0.5, 3: math.nan}), 0, 3)


def test_bad_input_names_the_value_and_what_is_valid() -> None:
    trial = _trial(0, {1: 0.5})
    with pytest.raises(ValueError, match=r"since_step=3 and rung_end=3: need 0 <= since_step"):
        rung_score(trial, 3, 3)
    with pytest.raises(ValueError, match=r"since_step=-1"):
        rung_score(trial, -1, 3)
    with pytest.raises(TypeError, match=r"rung_end=2.5 must be an int"):
        rung_score(trial, 0, 2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"since_step=True must be an int"):
        rung_score(trial, True, 2)
    with pytest.raises(ValueError, match=r"trial 4 reported no value"):
        rung_score(_trial(4, {}), 0, 2)
    with pytest.raises(ValueError, match=r"direction=.*NOT_SET.*must be MAXIMIZE or MINIMIZE"):
        rank_key(trial, 0, 1, StudyDirection.NOT_SET)


def test_the_final_pick_prefers_the_higher_last_rung_mean_to_a_lucky_last_value() -> None:
    # The last rung runs from step 4 to step 9; epochs before it do not count.
    steady = _trial(0, {4: 0.2, 6: 0.92, 8: 0.92, 9: 0.92})
    lucky = _trial(1, {4: 0.99, 6: 0.85, 8: 0.86, 9: 0.95})
    assert best_finalist([lucky, steady], 4, 9, MAX) is steady
    # Promotion (a rung that is not the last) still compares the rung-end value first.
    assert rank_trials([steady, lucky], 4, 9, MAX)[0] is lucky
    assert selection_key(steady, 4, 9, MAX) == (pytest.approx(-0.92), -0.92, math.inf, 0)
    # Equal means: the last value decides, then the trial number; minimize flips the order.
    a, b = _trial(2, {1: 0.3, 2: 0.5}), _trial(3, {1: 0.5, 2: 0.3})
    assert best_finalist([a, b], 0, 2, MAX) is a
    assert best_finalist([a, b], 0, 2, MIN) is b
    assert best_finalist([_trial(5, {1: 0.4}), _trial(4, {1: 0.4})], 0, 1, MAX).number == 4
    with pytest.raises(ValueError, match=r"direction=.*NOT_SET.*must be MAXIMIZE or MINIMIZE"):
        selection_key(a, 0, 2, StudyDirection.NOT_SET)


def test_a_one_rung_plan_selects_by_the_last_value_not_by_how_fast_a_curve_rose() -> None:
    # No promotion happened: the mean over the rung would be the mean over the whole curve.
    fast = _trial(0, {1: 0.8, 2: 0.85, 3: 0.86})
    slow_but_higher = _trial(1, {1: 0.1, 2: 0.5, 3: 0.9})
    assert best_finalist([fast, slow_but_higher], 0, 3, MAX) is slow_but_higher
    value, mean, number = rank_key(slow_but_higher, 0, 3, MAX)
    assert selection_key(slow_but_higher, 0, 3, MAX) == (value, mean, math.inf, number)
    # After a promotion (since_step 1) the same values rank by the mean over steps 2-3.
    assert best_finalist([fast, slow_but_higher], 1, 3, MAX) is fast


def test_best_finalist_skips_trials_without_values_and_is_none_without_any() -> None:
    silent, good = _trial(0, {}), _trial(1, {3: 0.2, 9: 0.8})
    assert best_finalist([silent, good], 3, 9, MAX) is good
    assert best_finalist([silent], 3, 9, MAX) is None
    assert best_finalist([], 3, 9, MAX) is None


EPOCHS = 9


def _tied_at_the_end(n: int) -> recorded.CurveSet:
    """Configuration ``i`` holds a plateau of its own for ``EPOCHS - 1`` epochs, then every
    one reports 0.9: the finalists tie at their last epoch."""
    plateau = [0.5 + 0.3 * ((7 * i) % n) / n for i in range(n)]
    return recorded.CurveSet(
        dataset="ties",
        configs=tuple({"config_id": i} for i in range(n)),
        curves=tuple(
            RecordedCurve(val_acc=(p,) * (EPOCHS - 1) + (0.9,), test_acc=(p,) * EPOCHS)
            for p in plateau
        ),
        epoch_seconds=tuple(0.01 for _ in range(n)),
    )


def test_the_elastic_tuner_reports_the_finalist_its_rung_rule_ranks_first() -> None:
    """Every configuration ends at 0.9 validation accuracy, from different plateaus. The
    tuner's best trial is the finalist with the highest mean over the last rung, not the
    lowest trial number (what ``study.best_trial`` would give)."""
    n = 18
    curve_set = _tied_at_the_end(n)
    scenario = Scenario("ties", deadline_s=1800.0, dollars=6.0, scaling="babi")
    study, result, _ = replay_seer(scenario, curve_set, seed=0)
    assert len(result.plan.rungs) > 1
    finalists = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(finalists) > 1 and {t.value for t in finalists} == {0.9}
    since = result.final_plan.rungs[-2].resource
    expected = min(finalists, key=lambda t: selection_key(t, since, EPOCHS, MAX))
    assert result.best_trial is not None and result.best_trial.number == expected.number
    # The tie-break decided: Optuna's best_trial would take the lowest-numbered finalist.
    assert expected.number != min(t.number for t in finalists)


def test_the_static_plan_ranks_its_finalists_by_the_same_rule() -> None:
    n = 18
    curve_set = _tied_at_the_end(n)
    plateau = [c.val_acc[0] for c in curve_set.curves]
    scenario = Scenario("ties", deadline_s=1800.0, dollars=6.0, scaling="babi")
    plan = plan_seer(scenario.budget, scenario.workload(EPOCHS), 3, max_configs=n)
    outcome = run_plan("static-plan", plan, scenario, curve_set, seed=0)
    started = config_order(n, 0)[: plan.n_configs]
    # Every finalist ends at 0.9; the one with the highest plateau (last-rung mean) wins.
    assert outcome.config_id == max(started, key=lambda c: plateau[c])
