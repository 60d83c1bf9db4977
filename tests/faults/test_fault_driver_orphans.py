"""Only the driver SIGKILLed while a 2-worker DDP trial trains: every process of that launch
(the torchrun agent and both ranks) ends within seconds, by pid through /proc, and the
trial's last checkpoint still verifies and loads (real driver, torchrun, Lightning DDP on
gloo, SQLite)."""

from __future__ import annotations

from pathlib import Path

from driver_procs import (
    STUDY,
    StartDriver,
    kill_driver_when,
    proc_env,
    study_pids,
    trials_of,
    wait_until_gone,
)
import optuna
import pytest
from replay_study import assert_consistent_steps
import torch

from optuna_seer.integration.keys import launch_timing_key
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.context import fetch_checkpoint

FINAL_EPOCHS = 40  # far more than can train in the moments between the check and the kill


def _finalist_training(trials: list[optuna.trial.FrozenTrial]) -> bool:
    """The 2-worker final rung has reported epoch 2 (epoch 1 was rung 0, on one worker)."""
    return any(2 in t.intermediate_values for t in trials)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_sigkilled_driver_leaves_no_ddp_worker_and_an_intact_checkpoint(
    tmp_path: Path, start_driver: StartDriver
) -> None:
    driver = start_driver("--final-workers", "2", "--final-epochs", str(FINAL_EPOCHS))
    url = driver.url
    ranks: list[int] = []
    launch: list[int] = []

    def two_ranks_training(trials: list[optuna.trial.FrozenTrial]) -> bool:
        if not _finalist_training(trials):
            return False
        launch[:] = study_pids(STUDY)
        ranks[:] = [p for p in launch if (proc_env(p) or {}).get("RANK") in ("0", "1")]
        return len(ranks) == 2

    kill_driver_when(driver.process, url, two_ranks_training)
    assert len(ranks) == 2 and len(launch) >= 3, launch  # the torchrun agent and two ranks

    # Every process of the launch, and of the study, ends by itself within 30 s.
    assert wait_until_gone(launch) == [], [(p, proc_env(p)) for p in launch]
    assert study_pids(STUDY) == []

    (finalist,) = [t for t in trials_of(url) if 2 in t.intermediate_values]
    # It was killed while training, not after finishing its rung ...
    assert finalist.last_step is not None and finalist.last_step < FINAL_EPOCHS
    assert launch_timing_key(1) not in finalist.system_attrs
    # ... with no partial value (epochs 1..last, each once) ...
    assert_consistent_steps(optuna.load_study(study_name=STUDY, storage=url))
    # ... and its last checkpoint (rung 0's) intact: it verifies against its SHA-256 and
    # loads; a rung-1 checkpoint the kill cut short would not verify, and there is none.
    store = tmp_path / "ckpt" / STUDY / f"trial-{finalist.number}"
    assert open_store(str(store)).names() == ["rung-0.ckpt"]
    state = torch.load(fetch_checkpoint(str(store / "rung-0.ckpt")), weights_only=False)
    assert state["epoch"] == 1 and state["state_dict"]
