"""A real DDP rank SIGKILLed mid-rung: the trial resumes from its last checkpoint on fresh
workers and its reported values stay consistent (real Lightning DDP processes, gloo, SQLite)."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import threading
import time

from driver_procs import proc_env, study_pids
from elastic_support import DIGITS_TRAIN, worker_env
import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer.backends.local import LocalBackend
from optuna_seer.execution.report import format_report
from optuna_seer.execution.tuner import ElasticTuner
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload
from optuna_seer.worker.checkpoints import open_store

PRICE = 3.0 / 3600
STUDY = "sigkill-rank"
FINAL_EPOCHS = 6


def _rank_pids(study_name: str, rank: str) -> list[int]:
    """PIDs of live worker processes of ``study_name`` with torchrun's ``RANK=rank``."""
    return [pid for pid in study_pids(study_name) if (proc_env(pid) or {}).get("RANK") == rank]


def _kill_rank_one_at_step(url: str, step: int, killed: list[int], stop: threading.Event) -> None:
    """Watch the storage; once the 2-worker rung has reported ``step``, SIGKILL rank 1."""
    storage = optuna.storages.RDBStorage(url)
    study_id = storage.get_study_id_from_name(STUDY)
    while not stop.is_set():
        trials = storage.get_all_trials(study_id, deepcopy=False)
        if any(step in t.intermediate_values for t in trials):
            for pid in _rank_pids(STUDY, "1"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            if killed:
                return
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_sigkilled_ddp_rank_is_retried_from_the_last_checkpoint(tmp_path: Path) -> None:
    shapes = [RungShape(2, 1, 1), RungShape(1, FINAL_EPOCHS, 2)]
    workload = Workload(
        epoch_seconds=1.0, scaling="linear", max_epochs=FINAL_EPOCHS, startup_seconds=15
    )
    plan = Plan(
        rungs=schedule(shapes, workload, PRICE, ClusterLimits(max_gpus=2)),
        reduction_factor=2,
        deadline_s=1800.0,
        budget_dollars=5.0,
        price_per_gpu_second=PRICE,
        min_marginal_speedup=0.2,
    )
    url = f"sqlite:///{tmp_path / 'seer.db'}"
    study = optuna.create_study(
        storage=url,
        study_name=STUDY,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=SeerPruner(plan=plan),
    )

    def search_space(trial: optuna.Trial) -> None:
        trial.suggest_float("lr", 0.02, 0.1, log=True)
        trial.suggest_int("hidden", 32, 48)
        trial.suggest_float("weight_decay", 1e-5, 1e-4, log=True)

    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(
        target=_kill_rank_one_at_step, args=(url, 3, killed, stop), daemon=True
    )
    watcher.start()
    try:
        result = ElasticTuner(
            study,
            backend=LocalBackend(slots=2, gpus=(), log_dir=tmp_path / "logs", env=worker_env()),
            train=DIGITS_TRAIN,
            search_space=search_space,
            checkpoints=tmp_path / "ckpt",
            drift_tolerance=float("inf"),
            progress=False,
        ).run()
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert killed, "the watcher never saw the 2-worker rung report epoch 3"

    trials = {t.number: t for t in optuna.load_study(study_name=STUDY, storage=url).trials}
    (finalist,) = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    ours = [r for r in result.launches if r.trial_number == finalist.number and r.rung == 1]
    assert [r.state for r in ours] == ["failed", "succeeded"], [r.message for r in ours]
    assert result.failed_launches == 1 and result.retried_launches == 1
    # The retry resumed from the newest epoch checkpoint stored inside the rung (epoch 2, or 3
    # if its checkpoint was stored before the kill landed; on a loaded machine the kill, sent
    # when the watcher reads epoch 3, can land an epoch or two later, and the retry then
    # resumes from that later checkpoint), on fresh workers (a new process group): at most
    # one epoch lost, never a restart from the rung's start; every epoch has exactly one
    # value, first kept.
    assert 1 <= ours[1].epochs <= FINAL_EPOCHS - 2
    assert sorted(finalist.intermediate_values) == list(range(1, FINAL_EPOCHS + 1))
    assert finalist.value == finalist.intermediate_values[FINAL_EPOCHS]
    assert open_store(str(tmp_path / "ckpt" / STUDY / f"trial-{finalist.number}")).names() == [
        "rung-0.ckpt",
        "rung-1.ckpt",
    ]
    charged = sum(r.wall_seconds * r.workers for r in result.launches)
    assert result.ledger.gpu_seconds == pytest.approx(charged, rel=0.01)
    assert "faults: 1 failed launch(es), 1 retried" in format_report(result)
    assert any("retry 1/2 from" in note and "rung-0.ckpt" in note for note in result.notes)
