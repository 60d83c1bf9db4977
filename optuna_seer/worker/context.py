"""The contract between the executor and a training script: which trial, how far, where to save.

A backend starts the user's script with these environment variables (the SkyPilot
templates in ``optuna_seer/templates/`` set the same ones on cloud nodes);
:func:`trial_context` reads them back.

==========================  ===================================================
``SEER_STUDY``              study name
``SEER_STORAGE``            storage URL reachable from the worker
``SEER_TRIAL``              Optuna trial number
``SEER_RUNG``               rung index in the plan
``SEER_TARGET_EPOCHS``      cumulative epochs to reach before exiting
``SEER_CHECKPOINT_URI``     the trial's checkpoint directory or ``s3://`` prefix
``SEER_RESUME_FROM``        checkpoint to resume from (absent: start fresh)
``SEER_PARAMS``             the trial's hyperparameters, as JSON
``SEER_MAX_EPOCHS``         epochs of a full training (for LR schedules; optional)
``SEER_DRIVER_PID``         the driver's pid: the launch ends itself when it dies
                            (local backends only; :mod:`optuna_seer.worker.driver_watch`)
``SEER_DRIVER_STARTED``     the driver's start time, so a reused pid is not it
``SEER_CHECKPOINT_KEY``     the study's checkpoint key: checkpoints are sealed and
                            verified with its HMAC-SHA-256
                            (:mod:`optuna_seer.worker.checkpoint_keys`; absent: a
                            plain SHA-256, with a warning)
==========================  ===================================================

The world size and rank come from ``torch.distributed``'s usual variables (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), set by ``torchrun``.

A script talks back through the context: :meth:`TrialContext.report` (rank 0 writes the
metric of a finished epoch to the study's storage), :meth:`TrialContext.should_stop` (the
executor's verdict: eliminated, or stopped for the deadline), :meth:`TrialContext.save_checkpoint`
(the rung-end checkpoint, into the trial's checkpoint store) and
:meth:`TrialContext.record_training` (seconds spent training, so the executor can tell
launch overhead from training). ``SeerCallback`` does all four for Lightning.

Example (plain PyTorch; ``train_one_epoch`` and ``evaluate`` are yours)::

    ctx = trial_context()
    for epoch in range(start_epoch, ctx.target_epochs):
        train_one_epoch()
        ctx.report(epoch + 1, evaluate())
        if ctx.should_stop():   # rank 0's answer; broadcast it to the other ranks
            break
    ctx.save_checkpoint("last.pt")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import functools
import json
import os
from pathlib import Path
import re
import tempfile
from typing import Any

from optuna.storages import BaseStorage

from optuna_seer._logging import get_logger
from optuna_seer._secrets import scrub
from optuna_seer.integration.keys import (
    TRIAL_STOP_REASON,
    checkpoint_fallback_key,
    launch_timing_key,
)
from optuna_seer.integration.tie_break import TieBreak, record_tie_break
from optuna_seer.storage.urls import open_storage
from optuna_seer.worker.checkpoint_keys import CheckpointKey, key_from_env
from optuna_seer.worker.checkpoints import CorruptCheckpointError, LocalStore, open_store
from optuna_seer.worker.trainer_kwargs import merge_trainer_kwargs

_logger = get_logger(__name__)

ENV_STUDY = "SEER_STUDY"
ENV_STORAGE = "SEER_STORAGE"
ENV_TRIAL = "SEER_TRIAL"
ENV_RUNG = "SEER_RUNG"
ENV_TARGET_EPOCHS = "SEER_TARGET_EPOCHS"
ENV_CHECKPOINT_URI = "SEER_CHECKPOINT_URI"
ENV_RESUME_FROM = "SEER_RESUME_FROM"
ENV_PARAMS = "SEER_PARAMS"
ENV_MAX_EPOCHS = "SEER_MAX_EPOCHS"
# What a cloud node's ``optuna_seer.worker.node_entrypoint`` runs under torchrun (set by backends).
# Defined here, not there: nodes run that module with ``-m`` after importing the package,
# which must not import it first.
ENV_TRAIN_SCRIPT = "SEER_TRAIN_SCRIPT"
_DOWNLOAD_PREFIX = "seer-resume-"


def checkpoint_name(rung: int) -> str:
    """The name of the checkpoint a trial writes when it ends ``rung``."""
    return f"rung-{rung}.ckpt"


def checkpoint_object_uri(checkpoint_uri: str, name: str) -> str:
    """The URI of checkpoint ``name`` under a trial's ``checkpoint_uri``."""
    return f"{checkpoint_uri.rstrip('/')}/{name}"


