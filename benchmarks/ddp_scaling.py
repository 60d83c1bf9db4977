"""Measure the data-parallel scaling curve of the example's Lightning model on this machine.

For each worker count k it runs ``torchrun --standalone --nproc_per_node=k`` on this file in
worker mode: Lightning DDP (NCCL across k GPUs, gloo across k CPU processes) trains the digits
MLP of
``examples/lightning_digits.py`` with a fixed *global* batch (strong scaling) and rank 0
times every epoch after the first. Prints seconds per epoch and speedup per k, and writes the
curve as JSON, ready for ``Workload(scaling=...)``. By default it runs on this machine's
GPUs when it has any (``--accelerator auto``) at 1, 2, 4 ... workers up to its slot count
(:func:`optuna_seer.backends.local.machine_slots`).

    python benchmarks/ddp_scaling.py
    python benchmarks/ddp_scaling.py --accelerator cpu --workers 1 2
    python benchmarks/ddp_scaling.py --accelerator gpu --workers 1 2 4 8 --out curve.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "lightning_digits.py"


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("lightning_digits", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(args: argparse.Namespace) -> None:
    """One DDP rank (started by torchrun): train and, on rank 0, write epoch times."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    example = _example()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    pl.seed_everything(0, verbose=False)
    x_train, y_train, _, _ = example.digits_tensors(args.repeats)
    data = TensorDataset(x_train, y_train)
    sampler = DistributedSampler(
        data, num_replicas=world, rank=int(os.environ.get("RANK", "0")), shuffle=True, seed=0
    )
    loader = DataLoader(data, batch_size=args.global_batch // world, sampler=sampler)
    model = example.build_module(
        {"hidden": args.hidden, "lr": 0.05, "weight_decay": 1e-4}, args.epochs
    )
    times: list[float] = []

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if args.accelerator == "gpu":
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            if args.accelerator == "gpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=world,
        strategy="ddp",
        max_epochs=args.epochs,
        callbacks=[EpochTimer()],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
        default_root_dir=tempfile.gettempdir(),
    )
    trainer.fit(model, loader)
    if trainer.global_rank == 0:
        backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else "-"
        Path(args.result).write_text(json.dumps({"epochs": times, "backend": backend}))


def _default_workers(slots: int) -> list[int]:
    """1, 2, 4 ... and ``slots`` itself."""
    counts = [1]
    while counts[-1] * 2 < slots:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == slots else [*counts, slots]


def _machine(accelerator: str) -> tuple[str, int, str]:
    """``(accelerator, slots, device name)`` for ``--accelerator`` on this machine."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from optuna_seer.backends.local import cpu_slots, gpu_name, visible_gpus

    gpus = len(visible_gpus())
    if accelerator == "auto":
        accelerator = "gpu" if gpus else "cpu"
    if accelerator == "gpu":
        if not gpus:
            raise SystemExit("--accelerator gpu: no GPU is visible (torch.cuda.device_count() 0).")
        return "gpu", gpus, gpu_name(0)
    return "cpu", cpu_slots(), "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        help="worker counts (default: 1, 2, 4 ... up to this machine's GPUs, else CPU slots)",
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=24, help="noisy copies of digits")
    parser.add_argument("--global-batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--out", default=None, help="write the curve as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    args.accelerator, slots, device = _machine(args.accelerator)
    args.workers = args.workers or _default_workers(slots)
    if args.accelerator == "gpu" and max(args.workers) > slots:
        raise SystemExit(
            f"--workers {args.workers}: this machine has {slots} GPU(s), one per worker; "
            f"use counts up to {slots}."
        )
    rows = []
    for k in args.workers:
        with tempfile.TemporaryDirectory() as scratch:
            result = Path(scratch) / "epochs.json"
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={k}",
                __file__,
                "--worker",
                f"--result={result}",
                f"--accelerator={args.accelerator}",
                f"--epochs={args.epochs}",
                f"--repeats={args.repeats}",
                f"--global-batch={args.global_batch}",
                f"--hidden={args.hidden}",
            ]
            started = time.perf_counter()
            subprocess.run(command, check=True)
            wall = time.perf_counter() - started
            measured = json.loads(result.read_text())
        epoch_s = statistics.median(measured["epochs"][1:] or measured["epochs"])
        rows.append((k, epoch_s, wall, measured["backend"]))
    base = rows[0][1] * rows[0][0]
    print(
        f"\n{device} data-parallel scaling, global batch {args.global_batch}, "
        f"{args.repeats}x digits, hidden {args.hidden}"
    )
    print(f"{'workers':>7} {'backend':>8} {'s/epoch':>9} {'speedup':>8} {'launch+run s':>13}")
    for k, epoch_s, wall, backend in rows:
        print(f"{k:>7} {backend:>8} {epoch_s:>9.3f} {base / epoch_s:>8.2f} {wall:>13.1f}")
    if args.out:
        curve = {str(k): round(base / epoch_s, 4) for k, epoch_s, _, _ in rows}
        Path(args.out).write_text(
            json.dumps(
                {
                    "accelerator": args.accelerator,
                    "device": device,
                    "backend": rows[-1][3],
                    "speedup": curve,
                    "seconds_per_epoch": {str(k): round(e, 4) for k, e, _, _ in rows},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
