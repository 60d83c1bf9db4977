"""The SEER contract with Lightning Fabric: DDP on k CPU processes (or GPUs) on scikit-learn's
digits, run by the worker context.

A launch reads its :func:`~optuna_seer.worker.context.trial_context`, builds
``Fabric(**ctx.fabric_kwargs())`` (``strategy="ddp"`` over gloo on CPU, NCCL on GPU, when the
backend started several workers under ``torchrun``; ``fabric.launch()`` joins them), resumes
from the checkpoint it is given, trains to ``ctx.target_epochs``, reports each epoch's
validation accuracy (rank 0, through the storage), stops when the executor says so (rank 0
reads the verdict, ``fabric.broadcast`` shares it), stores the state inside the rung every
epoch (``SEER_CHECKPOINT_EVERY_EPOCHS`` / ``_MINUTES``) and on SIGTERM, and saves its
rung-end checkpoint::

    python examples/fabric_digits.py --deadline 3m --slots 2 --storage sqlite:///runs/fabric.db \\
        --out runs/fabric/

The same function runs under any backend:
``ElasticTuner(..., train="examples/fabric_digits.py:train")``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

import optuna

GLOBAL_BATCH = 64


def search_space(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 1e-3, 3e-1, log=True)
    trial.suggest_int("hidden", 32, 256, log=True)


def digits(repeats: int) -> tuple[Any, ...]:
    """Train and validation tensors of scikit-learn's digits (shipped with it: no download);
    the training set ``repeats`` times, with a little noise on each copy after the first."""
    import numpy as np
    from sklearn.datasets import load_digits
    import torch

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order].astype("float32") / 16.0, y[order]
    x_train, y_train, x_val, y_val = x[357:], y[357:], x[:357], y[:357]
    noisy = [x_train] + [
        (x_train + rng.normal(0, 0.1, x_train.shape)).astype("float32") for _ in range(repeats - 1)
    ]
    return (
        torch.from_numpy(np.concatenate(noisy)),
        torch.from_numpy(np.concatenate([y_train] * repeats)),
        torch.from_numpy(x_val),
        torch.from_numpy(y_val),
    )


def train() -> None:
    """One launch of one trial with Lightning Fabric."""
    from lightning.fabric import Fabric
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from optuna_seer.integration.tie_break import TieBreak
    from optuna_seer.worker.context import trial_context
    from optuna_seer.worker.epoch_checkpoints import EpochCheckpoints, catch_sigterm

    ctx = trial_context()
    fabric = Fabric(**ctx.fabric_kwargs())
    fabric.launch()  # under torchrun: joins the processes the backend started
    fabric.seed_everything(0)
    x_train, y_train, x_val, y_val = digits(int(os.environ.get("DIGITS_REPEATS", "8")))
    train_set = TensorDataset(x_train, y_train)
    # One seeded permutation per epoch split across ranks, a fixed global batch: a trial
    # resumed on another number of workers continues the same optimisation.
    sampler = ctx.distributed_sampler(train_set, seed=0)
    loader = DataLoader(
        train_set, batch_size=ctx.per_worker_batch_size(GLOBAL_BATCH), sampler=sampler
    )
    loader = fabric.setup_dataloaders(loader, use_distributed_sampler=False)
    hidden = int(ctx.params["hidden"])
    module = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optimizer = torch.optim.SGD(module.parameters(), lr=float(ctx.params["lr"]), momentum=0.9)
    model, optimizer = fabric.setup(module, optimizer)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=ctx.max_epochs)
    state: dict[str, Any] = {
        "model": model,
        "optimizer": optimizer,
        "schedule": schedule,
        "epoch": 0,
    }
    if ctx.resume_checkpoint is not None:
        # weights_only: a checkpoint holds tensors and numbers; loading one never runs code.
        fabric.load(ctx.resume_checkpoint, state, weights_only=True)
        ctx.discard_resume_copy()
    epoch = first = int(state["epoch"])
    checkpoints = EpochCheckpoints(ctx)
    checkpoints.start(epoch)
    scratch = Path(tempfile.gettempdir())
    pending = scratch / f"seer-fabric-{os.getpid()}-{ctx.trial_number}-{ctx.rung}-epoch.ckpt"
    started = trained_until = time.monotonic()
    with catch_sigterm() as sigterm:
        while epoch < ctx.target_epochs:
            sampler.set_epoch(epoch)
            model.train()
            for x, y in loader:
                if sigterm:  # preempted or stopped: keep the newest epoch, then go
                    checkpoints.flush()
                    sys.exit(128 + 15)
                optimizer.zero_grad()
                fabric.backward(nn.functional.cross_entropy(model(x), y))
                optimizer.step()
            schedule.step()
            epoch += 1
            state["epoch"] = epoch
            trained_until = time.monotonic()
            stop = due = False
            if fabric.global_rank == 0:
                model.eval()
                with torch.no_grad():
                    logits = module(x_val.to(fabric.device))
                    accuracy = (logits.argmax(dim=1).cpu() == y_val).float().mean().item()
                    loss = nn.functional.cross_entropy(logits.cpu(), y_val).item()
                ctx.report(epoch, accuracy, tie_break=TieBreak("val_loss", loss))
                stop = ctx.should_stop()
                due = not stop and epoch < ctx.target_epochs and checkpoints.due(epoch)
            stop, due = fabric.broadcast((stop, due), src=0)
            if stop:
                break
            if epoch < ctx.target_epochs:
                fabric.save(pending, state)  # every rank calls it; rank 0 writes
                checkpoints.epoch_ended(epoch, pending, store=due)
    with tempfile.TemporaryDirectory() as scratch_dir:
        path = Path(scratch_dir) / f"rank-{fabric.global_rank}.ckpt"
        fabric.save(path, state)
        if fabric.global_rank == 0:
            ctx.save_checkpoint(path)
            checkpoints.rung_stored()
            pending.unlink(missing_ok=True)
            ctx.record_training(trained_until - started, epoch - first)
    fabric.barrier()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", default="3m")
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--storage", default="sqlite:///runs/fabric.db")
    parser.add_argument("--out", default="runs/fabric/")
    parser.add_argument("--max-configs", type=int, default=6)
    parser.add_argument("--study-name", default="fabric-digits")
    args = parser.parse_args(argv)

    from optuna_seer.backends.local import LocalBackend
    from optuna_seer.execution.report import format_report
    from optuna_seer.execution.tuner import ElasticTuner
    from optuna_seer.integration.pruner import SeerPruner
    from optuna_seer.integration.sampler import SeerSampler
    from optuna_seer.planning.budget import Budget
    from optuna_seer.planning.cost_model import ClusterLimits
    from optuna_seer.planning.workload import Workload

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.storage.startswith("sqlite:///"):
        Path(args.storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    workload = Workload(
        epoch_seconds=1.0,
        scaling="amdahl:0.8",
        max_epochs=9,
        gpus_per_node=args.slots,
        startup_seconds=10.0,
    )
    pruner = SeerPruner(
        Budget(deadline=args.deadline, dollars=args.budget, price_per_gpu_hour=3.0),
        workload,
        limits=ClusterLimits(max_gpus=args.slots),
        max_configs=args.max_configs,
    )
    study = optuna.create_study(
        storage=args.storage,
        study_name=args.study_name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=0)),
        pruner=pruner,
        load_if_exists=True,
    )
    result = ElasticTuner(
        study,
        backend=LocalBackend(slots=args.slots, log_dir=out / "logs"),
        train=train,
        checkpoints=str(out / "ckpt"),
        workload=workload,
    ).run()
    print(format_report(result))
    return 0 if result.best_trial is not None else 1


if __name__ == "__main__":
    sys.exit(main())
