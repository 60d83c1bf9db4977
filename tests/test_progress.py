"""SeerProgress: the study.optimize bar shows configurations against the plan, the rung, the
ledger's dollars, time left and the best value, from the study itself (a real SQLite study
run by study.optimize with threads)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import optuna
import pytest

from optuna_seer import Budget, ClusterLimits, SeerProgress, SeerPruner, SeerSampler, Workload
from optuna_seer.integration.clock import study_time
from optuna_seer.integration.ledger import read_ledger
from optuna_seer.integration.reruns import rerun_of


def _study(tmp_path: Path) -> optuna.Study:
    pruner = SeerPruner(
        Budget(deadline="1h", dollars=0.1, price_per_gpu_hour=1.0),
        Workload(epoch_seconds=10.0, scaling="linear", max_epochs=9),
        limits=ClusterLimits(max_gpus=4),
        max_configs=27,
    )
    return optuna.create_study(
        direction="maximize",
        storage=f"sqlite:///{tmp_path / 'progress.db'}",
        sampler=SeerSampler(optuna.samplers.RandomSampler(0)),
        pruner=pruner,
    )


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    value = 0.0
    for epoch in range(1, 10):
        value = x * epoch / 9
        trial.report(value, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def test_the_bar_counts_the_plan_and_shows_dollars_rung_and_best(tmp_path: Path) -> None:
    study = _study(tmp_path)
    plan = study.pruner.plan  # type: ignore[attr-defined]
    out = io.StringIO()
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("optuna.optuna_seer")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with SeerProgress(study, refresh_seconds=0.05, disable=False, file=out) as progress:
            study.optimize(_objective, n_jobs=2, callbacks=[progress])
    finally:
        logger.removeHandler(handler)
    last = progress.last
    assert last is not None
    trials = study.get_trials(deepcopy=False)
    # Trials refused beyond the plan are not counted; re-runs of parked finalists are.
    reruns = sum(1 for t in trials if rerun_of(t) is not None)
    assert reruns <= plan.rungs[-1].n_trials
    assert last.finished == last.placed == plan.n_configs + reruns
    assert len(trials) >= plan.n_configs
    assert last.running == 0
    assert last.deepest_rung == len(plan.rungs) - 1
    assert last.best == pytest.approx(study.best_value)
    ledger = read_ledger(study, plan, study_time(study), trials)  # settled: trials ended
    assert last.spent_dollars == pytest.approx(ledger.spent_dollars) and last.spent_dollars > 0
    drawn = out.getvalue()
    assert f"{last.placed}/{last.placed}" in drawn
    assert f"of ${plan.budget_dollars:,.2f}" in drawn and "left, best" in drawn
    # One INFO line per trial end, with the same figures.
    assert sum("of $0.10" in r and "best" in r for r in records) == len(trials)
    assert f"rung {len(plan.rungs) - 1}/{len(plan.rungs) - 1}" in drawn


def test_refused_without_a_seer_pruner_or_with_a_bad_period(tmp_path: Path) -> None:
    plain = optuna.create_study(pruner=optuna.pruners.MedianPruner())
    with pytest.raises(ValueError, match=r"MedianPruner.*pruner=SeerPruner"):
        SeerProgress(plain)
    with pytest.raises(ValueError, match=r"refresh_seconds=0 must be a number > 0"):
        SeerProgress(_study(tmp_path), refresh_seconds=0)


def test_a_failing_read_never_ends_the_study(tmp_path: Path) -> None:
    study = _study(tmp_path)
    progress = SeerProgress(study, disable=True)
    study._storage = None  # type: ignore[assignment]  # every read now raises
    assert progress.refresh() is None
