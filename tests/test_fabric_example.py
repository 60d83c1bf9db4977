"""The Lightning Fabric example (examples/fabric_digits.py) on real processes: DDP on 2 CPU
processes, a resume on 1, and a launch stopped by SIGTERM mid-rung that stores its newest
epoch first, so its retry loses less than one epoch."""

from __future__ import annotations

from pathlib import Path
import time

from elastic_support import REPO, run_launches, worker_env
import optuna
import pytest
import torch

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.local import LocalBackend
from optuna_seer.integration.keys import launch_timing_key
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.context import checkpoint_name, checkpoint_object_uri, fetch_checkpoint
from optuna_seer.worker.epoch_checkpoints import checkpoint_every_env

TRAIN = f"{REPO / 'examples' / 'fabric_digits.py'}:train"


def _spec(
    url: str, uri: str, rung: int, epochs: int, workers: int, resume: str | None
) -> LaunchSpec:
    return LaunchSpec(
        study_name="fabric",
        storage=url,
        trial_number=0,
        params={"lr": 0.05, "hidden": 32},
        rung=rung,
        target_epochs=epochs,
        workers=workers,
        checkpoint_uri=uri,
        resume_from=resume,
        env={"SEER_MAX_EPOCHS": "40"},
        entrypoint=TRAIN,
    )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_fabric_example_trains_ddp_resumes_and_survives_a_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fabric.db'}"
    study = optuna.create_study(storage=url, study_name="fabric", direction="maximize")
    study.ask()
    uri = str(tmp_path / "ckpt")
    # Stored only every 100 epochs: what the stopped launch keeps, SIGTERM stored.
    env = {**worker_env(), **checkpoint_every_env(epochs=100)}
    backend = LocalBackend(slots=2, gpus=(), log_dir=tmp_path / "logs", env=env)
    try:
        run_launches(backend, [_spec(url, uri, 0, 1, 2, None)])  # DDP on 2 CPU processes
        rung0 = checkpoint_object_uri(uri, checkpoint_name(0))
        handle = backend.start(_spec(url, uri, 1, 40, 1, rung0))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            steps = study.get_trials()[0].intermediate_values
            if len(steps) >= 3:
                break
            time.sleep(0.5)
        assert len(study.get_trials()[0].intermediate_values) >= 3, "the launch did not train"
        backend.stop(handle)  # SIGTERM, as a preemption notice or the executor's stop
        reached = max(study.get_trials()[0].intermediate_values)
        kept = [n for n in open_store(uri).names() if n.startswith("rung-1-epoch-")]
        assert len(kept) == 1
        kept_epoch = int(kept[0].removeprefix("rung-1-epoch-").removesuffix(".ckpt"))
        assert reached - 1 <= kept_epoch <= reached  # at most the epoch in flight is lost
        run_launches(backend, [_spec(url, uri, 1, kept_epoch + 2, 1, rung0)])
    finally:
        backend.release()
    trial = study.get_trials()[0]
    assert trial.system_attrs[launch_timing_key(1)]["epochs"] == 2  # resumed at kept_epoch
    state = torch.load(fetch_checkpoint(checkpoint_object_uri(uri, checkpoint_name(1))))
    assert state["epoch"] == kept_epoch + 2
    assert open_store(uri).names() == ["rung-0.ckpt", "rung-1.ckpt"]
