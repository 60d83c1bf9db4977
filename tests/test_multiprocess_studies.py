"""Several OS processes share one SEER study on SQLite or a journal file (no mocks)."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import textwrap

import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer import Plan
from optuna_seer.integration.keys import STUDY_PLAN, STUDY_STARTED_AT
from optuna_seer.integration.reruns import rerun_of
from optuna_seer.integration.trial_gpus import implicit_placement, placement_of

WORKER = textwrap.dedent(
    """
    import math, sys
    import optuna
    from optuna_seer import Budget, ClusterLimits, SeerPruner, SeerSampler, Workload

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kind, location, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "sqlite":
        storage = location
    else:
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(location))
    pruner = SeerPruner(Budget(deadline="2h", dollars=5, price_per_gpu_hour=3.0),
                        Workload(epoch_seconds=60, scaling="amdahl:0.9", max_epochs=9,
                                 gpus_per_node=4),
                        limits=ClusterLimits(max_gpus=16))
    study = optuna.load_study(study_name="shared", storage=storage, pruner=pruner,
                              sampler=SeerSampler(optuna.samplers.RandomSampler(seed=seed)))

    def objective(trial):
        q = trial.suggest_float("q", 0, 1)
        for epoch in range(1, 10):
            trial.report(q * (1 - math.exp(-epoch / 3)), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return q

    study.optimize(objective, n_trials=200)
    """
)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_processes_share_plan_clock_and_width(kind: str, tmp_path: Path) -> None:
    if kind == "sqlite":
        location = f"sqlite:///{tmp_path / 'shared.db'}"
        storage: str | optuna.storages.BaseStorage = location
    else:
        location = str(tmp_path / "shared.log")
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(location)
        )
    optuna.create_study(study_name="shared", storage=storage, direction="maximize")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), kind, location, str(seed)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(3)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err

    study = optuna.load_study(study_name="shared", storage=storage)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    plan = Plan.from_dict(attrs[STUDY_PLAN])
    assert STUDY_STARTED_AT in attrs
    trials = study.get_trials()
    rule = implicit_placement(study._storage, study._study_id)
    placed = [t for t in trials if placement_of(t, rule) is not None]
    configurations = [t for t in placed if rerun_of(t) is None]
    # Exactly the plan's width was placed, across all processes; the rest were refused, or
    # re-ran configurations parked at the last rung's door.
    assert len(configurations) == plan.n_configs
    assert len(placed) - len(configurations) <= plan.rungs[-1].n_trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len(trials) - len(placed) <= 3  # at most one refused trial per process
    assert sum(1 for t in trials if t.last_step == plan.max_epochs) <= plan.rungs[-1].n_trials
    # The best configuration is never lost to the asynchronous, multi-process race: it
    # completes, itself or as its re-run.
    best = max(configurations, key=lambda t: t.params["q"])
    assert study.best_trial.params["q"] == best.params["q"]
    assert study.best_trial.number == best.number or rerun_of(study.best_trial) == best.number
