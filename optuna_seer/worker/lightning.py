"""SeerCallback: the Lightning side of the launch contract, for ``lightning.pytorch`` and
``pytorch_lightning`` alike.

Every epoch, rank 0 writes the monitored metric to the study's storage as the trial's
intermediate value (step = cumulative epochs) and reads the executor's verdict; the verdict
is broadcast to every rank through the training strategy (gloo/NCCL), so all ranks stop at
the same epoch and no rank needs a database connection of its own. Inside the rung the state
after an epoch is stored every N epochs or M minutes (default: every epoch) and, on SIGTERM
(a preemption notice, a stopped launch), the newest one not stored yet, so a preempted trial
loses at most the epoch it was in (:mod:`optuna_seer.worker.epoch_checkpoints`). When
training ends (target epochs reached, or stopped) the checkpoint is written and rank 0 stores
it in the trial's checkpoint store as ``rung-<r>.ckpt``.

This works with any storage the executor can hand to workers (SQLite, journal file, RDB,
gRPC proxy), unlike ``optuna-integration``'s pruning callback, which requires an RDB under
DDP. ``SeerCallback(...)`` is a ``Callback`` of the Lightning namespace your script imported
(``lightning.pytorch``, as ``optuna-integration`` uses, or ``pytorch_lightning``; with both
or neither imported, ``lightning.pytorch`` when installed, and it becomes one of the
Trainer's namespace when the fit starts); ``lightning=`` names it explicitly.

Example::

    import lightning.pytorch as pl   # or: import pytorch_lightning as pl
    from optuna_seer import trial_context
    from optuna_seer.worker.lightning import SeerCallback

    ctx = trial_context()
    trainer = pl.Trainer(**ctx.lightning_trainer_kwargs(
        max_epochs=ctx.target_epochs,
        logger=pl.loggers.CSVLogger("logs"),           # your own logger and callbacks
        callbacks=[SeerCallback(ctx, monitor="val_acc")],
    ))
    trainer.fit(model, datamodule, ckpt_path=ctx.resume_checkpoint, weights_only=True)
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any, Literal

from optuna_seer._install import install_hint
from optuna_seer.integration.tie_break import TieBreak
from optuna_seer.worker.context import TrialContext
from optuna_seer.worker.epoch_checkpoints import CheckpointSchedule, EpochCheckpoints

NAMESPACES = ("lightning.pytorch", "pytorch_lightning")
"""The Lightning namespaces a :class:`SeerCallback` can belong to."""

_CLASSES: dict[str, type[SeerCallback]] = {}


def default_namespace() -> str:
    """The Lightning namespace a :class:`SeerCallback` joins when not told.

    The one this process imported, if only one; else ``lightning.pytorch`` when installed,
    else ``pytorch_lightning``.

    Raises:
        ModuleNotFoundError: Neither is installed (``pip install '.[lightning]'`` in an
            optuna-seer clone).
    """
    imported = [name for name in NAMESPACES if name in sys.modules]
    if len(imported) == 1:
        return imported[0]
    for name in NAMESPACES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # "lightning" itself is absent
            found = False
        if found:
            return name
    raise ModuleNotFoundError(
        f"SeerCallback needs Lightning (lightning.pytorch or pytorch_lightning): "
        f"{install_hint('lightning', 'lightning')}."
    )


def seer_callback_class(namespace: str) -> type[SeerCallback]:
    """The :class:`SeerCallback` subclass that is a ``Callback`` of ``namespace``.

    Raises:
        ValueError: ``namespace`` is not one of :data:`NAMESPACES`.
    """
    if namespace not in NAMESPACES:
        raise ValueError(
            f"lightning={namespace!r} must be one of {NAMESPACES} (the module your Trainer is "
            "imported from)."
        )
    if namespace not in _CLASSES:
        base = importlib.import_module(namespace).Callback
        _CLASSES[namespace] = type(
            "SeerCallback",
            (SeerCallback, base),
            {"__module__": __name__, "__qualname__": "SeerCallback", "namespace": namespace},
        )
    return _CLASSES[namespace]


class SeerCallback:
    """Report ``monitor`` each epoch, obey the executor's verdict, checkpoint in and at the end
    of the rung.

    ``SeerCallback(...)`` builds the subclass that is a ``Callback`` of the right Lightning
    namespace (:func:`seer_callback_class`), so ``isinstance(cb, SeerCallback)`` holds for both.

    Args:
        ctx: The launch's :class:`~optuna_seer.worker.context.TrialContext`.
        monitor: The logged metric to report (e.g. ``"val_acc"``); log it with
            ``sync_dist=True`` so rank 0 reports the value over all ranks' data.
        tie_break: A second logged metric (e.g. ``"val_loss"``) that breaks ties on
            ``monitor`` when SEER picks the best finalist
            (:mod:`optuna_seer.integration.tie_break`):
            worth it when the validation set is small and ``monitor`` is an accuracy.
        tie_break_mode: ``"min"`` (lower ``tie_break`` is better, a loss) or ``"max"``.
        checkpoint_every: When to store the state inside the rung (default:
            :meth:`~optuna_seer.worker.epoch_checkpoints.CheckpointSchedule.from_env`, every
            epoch unless ``SEER_CHECKPOINT_EVERY_EPOCHS``/``_MINUTES`` say otherwise).
        lightning: ``"lightning.pytorch"`` or ``"pytorch_lightning"``: the namespace of your
            ``Trainer`` (default: :func:`default_namespace`).
    """

    namespace: str = ""

    def __new__(cls, *args: Any, lightning: str | None = None, **kwargs: Any) -> SeerCallback:
        if cls is SeerCallback:
            cls = seer_callback_class(lightning or default_namespace())
        return super().__new__(cls)

    def __init__(
        self,
        ctx: TrialContext,
        monitor: str,
        tie_break: str | None = None,
        tie_break_mode: Literal["min", "max"] = "min",
        checkpoint_every: CheckpointSchedule | None = None,
        lightning: str | None = None,
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
        self.checkpoints = EpochCheckpoints(ctx, checkpoint_every)
        self._pending = Path(tempfile.gettempdir()) / (
            f"seer-{os.getpid()}-trial-{ctx.trial_number}-rung-{ctx.rung}-epoch.ckpt"
        )

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # Both namespaces imported and the guess was the other one: become a callback of the
        # Trainer's namespace (the hooks are the same; isinstance checks then hold too).
        trainer_namespace = type(trainer).__module__.split(".trainer")[0]
        if trainer_namespace in NAMESPACES and trainer_namespace != self.namespace:
            self.__class__ = seer_callback_class(trainer_namespace)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._started = time.monotonic()
        self._first_epoch = trainer.current_epoch
        self._last_epoch = trainer.current_epoch
        self._last_epoch_end = self._started
        self.checkpoints.start(trainer.current_epoch)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
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
        due = False
        if not stop and epoch < self.ctx.target_epochs:
            due = self.checkpoints.due(epoch)
        stop, due = trainer.strategy.broadcast((bool(stop), bool(due)), src=0)
        if stop:
            trainer.should_stop = True
        elif epoch < self.ctx.target_epochs:
            # Saved every epoch (collective; rank 0 writes), stored when due, else kept for
            # a SIGTERM; the rung's end has its own checkpoint (on_train_end).
            trainer.save_checkpoint(self._pending)
            self.checkpoints.epoch_ended(epoch, self._pending, store=bool(due))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if getattr(trainer, "received_sigterm", False) or isinstance(exception, KeyboardInterrupt):
            self.checkpoints.flush()  # rank 0; no collective: the other ranks are stopping too

    def _logged(self, trainer: Any, name: str) -> float:
        metric = trainer.callback_metrics.get(name)
        if metric is None:
            raise RuntimeError(
                f"SeerCallback: the metric {name!r} was not logged this epoch; logged metrics: "
                f"{sorted(trainer.callback_metrics)}. Log it with self.log(..., sync_dist=True) "
                "in validation_step or on_validation_epoch_end."
            )
        return float(metric)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
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
            self.checkpoints.rung_stored()
            self._pending.unlink(missing_ok=True)
            self.ctx.record_training(
                self._last_epoch_end - self._started, self._last_epoch - self._first_epoch
            )

    def state_dict(self) -> dict[str, Any]:
        return {}
