"""SeerCallback in real single-process Lightning fits, under ``lightning.pytorch`` and
``pytorch_lightning``: the user's logger and callbacks merge with the launch's Trainer
arguments, the state is stored every epoch inside the rung, and a SIGTERM stores the newest
epoch before the launch ends, so the next launch of the rung resumes there (real SQLite
study, real checkpoint directory)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
import signal
from typing import Any

import optuna
import pytest

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.launch_env import launch_env
from optuna_seer.integration.keys import launch_timing_key
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.context import TrialContext, trial_context
from optuna_seer.worker.epoch_checkpoints import CheckpointSchedule
from optuna_seer.worker.trainer_kwargs import merge_trainer_kwargs

NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def _context(tmp_path: Path, target: int, **env: str) -> tuple[optuna.Study, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'seer.db'}"
    try:
        study = optuna.load_study(study_name="cb", storage=url)
    except KeyError:
        study = optuna.create_study(study_name="cb", storage=url, direction="maximize")
        study.ask()
    spec = LaunchSpec(
        study_name="cb",
        storage=url,
        trial_number=0,
        params={},
        rung=0,
        target_epochs=target,
        workers=1,
        checkpoint_uri=str(tmp_path / "ckpt"),
    )
    return study, {**launch_env(spec), **env}


def _fit(
    namespace: str,
    ctx: TrialContext,
    tmp_path: Path,
    *,
    sigterm_in_epoch: int | None = None,
    schedule: CheckpointSchedule | None = None,
) -> Any:
    """A real fit of a tiny model; a SIGTERM to this process in epoch ``sigterm_in_epoch``."""
    pl = importlib.import_module(namespace)
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from optuna_seer.worker.lightning import SeerCallback

    class Tiny(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4, 2)

        def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
            if sigterm_in_epoch is not None and self.current_epoch == sigterm_in_epoch:
                os.kill(os.getpid(), signal.SIGTERM)  # as a preemption notice would
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
            logits = self.net(batch[0])
            self.log("val_acc", (logits.argmax(dim=1) == batch[1]).float().mean())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=generator)
    data = TensorDataset(x, (x[:, 0] > 0).long())
    callback = SeerCallback(ctx, monitor="val_acc", checkpoint_every=schedule)
    user_logger = pl.loggers.CSVLogger(str(tmp_path / "logs"))
    trainer = pl.Trainer(
        **ctx.lightning_trainer_kwargs(
            max_epochs=ctx.target_epochs,
            logger=user_logger,
            callbacks=[callback, pl.callbacks.LearningRateMonitor()],
            enable_progress_bar=False,
        )
    )
    assert trainer.logger is user_logger  # the user's own logger, no "multiple values"
    loaders = (DataLoader(data, batch_size=8), DataLoader(data, batch_size=32))
    trainer.fit(Tiny(), *loaders, ckpt_path=ctx.resume_checkpoint, weights_only=True)
    return trainer, callback


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_each_namespace_reports_and_stores_every_epoch(tmp_path: Path, namespace: str) -> None:
    pl = importlib.import_module(namespace)
    from optuna_seer.worker.lightning import SeerCallback, seer_callback_class

    study, env = _context(tmp_path, target=3)
    ctx = trial_context(env)
    explicit = SeerCallback(ctx, monitor="val_acc", lightning=namespace)
    assert isinstance(explicit, pl.Callback) and isinstance(explicit, SeerCallback)
    assert type(explicit) is seer_callback_class(namespace)
    trainer, callback = _fit(namespace, ctx, tmp_path)
    assert isinstance(callback, pl.Callback)  # it joined the Trainer's namespace
    assert trainer.current_epoch == 3
    trial = study.get_trials()[0]
    assert trial.intermediate_values.keys() == {1, 2, 3}
    assert trial.system_attrs[launch_timing_key(0)]["epochs"] == 3
    # Epochs 1 and 2 were stored inside the rung (the rung's end has its own checkpoint)...
    assert [Path(uri).name for uri in callback.checkpoints.stored] == [
        "rung-0-epoch-1.ckpt",
        "rung-0-epoch-2.ckpt",
    ]
    # ... and once rung-0.ckpt is stored they go.
    assert open_store(str(tmp_path / "ckpt")).names() == ["rung-0.ckpt"]
    assert (tmp_path / "logs").exists()  # the user's CSVLogger wrote


def test_sigterm_stores_the_newest_epoch_and_the_retry_resumes_there(tmp_path: Path) -> None:
    namespace = "lightning.pytorch"
    pl = importlib.import_module(namespace)
    study, env = _context(tmp_path, target=5)
    # Stored every 10 epochs only: what SIGTERM stores is the pending epoch-end state.
    rare = CheckpointSchedule(every_epochs=10)
    with pytest.raises(pl.utilities.exceptions.SIGTERMException):
        _fit(namespace, trial_context(env), tmp_path, sigterm_in_epoch=2, schedule=rare)
    store = open_store(str(tmp_path / "ckpt"))
    assert store.names() == ["rung-0-epoch-2.ckpt"]  # epochs 1-2 kept; epoch 3 was cut short
    retry = trial_context(env)  # the executor names no resume point for rung 0
    assert retry.resume_uri == str(tmp_path / "ckpt" / "rung-0-epoch-2.ckpt")
    trainer, _ = _fit(namespace, retry, tmp_path)
    trial = study.get_trials()[0]
    assert trial.intermediate_values.keys() == {1, 2, 3, 4, 5}
    # The retry trained epochs 3-5 only: one partial epoch lost, not two.
    assert trial.system_attrs[launch_timing_key(0)]["epochs"] == 3
    assert trainer.current_epoch == 5
    assert store.names() == ["rung-0.ckpt"]


def test_the_user_trainer_arguments_merge_with_the_launchs() -> None:
    class ModelCheckpoint:  # named like Lightning's: it turns checkpointing back on
        pass

    seer = {"logger": False, "callbacks": [], "enable_checkpointing": False, "devices": 1}
    merged = merge_trainer_kwargs(seer, {"callbacks": [ModelCheckpoint()], "logger": ["a", "b"]})
    assert "enable_checkpointing" not in merged and merged["logger"] == ["a", "b"]
    assert merge_trainer_kwargs(seer, {"devices": 1})["devices"] == 1
    with pytest.raises(ValueError, match="devices=2: this launch has devices=1"):
        merge_trainer_kwargs(seer, {"devices": 2})
    assert merge_trainer_kwargs(seer, {"enable_checkpointing": True})["enable_checkpointing"]
