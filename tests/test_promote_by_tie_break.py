"""``SeerPruner(promote_by="tie_break")``: rung decisions rank by the tie-break metric the
workers report with each value (a validation loss), the final selection by the value.

Each test builds a case where the value and the loss disagree, so it fails when the pruner
ranks by the value alone.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer import (
    Budget,
    ClusterLimits,
    Plan,
    SeerPruner,
    SeerSampler,
    WorkerPool,
    Workload,
    rungs,
)
from optuna_seer._optuna import storage_of, trial_id_of
from optuna_seer.integration.keys import TRIAL_LEASE, rung_end_key, rung_rank, stop_reason
from optuna_seer.integration.ranking import best_finalist
from optuna_seer.integration.tie_break import TieBreak, record_tie_break
from optuna_seer.planning.learning_curves import CurvePrior
from tests.clocks import SimulatedClock
from tests.test_pruner_sampler import three_rung_pruner
from tests.test_trial_rungs import WORKER, pool_plan


def nine_trial_plan() -> Plan:
    pruner = SeerPruner(
        Budget(deadline="2h", dollars=5.0, price_per_gpu_hour=3.0),
        Workload(epoch_seconds=60, scaling="amdahl:0.9", max_epochs=9, gpus_per_node=4),
        reduction_factor=3,
        limits=ClusterLimits(max_gpus=16),
    )
    return pruner.plan


def report(study: optuna.Study, trial: optuna.Trial, step: int, value: float, loss: float) -> None:
    """What a worker with ``SeerCallback(tie_break="val_loss")`` writes after an epoch."""
    trial.report(value, step)
    record_tie_break(storage_of(study), trial_id_of(trial), step, TieBreak("val_loss", loss))


def study_with(plan: Plan, promote_by: str, storage: object = None) -> optuna.Study:
    return optuna.create_study(
        direction="maximize",
        storage=storage,  # type: ignore[arg-type]
        pruner=SeerPruner(plan=plan, promote_by=promote_by),
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
    )


@pytest.mark.parametrize("promote_by", ["value", "tie_break"])
def test_a_synchronous_rung_keeps_the_lowest_losses(storage: object, promote_by: str) -> None:
    plan = nine_trial_plan()
    first, keep = plan.rungs[0], plan.rungs[1].n_trials
    study = study_with(plan, promote_by, storage)
    trials = [study.ask() for _ in range(first.n_trials)]
    n = len(trials)
    # The later the trial, the higher its value and the higher (worse) its loss: the two
    # rules keep opposite ends of the rung.
    for trial in trials:
        k = trial.number
        report(study, trial, first.resource, 0.5 + k / (2 * n), 0.1 + k / n)
    value_order = sorted(range(n), key=lambda k: -k)
    loss_order = sorted(range(n), key=lambda k: k)
    decision = study.pruner.decide_rung(study, 0)  # type: ignore[attr-defined]
    expected = (loss_order if promote_by == "tie_break" else value_order)[:keep]
    assert sorted(decision.promoted) == sorted(expected)
    for trial in trials:
        assert trial.should_prune() is (trial.number in decision.eliminated)


def test_a_trial_without_a_loss_at_its_rung_end_ranks_after_those_with_one() -> None:
    plan = nine_trial_plan()
    first, keep = plan.rungs[0], plan.rungs[1].n_trials
    study = study_with(plan, "tie_break")
    trials = [study.ask() for _ in range(first.n_trials)]
    silent = trials[0]
    silent.report(0.99, first.resource)  # the best value, but no loss reported
    for trial in trials[1:]:
        report(study, trial, first.resource, 0.5, 0.5 + trial.number / 100)
    decision = study.pruner.decide_rung(study, 0)  # type: ignore[attr-defined]
    assert silent.number in decision.eliminated
    assert sorted(decision.promoted) == list(range(1, keep + 1))


def verdict_of_last(promote_by: str) -> tuple[bool, str | None, dict[str, object]]:
    """The asynchronous verdict on the last of a rung's trials to report: it has the best
    value at the rung's end and the worst loss."""
    plan = nine_trial_plan()
    first = plan.rungs[0]
    study = study_with(plan, promote_by)
    trials = [study.ask() for _ in range(first.n_trials)]
    *others, last = trials
    for trial in others:
        report(study, trial, first.resource, 0.5 + trial.number / 100, 0.2 + trial.number / 100)
        trial.should_prune()
    report(study, last, first.resource, 0.95, 5.0)
    pruned = last.should_prune()
    record = storage_of(study).get_trial_system_attrs(trial_id_of(last))[rung_end_key(0)]
    return pruned, stop_reason(study.trials[last.number]), record


