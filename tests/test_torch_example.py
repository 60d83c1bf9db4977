"""The plain-PyTorch contract (examples/torch_digits.py) on real processes: 2 workers, then 1."""

from __future__ import annotations

from pathlib import Path

from elastic_support import REPO, run_launches
import optuna
import pytest
import torch

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.local import LocalBackend
from optuna_seer.integration.keys import launch_timing_key
from optuna_seer.worker.context import checkpoint_name, checkpoint_object_uri, fetch_checkpoint


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torch_example_reports_checkpoints_and_resumes_on_fewer_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'torch.db'}"
    study = optuna.create_study(storage=url, study_name="torch", direction="maximize")
    study.ask()
    uri = str(tmp_path / "ckpt")
    backend = LocalBackend(slots=2, gpus=(), log_dir=tmp_path / "logs", env={"DIGITS_REPEATS": "1"})

    def spec(rung: int, epochs: int, workers: int, resume: str | None) -> LaunchSpec:
        return LaunchSpec(
            study_name="torch",
            storage=url,
            trial_number=0,
            params={"lr": 0.05, "hidden": 32},
            rung=rung,
            target_epochs=epochs,
            workers=workers,
            checkpoint_uri=uri,
            resume_from=resume,
            env={"SEER_MAX_EPOCHS": "3"},
            entrypoint=f"{REPO / 'examples' / 'torch_digits.py'}:train",
        )

    try:
        run_launches(backend, [spec(0, 1, 2, None)])
        run_launches(backend, [spec(1, 3, 1, checkpoint_object_uri(uri, checkpoint_name(0)))])
    finally:
        backend.release()
    trial = study.get_trials()[0]
    assert sorted(trial.intermediate_values) == [1, 2, 3]
    assert trial.system_attrs[launch_timing_key(1)]["epochs"] == 2
    state = torch.load(fetch_checkpoint(checkpoint_object_uri(uri, checkpoint_name(1))))
    assert state["epoch"] == 3 and state["schedule"]["last_epoch"] == 3
