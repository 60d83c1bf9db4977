"""The overhead benchmark's pre-fill: one transaction, the same trials as ``add_trials``."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
import pytest

from benchmarks.overhead import (
    insert_trials,
    prefill,
    probe_one,
    seer_history,
    seer_pruner,
    sha_history,
)
from optuna_seer import SeerSampler
from optuna_seer.integration.keys import stop_reason
from optuna_seer.integration.ledger import read_ledger


@pytest.mark.parametrize("kind", ["sha", "seer"])
def test_bulk_insert_stores_what_add_trials_stores(kind: str, tmp_path: Path) -> None:
    history = sha_history(60) if kind == "sha" else seer_history(60, seer_pruner(100).plan, 0.0)
    assert {t.state for t in history} == {TrialState.COMPLETE, TrialState.PRUNED}
    bulk, one_by_one = (
        optuna.create_study(storage=f"sqlite:///{tmp_path / name}.db") for name in ("a", "b")
    )
    insert_trials(bulk, history)
    one_by_one.add_trials(history)
    for a, b in zip(bulk.trials, one_by_one.trials, strict=True):
        assert (a.number, a.state, a.value, a.params, a.distributions) == (
            b.number,
            b.state,
            b.value,
            b.params,
            b.distributions,
        )
        assert (a.intermediate_values, a.system_attrs) == (b.intermediate_values, b.system_attrs)
        assert (a.datetime_start, a.datetime_complete) == (b.datetime_start, b.datetime_complete)
    with pytest.raises(ValueError, match="must be empty"):
        insert_trials(bulk, history)


def test_seer_prefill_is_a_study_seer_carries_on(tmp_path: Path) -> None:
    pruner = seer_pruner(width=100)
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'seer.db'}",
        direction="maximize",
        pruner=pruner,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
    )
    prefill(study, 60, "seer", pruner)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(stop_reason(t) for t in pruned)
    assert read_ledger(study, pruner.plan, 0.0).gpu_seconds > 0
    ask, prunes, whole = probe_one(study, 0)
    assert 0 < ask < whole and prunes
    assert len(study.trials) == 61