def test_an_asynchronous_rung_end_ranks_by_the_loss_and_records_it() -> None:
    pruned, reason, record = verdict_of_last("tie_break")
    assert pruned, "the worst loss of the rung is not in its top third"
    assert reason is not None and reason.startswith("rung 0:")
    assert record["value"] == pytest.approx(0.95)  # the record still shows the value
    assert record["rank"] == [pytest.approx(-5.0), pytest.approx(0.95)]
    assert rung_rank({rung_end_key(0): record}, 0) == (-5.0, 0.95)
    pruned, _, record = verdict_of_last("value")
    assert not pruned and "rank" not in record


def test_the_final_selection_still_ranks_by_the_value() -> None:
    """Promotion by the loss does not change what the study reports as best: the finalist
    with the best value over the last rung, whatever its loss."""
    study = optuna.create_study(direction="maximize")
    good_value = optuna.trial.create_trial(value=0.9, intermediate_values={9: 0.9})
    good_loss = optuna.trial.create_trial(value=0.8, intermediate_values={9: 0.8})
    good_value.number, good_loss.number = 0, 1
    for trial, loss in ((good_value, 0.9), (good_loss, 0.1)):
        trial.system_attrs["seer:tie_break"] = {
            "name": "val_loss",
            "mode": "min",
            "step": 9,
            "value": loss,
        }
    best = best_finalist([good_loss, good_value], 3, 9, study.direction)
    assert best is not None and best.number == 0


def test_bad_promotion_rules_are_refused_with_the_valid_ones() -> None:
    plan = nine_trial_plan()
    with pytest.raises(ValueError, match=r"promote_by='loss'.*'value', 'tie_break'"):
        SeerPruner(plan=plan, promote_by="loss")
    with pytest.raises(ValueError, match="two promotion rules"):
        SeerPruner(plan=plan, promote_by="tie_break", curve_prior=CurvePrior([[0.1, 0.2]] * 3))


@pytest.mark.slow
@pytest.mark.parametrize("promote_by", ["value", "tie_break"])
def test_study_optimize_on_leased_workers_promotes_the_lowest_loss(
    promote_by: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``study.optimize(n_jobs=2)`` with ``rungs()`` and real worker processes that report
    ``x * epoch`` and a loss that rises with ``x``: the trial that trains the last rung (on
    two workers) is the highest ``x`` by value, the lowest by the loss."""
    monkeypatch.setenv("SEER_TEST_LOG", str(tmp_path / "launches.jsonl"))
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'seer.db'}",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=SeerPruner(plan=pool_plan(), promote_by=promote_by),
    )
    pool = WorkerPool("test", 2)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.1, 1.0)
        value = float("nan")
        for rung in rungs(trial, pool=pool, checkpoints=tmp_path / "ckpt", poll_seconds=0.1):
            value = rung.run(WORKER, {"x": x, "loss": x, "sleep": 0.3})
        return value

    study.optimize(objective, n_jobs=2)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 1 and complete[0].last_step == 3
    xs = [t.params["x"] for t in study.trials if 1 in t.intermediate_values]
    chosen = max(xs) if promote_by == "value" else min(xs)
    assert complete[0].params["x"] == chosen


def test_a_displaced_trial_is_told_its_value_not_its_signed_loss() -> None:
    """A stop reason names the trial's value at the rung; ranked by the loss, the rank starts
    with the signed loss (-0.8 here), which it used to print as if it were the value."""
    clock = SimulatedClock()
    study = optuna.create_study(
        direction="maximize",
        pruner=three_rung_pruner(clock, width=3, promote_by="tie_break"),
        sampler=SeerSampler(clock=clock),
    )
    early, late = study.ask(), study.ask()
    for trial in (early, late):  # on leased workers: promoted early, displaced later
        storage_of(study).set_trial_system_attr(trial_id_of(trial), TRIAL_LEASE, None)
    report(study, early, 1, 0.6, loss=0.8)
    assert not early.should_prune()
    report(study, late, 1, 0.5, loss=0.3)  # the lower value, the lower loss
    assert not late.should_prune()
    report(study, early, 2, 0.7, loss=0.7)
    assert early.should_prune()
    reason = stop_reason(study.trials[early.number])
    assert reason == (
        "rung 0: displaced, 1 trials beat 0.6 (ranked by its tie-break metric first) and the "
        "plan keeps 1"
    )
