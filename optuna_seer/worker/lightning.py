"""SeerCallback: the ``pytorch_lightning`` side of the launch contract.

Every epoch, rank 0 writes the monitored metric to the study's storage as the trial's
intermediate value (step = cumulative epochs) and reads the executor's verdict; the verdict
is broadcast to every rank through the training strategy (gloo/NCCL), so all ranks stop at
the same epoch and no rank needs a database connection of its own. When training ends
(target epochs reached, or stopped) the checkpoint is written and rank 0 stores it in the
trial's checkpoint store as ``rung-<r>.ckpt``.

This works with any storage the executor can hand to workers (SQLite, journal file, RDB,
gRPC proxy), unlike ``optuna-integration``'s pruning callback, which requires an RDB under
DDP. It uses the ``pytorch_lightning`` namespace only: mixing it with ``lightning.pytorch``
breaks callbacks, so build your ``Trainer`` from ``pytorch_lightning`` too.

Example::

    import pytorch_lightning as pl
    from optuna_seer import trial_context
    from optuna_seer.worker.lightning import SeerCallback

    ctx = trial_context()
    trainer = pl.Trainer(max_epochs=ctx.target_epochs, **ctx.lightning_trainer_kwargs(),
                         callbacks=[SeerCallback(ctx, monitor="val_acc")])
    trainer.fit(model, datamodule, ckpt_path=ctx.resume_checkpoint)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
import tempfile
import time
from typing import Any, Literal

import pytorch_lightning as pl

from optuna_seer.integration.tie_break import TieBreak
from optuna_seer.worker.context import TrialContext


class SeerCallback(pl.Callback):
    """Report ``monitor`` each epoch, obey the executor's verdict, checkpoint at the rung end.

    Args:
        ctx: The launch's :class:`~optuna_seer.worker.context.TrialContext`.
        monitor: The logged metric to report (e.g. ``"val_acc"``); log it with
            ``sync_dist=True`` so rank 0 reports the value over all ranks' data.
        tie_break: A second logged metric (e.g. ``"val_loss"``) that breaks ties on
            ``monitor`` when SEER picks the best finalist
            (:mod:`optuna_seer.integration.tie_break`):
            worth it when the validation set is small and ``monitor`` is an accuracy.
        tie_break_mode: ``"min"`` (lower ``tie_break`` is better, a loss) or ``"max"``.
    """

    def __init__(
        self,
        ctx: TrialContext,
        monitor: str,
        tie_break: str | None = None,
        tie_break_mode: Literal["min", "max"] = "min",
    ) -> None:
        if not isinstance(ctx, TrialContext):
            raise TypeError(f"ctx={ctx!r} must be the TrialContext from trial_context().")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor={monitor!r} must name a logged metric, e.g. 'val_acc'.")
        if tie_break is not None:
            if tie_break == monitor:
                raise ValueError(
                    f"tie_break={tie_break!r} is the monitored metric; name a second one "
                    "(e.g. 'val_loss' for monitor='val_acc') or leave it None."
                )
            TieBreak(tie_break, None, tie_break_mode)  # validates the name and the mode
        self.ctx = ctx
        self.monitor = monitor
        self.tie_break = tie_break
        self.tie_break_mode = tie_break_mode
        self._started = 0.0
        self._first_epoch = 0
        self._last_epoch = 0
        self._last_epoch_end = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()
        self._first_epoch = trainer.current_epoch
        self._last_epoch = trainer.current_epoch
        self._last_epoch_end = self._started

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        self._last_epoch = epoch
        self._last_epoch_end = time.monotonic()
        stop = False
        if trainer.is_global_zero:
            value = self._logged(trainer, self.monitor)
            if not math.isfinite(value):
                raise RuntimeError(
                    f"trial {self.ctx.trial_number}: {self.monitor}={value} at epoch {epoch}; "
                    "SEER ranks finite values only."
                )
            tie = None
            if self.tie_break is not None:
                # A diverged model's loss may be inf or nan: kept as None, ranked last.
                tie = TieBreak(
                    self.tie_break, self._logged(trainer, self.tie_break), self.tie_break_mode
                )
            self.ctx.report(epoch, value, tie_break=tie)
            stop = self.ctx.should_stop()
        stop = bool(trainer.strategy.broadcast(stop, src=0))
        if stop:
            trainer.should_stop = True

    def _logged(self, trainer: pl.Trainer, name: str) -> float:
        metric = trainer.callback_metrics.get(name)
        if metric is None:
            raise RuntimeError(
                f"SeerCallback: the metric {name!r} was not logged this epoch; logged metrics: "
                f"{sorted(trainer.callback_metrics)}. Log it with self.log(..., sync_dist=True) "
                "in validation_step or on_validation_epoch_end."
            )
        return float(metric)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Saved after the fit loop closed the epoch (progress counters and LR schedulers
        # stepped), so a resume continues exactly where this launch ended.
        local = Path(tempfile.gettempdir()) / (
            f"seer-{os.getpid()}-trial-{self.ctx.trial_number}-rung-{self.ctx.rung}.ckpt"
        )
        self.ctx.discard_resume_copy()
        trainer.save_checkpoint(local)
        trainer.strategy.barrier("seer_checkpoint_saved")
        if trainer.is_global_zero:
            self.ctx.save_checkpoint(local)
            local.unlink(missing_ok=True)
            self.ctx.record_training(
                self._last_epoch_end - self._started, self._last_epoch - self._first_epoch
            )

    def state_dict(self) -> dict[str, Any]:
        return {}
