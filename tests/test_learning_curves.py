"""Curve-aware promotion: CurvePrior's extrapolation, its ranking key, and SeerPruner's opt-in."""

from __future__ import annotations

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState
import pytest

from optuna_seer import SeerPruner, SeerSampler, Workload
from optuna_seer.integration.ranking import curve_rank_key, rank_key
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.learning_curves import CurvePrior
from optuna_seer.planning.plan import Plan

BLOOMER = [0.2, 0.4, 0.6, 0.8, 0.95]
PLATEAU = [0.6, 0.65, 0.68, 0.7, 0.7]
PRIOR = CurvePrior([BLOOMER, PLATEAU, [0.21, 0.41, 0.62, 0.79, 0.93]], bandwidth=0.05)


def test_prediction_follows_the_curves_the_trial_resembles() -> None:
    bloomer = PRIOR.predict([1, 2], [0.22, 0.41], max_epochs=5)
    plateau = PRIOR.predict([1, 2], [0.61, 0.66], max_epochs=5)
    assert bloomer.mean == pytest.approx(0.41 + 0.53, abs=0.02)  # gains what bloomers gained
    assert plateau.mean == pytest.approx(0.66 + 0.05, abs=0.01)
    assert bloomer.mean > plateau.mean
    # Halfway between the two kinds: the prediction is uncertain.
    between = PRIOR.predict([1], [0.4], max_epochs=5)
    assert between.sd > 10 * plateau.sd


def test_epochs_are_matched_as_fractions_of_training() -> None:
    # A 10-epoch study's epoch 4 is the 5-epoch prior's epoch 2.
    assert PRIOR.predict([4], [0.4], max_epochs=10).mean == pytest.approx(
        PRIOR.predict([2], [0.4], max_epochs=5).mean
    )


def test_optimism_moves_the_score_towards_better_in_either_direction() -> None:
    hopeful = CurvePrior(PRIOR.curves, bandwidth=0.2, optimism=1.0)
    prediction = hopeful.predict([1], [0.4], 5)
    assert hopeful.score([1], [0.4], 5) == pytest.approx(prediction.mean + prediction.sd)
    assert hopeful.score([1], [0.4], 5, maximize=False) == pytest.approx(
        prediction.mean - prediction.sd
    )


def _trial(number: int, values: dict[int, float]) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        state=TrialState.RUNNING, intermediate_values=values, params={}, distributions={}
    )
    trial.number = number
    return trial


def test_curve_rank_key_reverses_the_rung_end_order_for_crossing_curves() -> None:
    bloomer, plateau = _trial(0, {1: 0.2}), _trial(1, {1: 0.6})
    maximize = StudyDirection.MAXIMIZE
    assert rank_key(plateau, 0, 1, maximize) < rank_key(bloomer, 0, 1, maximize)
    assert curve_rank_key(bloomer, 0, 1, maximize, PRIOR, 5) < curve_rank_key(
        plateau, 0, 1, maximize, PRIOR, 5
    )
    # A loss: the same prior negated; lower predicted loss first.
    losses = CurvePrior([[-v for v in c] for c in PRIOR.curves], bandwidth=0.05)
    minimize = StudyDirection.MINIMIZE
    low_start, high_start = _trial(2, {1: -0.2}), _trial(3, {1: -0.6})
    assert curve_rank_key(high_start, 0, 1, minimize, losses, 5) > curve_rank_key(
        low_start, 0, 1, minimize, losses, 5
    )
    nan_inside = _trial(4, {1: float("nan"), 2: 0.4})  # a non-finite epoch is left out
    assert curve_rank_key(nan_inside, 0, 2, maximize, PRIOR, 5)[1] == -0.4


def _plan() -> Plan:
    workload = Workload(epoch_seconds=10.0, scaling="linear", max_epochs=5)
    rungs = schedule([RungShape(4, 1, 1), RungShape(2, 5, 1)], workload, 0.001, ClusterLimits())
    return Plan(rungs, 2, 1e6, 1e6, 0.001, 0.2)


@pytest.mark.parametrize("curve_aware", [False, True])
def test_seer_pruner_promotes_by_the_prior_only_when_asked(curve_aware: bool) -> None:
    pruner = SeerPruner(plan=_plan(), curve_prior=PRIOR if curve_aware else None)
    study = optuna.create_study(
        direction="maximize",
        pruner=pruner,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
    )
    starts = [0.62, 0.21, 0.6, 0.19]  # plateaus: trials 0 and 2; bloomers: 1 and 3
    for value in starts:
        study.ask().report(value, 1)
    decision = pruner.decide_rung(study, 0)
    assert sorted(decision.promoted) == ([1, 3] if curve_aware else [0, 2])


def test_bad_priors_are_refused() -> None:
    with pytest.raises(ValueError, match="2 or more epochs"):
        CurvePrior([[0.5]])
    with pytest.raises(ValueError, match="non-finite"):
        CurvePrior([[float("nan"), float("inf")]])
    with pytest.raises(ValueError, match="bandwidth=0"):
        CurvePrior([[0.1, 0.2]], bandwidth=0)
    with pytest.raises(ValueError, match="optimism=nan"):
        CurvePrior([[0.1, 0.2]], optimism=float("nan"))
    with pytest.raises(ValueError, match="increasing"):
        PRIOR.predict([2, 1], [0.1, 0.2], 5)
    with pytest.raises(ValueError, match="past max_epochs"):
        PRIOR.predict([6], [0.1], 5)
    with pytest.raises(ValueError, match="finite"):
        PRIOR.predict([1], [float("nan")], 5)
    with pytest.raises(TypeError, match="CurvePrior"):
        SeerPruner(plan=_plan(), curve_prior=[[0.1, 0.2]])  # type: ignore[arg-type]


def test_rung_rules_ablation_replays_curve_aware_promotion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import curves as recorded
    from benchmarks import rung_rules
    from benchmarks.run import SCENARIOS

    wine, digits = recorded.load("wine"), recorded.load("digits")
    plan = rung_rules.plan_for(SCENARIOS[0], wine, 1)
    today = [rung_rules.select(wine, plan, s, "number", "mean, loss") for s in range(5)]
    # A prior so wide it predicts every curve gains the same: the rung-end order again (its
    # ties to the lower trial number, the "number" rule).
    flat = CurvePrior([list(c.val_acc) for c in digits.curves], bandwidth=1e6)
    assert [rung_rules.select(wine, plan, s, "ties", "mean, loss", flat) for s in range(5)] == (
        today
    )
    rung_rules.ablations(["breast_cancer", "wine"], recorded.CURVES_DIR, seeds=2)
    out = capsys.readouterr().out
    assert "Curve-aware promotion" in out and "Plan objective" in out
    assert out.count("| wine |") == 6
