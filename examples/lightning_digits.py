"""Tune an MLP on scikit-learn's digits with SEER, resizing Lightning DDP trials between rungs.

Run the whole job (driver, SQLite storage, a 5-minute deadline; one slot per GPU of this
machine, else one per CPU core up to 8, unless ``--slots N``)::

    python examples/lightning_digits.py --deadline 5m --budget 1.0 \\
        --storage sqlite:///runs/seer.db --out runs/

Plan from measured times instead of the defaults (``--epoch-seconds 5 --startup-seconds 20``)
by profiling this training first (``scripts/demo.sh`` does, once)::

    optuna-seer profile --backend local --script examples/lightning_digits.py:train \\
        --workers 1 2 --epochs 1 3 --contention 2 --out runs/profile.json
    python examples/lightning_digits.py ... --profile runs/profile.json

Run the same command again and it continues where it stood (the driver was killed, the
machine rebooted): same study, same plan, finished rungs not repeated, the deadline still
counted from the first start. Once the study has finished, the same command prints its
stored result and runs nothing; ``--fresh`` starts a new study (``digits-2``, ...) and
``--study-name`` picks one by name.

The driver plans the job (``SeerPruner``), asks Optuna for configurations
(``SeerSampler``), and hands them to :class:`~optuna_seer.execution.tuner.ElasticTuner`, which
launches :func:`train` once per trial per rung with the plan's number of workers. Nothing is
downloaded: the data set ships with scikit-learn.

Data order across world sizes: the training set is split by a seeded
``DistributedSampler`` (``ctx.distributed_sampler``) and the *global* batch size is fixed
(``ctx.per_worker_batch_size``), so one epoch sees the same global batches in the same order
on 1 or 2 workers; a trial resized between rungs continues the same optimisation.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
import os
from pathlib import Path
import sys
from typing import Any

import optuna

GLOBAL_BATCH = 64
# Noisy copies of the 1,440 training digits, so an epoch takes seconds rather than
# milliseconds and process start-up does not dwarf training (override: DIGITS_REPEATS).
DATA_REPEATS = 24


def search_space(trial: optuna.Trial) -> None:
    """The hyperparameters SEER tunes (sampled in the driver, passed to workers as JSON)."""
    trial.suggest_float("lr", 1e-3, 3e-1, log=True)
    trial.suggest_int("hidden", 32, 512, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)


def digits_tensors(repeats: int, seed: int = 0) -> tuple[Any, ...]:
    """Standardised digits: (train x, train y, val x, val y); train has ``repeats`` noisy copies."""
    import numpy as np
    from sklearn.datasets import load_digits
    import torch

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    x, y = x[order].astype("float32") / 16.0, y[order]
    n_val = 357
    x_train, y_train, x_val, y_val = x[n_val:], y[n_val:], x[:n_val], y[:n_val]
    copies = [x_train] + [
        (x_train + rng.normal(0, 0.1, x_train.shape)).astype("float32") for _ in range(repeats - 1)
    ]
    x_train = np.concatenate(copies)
    y_train = np.concatenate([y_train] * repeats)
    return (
        torch.from_numpy(x_train),
        torch.from_numpy(y_train),
        torch.from_numpy(x_val),
        torch.from_numpy(y_val),
    )


def build_module(params: dict[str, Any], max_epochs: int) -> Any:
    import pytorch_lightning as pl
    import torch
    from torch import nn

    class DigitsMLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            hidden = int(params["hidden"])
            self.net = nn.Sequential(
                nn.Linear(64, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, 10),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)  # type: ignore[no-any-return]

        def training_step(self, batch: Any, _: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            return loss

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            logits = self(x)
            acc = (logits.argmax(dim=1) == y).float().mean()
            self.log("val_acc", acc, sync_dist=True, on_epoch=True)
            # Breaks ties in val_acc when SEER picks the best finalist
            # (optuna_seer.integration.tie_break).
            loss = nn.functional.cross_entropy(logits, y)
            self.log("val_loss", loss, sync_dist=True, on_epoch=True)

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(
                self.parameters(),
                lr=float(params["lr"]),
                momentum=0.9,
                weight_decay=float(params["weight_decay"]),
            )
            # The schedule spans the full training, not the rung, so resizes do not change it.
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
            return {"optimizer": optimizer, "lr_scheduler": schedule}

    return DigitsMLP()


def train() -> None:
    """One launch of one trial: train to ``ctx.target_epochs``, report, checkpoint."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from optuna_seer.worker.context import trial_context
    from optuna_seer.worker.lightning import SeerCallback

    ctx = trial_context()
    pl.seed_everything(int(ctx.params.get("seed", 0)), verbose=False)
    x_train, y_train, x_val, y_val = digits_tensors(
        int(os.environ.get("DIGITS_REPEATS", DATA_REPEATS))
    )
    train_set = TensorDataset(x_train, y_train)
    batch = ctx.per_worker_batch_size(GLOBAL_BATCH)
    train_loader = DataLoader(
        train_set, batch_size=batch, sampler=ctx.distributed_sampler(train_set, seed=0)
    )
    val_loader = DataLoader(TensorDataset(x_val, y_val), batch_size=256)
    model = build_module(dict(ctx.params), ctx.max_epochs)
    # The launch's world (devices, DDP, no Lightning checkpoints/logger) merged with ours: add
    # your own logger= or callbacks= here and they join the launch's.
    trainer = pl.Trainer(
        **ctx.lightning_trainer_kwargs(
            max_epochs=ctx.target_epochs,
            callbacks=[SeerCallback(ctx, monitor="val_acc", tie_break="val_loss")],
        )
    )
    # weights_only: resuming loads tensors and numbers, never pickled code.
    trainer.fit(model, train_loader, val_loader, ckpt_path=ctx.resume_checkpoint, weights_only=True)