@dataclass(frozen=True)
class TrialContext:
    """What one launch of a training script must do, and how it reports back.

    Attributes:
        resume_checkpoint: A *local* file to resume from (verified against its seal and,
            for ``s3://`` stores, downloaded), or ``None`` to start fresh; pass it to
            ``trainer.fit(..., ckpt_path=..., weights_only=True)`` or
            ``torch.load(..., weights_only=True)``.
        resume_uri: Where that checkpoint lives in the store.
        max_epochs: Epochs of a full training; use it for LR schedules so that a trial's
            schedule does not depend on where the rungs end.
        checkpoint_key: The study's checkpoint key (``SEER_CHECKPOINT_KEY``), which seals
            what :meth:`save_checkpoint` stores; ``None``: a plain SHA-256.
    """

    study_name: str
    storage: str
    trial_number: int
    rung: int
    target_epochs: int
    checkpoint_uri: str
    resume_checkpoint: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    world_size: int = 1
    rank: int = 0
    local_world_size: int = 1
    max_epochs: int = 0
    resume_uri: str | None = None
    checkpoint_key: CheckpointKey | None = field(default=None, repr=False)

    def discard_resume_copy(self) -> None:
        """Delete ``resume_checkpoint`` if it is a downloaded copy (once it has been loaded)."""
        if self.resume_checkpoint is not None and Path(self.resume_checkpoint).name.startswith(
            _DOWNLOAD_PREFIX
        ):
            Path(self.resume_checkpoint).unlink(missing_ok=True)

    @property
    def is_global_zero(self) -> bool:
        return self.rank == 0

    @functools.cached_property
    def _storage(self) -> BaseStorage:
        return open_storage(self.storage)

    @functools.cached_property
    def trial_id(self) -> int:
        """The trial's id in the storage."""
        study_id = self._storage.get_study_id_from_name(self.study_name)
        return self._storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number)

    def report(self, epoch: int, value: float, *, tie_break: TieBreak | None = None) -> None:
        """Record ``value`` after ``epoch`` cumulative epochs (rank 0 writes; others no-op).

        Writes the intermediate value through the storage, so no ``optuna.Trial`` is built in
        the worker (that would re-run the sampler). A launch retried after a failure re-trains
        (and re-reports) the epochs the failed launch trained after its checkpoint; the first
        value of each epoch is kept, as ``optuna.Trial.report`` does.

        ``tie_break`` (e.g. ``TieBreak("val_loss", loss)``) is kept with it, for SEER's final
        selection among finalists tied on ``value`` (:mod:`optuna_seer.integration.tie_break`); it
        costs
        one more storage write per epoch.
        """
        if not self.is_global_zero:
            return
        step = int(epoch)
        wrote = report_first_value(self._storage, self.trial_id, step, float(value))
        if wrote and tie_break is not None:
            record_tie_break(self._storage, self.trial_id, step, tie_break)

    def should_stop(self) -> bool:
        """Whether the executor wants this trial to stop (eliminated, or the deadline).

        Read it on rank 0 and broadcast the answer (``SeerCallback`` does), so every rank
        stops at the same epoch.
        """
        attrs = self._storage.get_trial_system_attrs(self.trial_id)
        return TRIAL_STOP_REASON in attrs

    def save_checkpoint(self, local_path: str | Path) -> str | None:
        """Store the rung-end checkpoint ``local_path``; rank 0 uploads, returns its URI."""
        if not self.is_global_zero:
            return None
        store = open_store(self.checkpoint_uri, key=self.checkpoint_key)
        return store.put(local_path, checkpoint_name(self.rung))

    def store_epoch_checkpoint(self, local_path: str | Path, epoch: int) -> str:
        """Store ``local_path`` (the state after cumulative ``epoch``) as this rung's newest
        epoch checkpoint and delete the older ones (rank 0 only; see
        :mod:`optuna_seer.worker.epoch_checkpoints`); its URI."""
        from optuna_seer.worker.epoch_checkpoints import (
            epoch_checkpoint_name,
            epoch_checkpoints_of,
        )

        if not self.is_global_zero:
            raise RuntimeError(f"rank {self.rank} stores no checkpoint; rank 0 does.")
        store = open_store(self.checkpoint_uri, key=self.checkpoint_key)
        name = epoch_checkpoint_name(self.rung, epoch)
        uri = store.put(local_path, name)
        for older in epoch_checkpoints_of(store.names(), self.rung):
            if older != name:
                store.delete(older)
        return uri

    def delete_epoch_checkpoints(self) -> None:
        """Delete this rung's epoch checkpoints (rank 0; once its rung-end one is stored)."""
        from optuna_seer.worker.epoch_checkpoints import epoch_checkpoints_of

        if not self.is_global_zero:
            return
        store = open_store(self.checkpoint_uri, key=self.checkpoint_key)
        for name in epoch_checkpoints_of(store.names(), self.rung):
            store.delete(name)

    def record_training(self, train_seconds: float, epochs: int) -> None:
        """Tell the executor how long this launch trained and for how many epochs (rank 0)."""
        if not self.is_global_zero:
            return
        self._storage.set_trial_system_attr(
            self.trial_id,
            launch_timing_key(self.rung),
            {"train_seconds": float(train_seconds), "epochs": int(epochs)},
        )

    def distributed_sampler(self, dataset: Any, seed: int = 0, shuffle: bool = True) -> Any:
        """A ``DistributedSampler`` for this rank, valid with or without a process group.

        With it, the global batch order of an epoch is the same at every world size (rank
        ``i`` takes every ``world_size``-th index of one seeded permutation per epoch), so a
        resized trial sees the same data per epoch; keep the *global* batch size fixed with
        :meth:`per_worker_batch_size`.
        """
        from torch.utils.data.distributed import DistributedSampler

        return DistributedSampler(
            dataset, num_replicas=self.world_size, rank=self.rank, shuffle=shuffle, seed=seed
        )

    def per_worker_batch_size(self, global_batch_size: int) -> int:
        """``global_batch_size / world_size``; raises if it does not divide evenly."""
        if global_batch_size % self.world_size:
            raise ValueError(
                f"global batch size {global_batch_size} does not divide among "
                f"{self.world_size} workers; pick a multiple of {self.world_size}."
            )
        return global_batch_size // self.world_size

    def fabric_kwargs(self) -> dict[str, Any]:
        """``lightning.fabric.Fabric`` arguments for this launch's world: accelerator, devices,
        nodes and strategy (``"ddp"``: gloo on CPU, NCCL on GPU, when there is more than one
        worker). Under ``torchrun`` (how backends start several workers) ``fabric.launch()``
        joins the processes that are there and spawns none."""
        import torch

        return {
            "accelerator": "gpu" if torch.cuda.is_available() else "cpu",
            "devices": self.local_world_size,
            "num_nodes": max(1, self.world_size // self.local_world_size),
            "strategy": "ddp" if self.world_size > 1 else "auto",
        }

    def lightning_trainer_kwargs(self, **user: Any) -> dict[str, Any]:
        """``Trainer`` arguments for this launch's world, merged with the user's own ``user``.

        This launch's world: ``devices``, ``num_nodes``, ``strategy`` (``"ddp"``: gloo on CPU,
        NCCL on GPU, when there is more than one worker) and ``accelerator``; Lightning's own
        checkpointing, logger, progress bar and model summary off (``SeerCallback``
        checkpoints; the executor shows progress). ``user`` adds to or replaces these, so
        ``Trainer(**ctx.lightning_trainer_kwargs(logger=WandbLogger(), callbacks=[...]))``
        works (see :func:`merge_trainer_kwargs`).

        Example:
            >>> ctx = trial_context({"SEER_STUDY": "s", "SEER_STORAGE": "sqlite://",
            ...     "SEER_TRIAL": "0", "SEER_RUNG": "0", "SEER_TARGET_EPOCHS": "3",
            ...     "SEER_CHECKPOINT_URI": "/tmp/c"})
            >>> merged = ctx.lightning_trainer_kwargs(logger="my logger", max_epochs=3)
            >>> merged["logger"], merged["max_epochs"], merged["strategy"]
            ('my logger', 3, 'auto')
        """
        return merge_trainer_kwargs(
            {
                **self.fabric_kwargs(),
                "enable_checkpointing": False,
                "logger": False,
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "default_root_dir": tempfile.gettempdir(),
            },
            user,
        )


def report_first_value(storage: BaseStorage, trial_id: int, step: int, value: float) -> bool:
    """Write ``value`` at ``step`` unless the trial already has one there; whether it wrote.

    Like ``optuna.Trial.report``, the first value of a step is kept, so a launch that
    re-trains epochs after a lost launch leaves no duplicate and no changed value.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> trial = study.ask()
        >>> from optuna_seer._optuna import storage_of, trial_id_of
        >>> report_first_value(storage_of(study), trial_id_of(trial), 1, 0.5)
        True
        >>> report_first_value(storage_of(study), trial_id_of(trial), 1, 0.7)
        False
        >>> study.trials[0].intermediate_values
        {1: 0.5}
    """
    if step in storage.get_trial(trial_id).intermediate_values:
        return False
    storage.set_trial_intermediate_value(trial_id, step, value)
    return True


def trial_context(environ: Mapping[str, str] | None = None, *, fetch: bool = True) -> TrialContext:
    """Read the launch contract from the environment.

    With ``fetch`` (the default) a checkpoint to resume from is verified (with the key in
    ``SEER_CHECKPOINT_KEY``, if any) and, from S3, downloaded, so ``resume_checkpoint`` is a
    local file.

    Raises:
        RuntimeError: A variable is missing or malformed; the message names it.
    """
    env = os.environ if environ is None else environ

    def need(name: str) -> str:
        value = env.get(name)
        if value is None or value == "":
            raise RuntimeError(
                f"{name} is not set: this script must be started by an optuna_seer backend "
                "(ElasticTuner) or a launcher template, which set SEER_* variables."
            )
        return value

    def whole(name: str, value: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise RuntimeError(f"{name}={value!r} is not a whole number.") from None

    try:
        params = json.loads(env.get(ENV_PARAMS, "{}"))
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{ENV_PARAMS} is not JSON: {exc}") from None
    resume_uri = env.get(ENV_RESUME_FROM) or None
    target_epochs = whole(ENV_TARGET_EPOCHS, need(ENV_TARGET_EPOCHS))
    world_size = whole("WORLD_SIZE", env.get("WORLD_SIZE", "1"))
    local: str | None = None
    errors: list[str] = []
    wanted = resume_uri
    try:
        key = key_from_env(env)
    except ValueError as exc:
        raise RuntimeError(str(exc)) from None
    rung = whole(ENV_RUNG, need(ENV_RUNG))
    if fetch:
        # A launch of this rung before this one (preempted, stopped) may have stored epochs
        # past the rung-end checkpoint the executor names: resume from the newest.
        progress = fetch_epoch_checkpoint(need(ENV_CHECKPOINT_URI), rung, key=key)
        if progress is not None:
            local, resume_uri = progress
        elif resume_uri is not None:
            local, resume_uri, errors = fetch_good_checkpoint(resume_uri, key=key)
            errors = [scrub(error) for error in errors]
    context = TrialContext(
        study_name=need(ENV_STUDY),
        storage=need(ENV_STORAGE),
        trial_number=whole(ENV_TRIAL, need(ENV_TRIAL)),
        rung=rung,
        target_epochs=target_epochs,
        checkpoint_uri=need(ENV_CHECKPOINT_URI),
        resume_checkpoint=local,
        params=params,
        world_size=world_size,
        rank=whole("RANK", env.get("RANK", "0")),
        local_world_size=whole("LOCAL_WORLD_SIZE", env.get("LOCAL_WORLD_SIZE", str(world_size))),
        max_epochs=whole(ENV_MAX_EPOCHS, env.get(ENV_MAX_EPOCHS, str(target_epochs))),
        resume_uri=resume_uri,
        checkpoint_key=key,
    )
    if errors and context.is_global_zero:
        _logger.warning(
            "trial %d: checkpoint %s unusable (%s); resuming from %s",
            context.trial_number,
            wanted,
            "; ".join(errors),
            resume_uri or "scratch",
        )
        context._storage.set_trial_system_attr(
            context.trial_id,
            checkpoint_fallback_key(context.rung),
            {"wanted": wanted, "used": resume_uri, "errors": errors[:5]},
        )
    return context


_RUNG_CHECKPOINT = re.compile(r"rung-(\d+)\.ckpt")


def fetch_good_checkpoint(
    uri: str, *, key: CheckpointKey | None = None
) -> tuple[str | None, str | None, list[str]]:
    """Fetch ``uri`` verified, falling back to the trial's earlier rung-end checkpoints.

    Returns ``(local copy, its URI, errors)``; ``(None, None, errors)`` when neither ``uri``
    nor any earlier ``rung-<k>.ckpt`` in the same store is present and matches its seal
    (under ``key``, default ``SEER_CHECKPOINT_KEY``; the launch then trains from scratch).
    ``errors`` says what was wrong with each one tried.

    Example:
        >>> import tempfile
        >>> fetch_good_checkpoint(tempfile.mkdtemp() + "/rung-1.ckpt")[:2]
        (None, None)
    """
    parent, _, name = uri.rstrip("/").rpartition("/")
    candidates = [uri]
    wanted = _RUNG_CHECKPOINT.fullmatch(name)
    errors: list[str] = []
    if wanted is not None:
        try:
            names = open_store(parent or ".", key=key).names()
        except OSError as exc:
            names = []
            errors.append(f"cannot list {parent}: {exc}")
        earlier = sorted(
            (int(m.group(1)), n)
            for n in names
            if (m := _RUNG_CHECKPOINT.fullmatch(n)) and int(m.group(1)) < int(wanted.group(1))
        )
        candidates += [f"{parent}/{n}" for _, n in reversed(earlier)]
    for candidate in candidates:
        try:
            return fetch_checkpoint(candidate, key=key), candidate, errors
        except (CorruptCheckpointError, FileNotFoundError) as exc:
            errors.append(str(exc))
    return None, None, errors


def fetch_epoch_checkpoint(
    checkpoint_uri: str, rung: int, *, key: CheckpointKey | None = None
) -> tuple[str, str] | None:
    """``(local copy, URI)`` of the newest good epoch checkpoint of ``rung`` in the trial's
    store (:mod:`optuna_seer.worker.epoch_checkpoints`), or ``None`` (one that does not
    verify, or a store that cannot be listed, is logged and skipped).

    Example:
        >>> import tempfile
        >>> fetch_epoch_checkpoint(tempfile.mkdtemp(), 2) is None
        True
    """
    from optuna_seer.worker.epoch_checkpoints import epoch_checkpoints_of

    try:
        store = open_store(checkpoint_uri, key=key)
        names = epoch_checkpoints_of(store.names(), rung)
    except OSError as exc:
        _logger.warning("cannot list %s for epoch checkpoints: %s", checkpoint_uri, scrub(str(exc)))
        return None
    by_epoch = sorted(names, key=lambda n: int(n.rsplit("-", 1)[1].split(".")[0]), reverse=True)
    for name in by_epoch:
        uri = checkpoint_object_uri(checkpoint_uri, name)
        try:
            return fetch_checkpoint(uri, key=key), uri
        except (CorruptCheckpointError, FileNotFoundError) as exc:
            _logger.warning("epoch checkpoint %s unusable: %s", uri, scrub(str(exc)))
    return None


def fetch_checkpoint(uri: str, *, key: CheckpointKey | None = None) -> str:
    """A verified local copy of the checkpoint at ``uri`` (a local file is checked in place).

    ``key``: the study's checkpoint key (default ``SEER_CHECKPOINT_KEY``; without one, a
    keyed checkpoint is verified with the driver's keyring).

    Raises:
        CorruptCheckpointError: The bytes do not match the stored seal, or it is sealed with
            another key (or none) than ``key``.
    """
    parent, _, name = uri.rstrip("/").rpartition("/")
    store = open_store(parent or ".", key=key)
    if isinstance(store, LocalStore):
        return str(store.fetch(name, store.root / name))
    handle, local = tempfile.mkstemp(prefix=f"{_DOWNLOAD_PREFIX}{os.getpid()}-", suffix=".ckpt")
    os.close(handle)
    try:
        return str(store.fetch(name, local))
    except BaseException:
        Path(local).unlink(missing_ok=True)  # a missing or corrupt object leaves no file
        raise
