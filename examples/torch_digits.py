"""The same SEER contract without Lightning: plain PyTorch DDP on scikit-learn's digits.

A launch reads its :func:`~optuna_seer.worker.context.trial_context`, resumes from the
checkpoint it is given, trains to ``ctx.target_epochs``, reports each epoch's validation
accuracy (rank 0, through the storage), stops early when the executor says so (rank 0 reads
the verdict and broadcasts it to every rank) and saves its rung-end checkpoint::

    python examples/torch_digits.py --deadline 3m --slots 2 --storage sqlite:///runs/torch.db \\
        --out runs/torch/

Running the same command again continues its study if it was interrupted, or prints the
stored result if it finished (``--fresh``: a new study).

Resizing: the checkpoint holds the model, optimizer and LR-scheduler state and the epoch
counter; the data of every epoch is one seeded permutation split across ranks
(``ctx.distributed_sampler``) with a fixed global batch, so a trial resumed on another
number of workers continues the same optimisation.
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


def _digits(repeats: int) -> tuple[Any, ...]:
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
    """One launch of one trial (plain PyTorch, DDP over gloo when there are several workers)."""
    import torch
    from torch import nn
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset

    from optuna_seer.integration.tie_break import TieBreak
    from optuna_seer.worker.context import trial_context

    ctx = trial_context()
    distributed = ctx.world_size > 1
    if distributed:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    x_train, y_train, x_val, y_val = _digits(int(os.environ.get("DIGITS_REPEATS", "8")))
    train_set = TensorDataset(x_train, y_train)
    sampler = ctx.distributed_sampler(train_set, seed=0)
    loader = DataLoader(
        train_set, batch_size=ctx.per_worker_batch_size(GLOBAL_BATCH), sampler=sampler
    )
    hidden = int(ctx.params["hidden"])
    model: nn.Module = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=float(ctx.params["lr"]), momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=ctx.max_epochs)
    epoch = 0
    if ctx.resume_checkpoint is not None:
        # weights_only: a checkpoint holds tensors and numbers; loading one never runs code.
        state = torch.load(ctx.resume_checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        epoch = int(state["epoch"])
        ctx.discard_resume_copy()
    ddp = nn.parallel.DistributedDataParallel(model) if distributed else model
    started, trained_until, first = time.monotonic(), time.monotonic(), epoch
    while epoch < ctx.target_epochs:
        sampler.set_epoch(epoch)
        ddp.train()
        for x, y in loader:
            optimizer.zero_grad()
            nn.functional.cross_entropy(ddp(x), y).backward()
            optimizer.step()
        schedule.step()
        epoch += 1
        trained_until = time.monotonic()
        stop = [False]
        if ctx.is_global_zero:
            with torch.no_grad():
                logits = model(x_val)
                accuracy = (logits.argmax(dim=1) == y_val).float().mean().item()
                loss = nn.functional.cross_entropy(logits, y_val).item()
            # The loss breaks ties in accuracy when SEER picks the best finalist.
            ctx.report(epoch, accuracy, tie_break=TieBreak("val_loss", loss))
            stop = [ctx.should_stop()]
        if distributed:
            dist.broadcast_object_list(stop, src=0)
        if stop[0]:
            break
    if ctx.is_global_zero:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "last.pt"
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "epoch": epoch,
                },
                path,
            )
            ctx.save_checkpoint(path)
        ctx.record_training(trained_until - started, epoch - first)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Running the same command again continues its study if it was interrupted or, "
        "if it finished, prints its stored result and runs nothing; --fresh starts a new one.",
    )
    parser.add_argument("--deadline", default="3m")
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--storage", default="sqlite:///runs/torch.db")
    parser.add_argument("--out", default="runs/torch/")
    parser.add_argument("--max-configs", type=int, default=6)
    parser.add_argument(
        "--study-name",
        default="torch-digits",
        help="the study (series) to run or continue: the newest of NAME, NAME-2, ...",
    )
    parser.add_argument(
        "--fresh", action="store_true", help="start a new study under the next free name"
    )
    args = parser.parse_args(argv)

    from optuna_seer.backends.local import LocalBackend
    from optuna_seer.cli.plots import plot_timeline
    from optuna_seer.execution.report import format_report
    from optuna_seer.execution.tuner import ElasticTuner, StudyMismatchError, resumable_study_name
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
        startup_seconds=8.0,
    )
    pruner = SeerPruner(
        Budget(deadline=args.deadline, dollars=args.budget, price_per_gpu_hour=3.0),
        workload,
        limits=ClusterLimits(max_gpus=args.slots),
        max_configs=args.max_configs,
    )
    print(pruner.plan, flush=True)
    name = resumable_study_name(args.storage, args.study_name, fresh=args.fresh)
    study = optuna.create_study(
        storage=args.storage,
        study_name=name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=0)),
        pruner=pruner,
        load_if_exists=True,
    )
    print(f"study {name!r} in {args.storage}", flush=True)
    try:
        result = ElasticTuner(
            study,
            backend=LocalBackend(slots=args.slots, log_dir=out / "logs"),
            train=train,
            checkpoints=str(out / "ckpt"),
            workload=workload,
        ).run()
    except StudyMismatchError as exc:
        parser.exit(2, f"error: {exc}\nStart a new study with --fresh or --study-name NAME.\n")
    except KeyboardInterrupt:
        parser.exit(
            130, f"interrupted: study {name!r} is paused; run the same command to continue.\n"
        )
    if result.reloaded:
        print(f"study {name!r} already finished; nothing was run (a new run: --fresh).")
    print(format_report(result))
    plot_timeline(result, out / "timeline.png")
    return 0 if result.best_trial is not None else 1


if __name__ == "__main__":
    sys.exit(main())