def add_promote_by(parser: argparse.ArgumentParser) -> None:
    """``--promote-by``: what SEER's rung decisions rank by (``SeerPruner(promote_by=...)``)."""
    parser.add_argument(
        "--promote-by",
        choices=["value", "tie_break"],
        default="value",
        help="rung decisions rank by val_acc, or by the val_loss the workers also report "
        "(SeerPruner(promote_by=...)); the best trial is chosen by val_acc either way",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="Running the same command again continues its study if it was interrupted "
        "(same plan, finished rungs kept, the deadline counted from the first start) or, if "
        "it finished, prints its stored result and runs nothing. A command whose deadline, "
        "budget or slots differ from the study's is refused; add --fresh for a new study.",
    )
    parser.add_argument("--deadline", default="5m", help="wall-clock limit, e.g. 5m or 300")
    parser.add_argument("--budget", type=float, default=1.0, help="dollars")
    parser.add_argument(
        "--price-per-slot-hour",
        type=float,
        default=3.0,
        help="what one slot costs per hour (priced like a GPU)",
    )
    parser.add_argument(
        "--slots",
        type=int,
        default=None,
        help="workers at once (default: one per visible GPU, else one per CPU core, up to 8)",
    )
    parser.add_argument("--storage", default="sqlite:///runs/seer.db")
    parser.add_argument("--out", default="runs/", help="report, timeline, logs, checkpoints")
    parser.add_argument("--checkpoints", default=None, help="directory or s3://bucket/prefix")
    parser.add_argument("--max-configs", type=int, default=9)
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument(
        "--epoch-seconds", type=float, default=5.0, help="profiled seconds per epoch on one slot"
    )
    parser.add_argument(
        "--startup-seconds",
        type=float,
        default=20.0,
        help="profiled seconds to (re)launch a trial (start-up, resume, save)",
    )
    parser.add_argument(
        "--scaling",
        default="amdahl:0.8",
        help="speedup of one trial on k slots (2 CPU cores: far from linear)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="plan from this measured profile (epoch time, start-up, scaling and contention "
        "of this training on this machine; 'optuna-seer profile --backend local --script "
        "examples/lightning_digits.py:train ...' writes one) instead of --epoch-seconds, "
        "--startup-seconds and --scaling",
    )
    parser.add_argument(
        "--safety",
        type=float,
        default=0.15,
        help="plan for this fraction less than the deadline (start-up times vary on a busy "
        "machine); the executor then holds the job to the planned deadline",
    )
    parser.add_argument(
        "--study-name",
        default="digits",
        help="the study (series) to run or continue: the newest of NAME, NAME-2, ... in the "
        "storage (default: %(default)s)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start a new study under the next free name of the series (NAME-2, ...) instead "
        "of continuing or re-reporting the newest one",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_promote_by(parser)
    args = parser.parse_args(argv)

    from optuna_seer.backends.local import LocalBackend, accelerator_name, machine_slots
    from optuna_seer.cli.plots import plot_timeline
    from optuna_seer.execution.report import format_report
    from optuna_seer.execution.tuner import ElasticTuner, StudyMismatchError, resumable_study_name
    from optuna_seer.integration.pruner import SeerPruner
    from optuna_seer.integration.sampler import SeerSampler
    from optuna_seer.planning.budget import Budget, parse_duration
    from optuna_seer.planning.cost_model import ClusterLimits
    from optuna_seer.planning.workload import Workload
    from optuna_seer.profiling.harness import load_profile

    if args.slots is None:
        args.slots = machine_slots()
    print(f"{args.slots} slot(s) on {accelerator_name()}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.storage.startswith("sqlite:///"):
        Path(args.storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    epoch_cv: float | Mapping[int, float] = 0.0  # a measured profile's spread: plan at p95
    if args.profile is not None:
        try:
            profile = load_profile(args.profile)
        except ValueError as exc:
            parser.error(str(exc))
        workload = profile.workload(args.max_epochs, gpus_per_node=args.slots)
        epoch_cv = profile.epoch_cv
        print(
            f"workload measured in {args.profile}: {workload.epoch_seconds:.2f} s per epoch on "
            f"one slot, {workload.startup_seconds:.1f} s start-up, {args.slots} launches at "
            f"once {workload.contention_on(args.slots):.2f}x slower",
            flush=True,
        )
    else:
        workload = Workload(
            epoch_seconds=args.epoch_seconds,
            scaling=args.scaling,
            max_epochs=args.max_epochs,
            gpus_per_node=args.slots,
            startup_seconds=args.startup_seconds,
        )
    if not 0 <= args.safety < 1:
        parser.error(f"--safety={args.safety} must lie in [0, 1).")
    deadline_s = parse_duration(args.deadline) * (1 - args.safety)
    print(f"planning for {deadline_s:.0f} s of the {args.deadline} deadline", flush=True)
    pruner = SeerPruner(
        Budget(
            deadline=deadline_s, dollars=args.budget, price_per_gpu_hour=args.price_per_slot_hour
        ),
        workload,
        reduction_factor=3,
        limits=ClusterLimits(max_gpus=args.slots),
        max_configs=args.max_configs,
        promote_by=args.promote_by,
        epoch_cv=epoch_cv,
    )
    print(pruner.plan, flush=True)
    name = resumable_study_name(args.storage, args.study_name, fresh=args.fresh)
    study = optuna.create_study(
        storage=args.storage,
        study_name=name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=args.seed)),
        pruner=pruner,
        load_if_exists=True,
    )
    print(f"study {name!r} in {args.storage}", flush=True)
    tuner = ElasticTuner(
        study,
        plan=pruner.plan,
        backend=LocalBackend(slots=args.slots, log_dir=out / "logs"),
        train=train,
        search_space=search_space,
        checkpoints=args.checkpoints or str(out / "ckpt"),
        workload=workload,
    )
    try:
        result = tuner.run()
    except StudyMismatchError as exc:
        parser.exit(2, f"error: {exc}\nStart a new study with --fresh or --study-name NAME.\n")
    except KeyboardInterrupt:
        parser.exit(
            130, f"interrupted: study {name!r} is paused; run the same command to continue.\n"
        )
    if result.reloaded:
        print(
            f"study {name!r} already finished; nothing was run. Its stored result follows "
            "(a new run: add --fresh).",
            flush=True,
        )
    report = format_report(result, accelerator=accelerator_name())
    print(report)
    (out / "report.txt").write_text(report + "\n")
    plot_timeline(result, out / "timeline.png")
    print(f"timeline: {out / 'timeline.png'}")
    return 0 if result.best_trial is not None else 1


if __name__ == "__main__":
    sys.exit(main())
