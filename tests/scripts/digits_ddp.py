"""A training script that follows the SEER_* contract: an MLP on scikit-learn's digits.

Runs under ``torchrun`` (any number of nodes × processes) with Lightning DDP on CPU (gloo):
reads :func:`optuna_seer.worker.context.trial_context`, resumes from ``SEER_RESUME_FROM``,
trains to ``SEER_TARGET_EPOCHS`` cumulative epochs, reports validation accuracy to the study
at that step (rank 0), and saves ``rung-<r>.ckpt`` into ``SEER_CHECKPOINT_URI``.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytorch_lightning as pl
from sklearn.datasets import load_digits
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optuna_seer.storage.urls import open_storage
from optuna_seer.worker.context import trial_context


class DigitsMLP(pl.LightningModule):
    def __init__(self, lr: float, hidden: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch: list[torch.Tensor], _: int) -> None:
        x, y = batch
        accuracy = (self.net(x).argmax(dim=1) == y).float().mean()
        self.log("val_acc", accuracy, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def main() -> None:
    context = trial_context()
    torch.manual_seed(context.trial_number)
    features, labels = load_digits(return_X_y=True)
    x = torch.tensor(features / 16.0, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.long)
    train = TensorDataset(x[:1400], y[:1400])
    val = TensorDataset(x[1400:], y[1400:])
    model = DigitsMLP(lr=float(context.params.get("lr", 0.1)), hidden=32)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=local,
        num_nodes=context.world_size // local,
        strategy="ddp",
        max_epochs=context.target_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        model,
        DataLoader(train, batch_size=64, shuffle=True),
        DataLoader(val, batch_size=256),
        ckpt_path=context.resume_checkpoint,
    )
    target = Path(context.checkpoint_uri) / f"rung-{context.rung}.ckpt"
    trainer.save_checkpoint(target)
    if trainer.global_rank == 0:
        accuracy = float(trainer.callback_metrics["val_acc"])
        storage = open_storage(context.storage)
        study_id = storage.get_study_id_from_name(context.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, context.trial_number)
        study = optuna.load_study(study_name=context.study_name, storage=storage)
        optuna.trial.Trial(study, trial_id).report(accuracy, context.target_epochs)
        print(
            f"trial {context.trial_number} world {context.world_size} epochs "
            f"{trainer.current_epoch} val_acc {accuracy:.3f}"
        )


if __name__ == "__main__":
    main()
