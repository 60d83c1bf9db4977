"""A real data-parallel training to profile on this machine (``optuna-seer profile``).

Runs a small MLP on scikit-learn's bundled digits with ``torch.distributed`` (rendezvous on
127.0.0.1) in ``workers`` processes started by ``torch.multiprocessing``: one per GPU over NCCL
when the machine has GPUs, else CPU processes over gloo (:func:`probe_device`). Every epoch
ends with a barrier, so its time is the slowest worker's (the straggler). Rank 0 reports each
epoch's wall time and the start-up time (from launching the processes to the first epoch).
The numbers are real measurements of this machine, not of the user's model: use
:func:`optuna_seer.profiling.harness.measure_on_backend` to profile the user's own trial.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
import time
from typing import Any

from optuna_seer._ports import free_port
from optuna_seer.backends.local import accelerator_name, visible_gpus
from optuna_seer.planning.profile import Measurement


def probe_device() -> tuple[str, str]:
    """What the probe trains on here: ``(accelerator, ddp backend)``, e.g.
    ``("NVIDIA H200", "nccl")`` or ``("cpu", "gloo")``."""
    accelerator = accelerator_name()
    return accelerator, ("gloo" if accelerator == "cpu" else "nccl")


def train_worker(
    rank: int,
    world: int,
    port: int,
    epochs: int,
    data_repeats: int,
    launched_at: float,
    results: Any,
    use_gpu: bool = False,
) -> None:
    from sklearn.datasets import load_digits
    import torch
    from torch import distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    torch.set_num_threads(1)
    device = torch.device("cuda", rank) if use_gpu else torch.device("cpu")
    if use_gpu:
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if use_gpu else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        device_id=device if use_gpu else None,
    )
    try:
        digits = load_digits()
        features = torch.tensor(digits.data, dtype=torch.float32).repeat(data_repeats, 1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long).repeat(data_repeats)
        dataset = TensorDataset(features, labels)
        sampler: DistributedSampler[Any] = DistributedSampler(
            dataset, num_replicas=world, rank=rank, seed=0
        )
        loader = DataLoader(dataset, batch_size=64, sampler=sampler)
        torch.manual_seed(0)
        model = DistributedDataParallel(
            torch.nn.Sequential(
                torch.nn.Linear(64, 256),
                torch.nn.ReLU(),
                torch.nn.Linear(256, 256),
                torch.nn.ReLU(),
                torch.nn.Linear(256, 10),
            ).to(device),
            device_ids=[rank] if use_gpu else None,
        )
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        dist.barrier()
        first_epoch_at = time.time()
        times = []
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            start = time.perf_counter()
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            if use_gpu:
                torch.cuda.synchronize(device)
            dist.barrier()
            times.append(time.perf_counter() - start)
        if rank == 0:
            results.put({"startup": first_epoch_at - launched_at, "epochs": times})
    finally:
        dist.destroy_process_group()


def measure_local_ddp(
    workers: Sequence[int] = (1, 2), *, epochs: int = 3, data_repeats: int = 4, launches: int = 1
) -> tuple[Measurement, ...]:
    """Time a real data-parallel training at each worker count, ``launches`` times each
    (more launches: a steadier start-up estimate; the first pays cold caches): one process
    per GPU over NCCL on a GPU machine, CPU processes over gloo otherwise.

    Raises:
        ValueError: A worker count above the number of visible GPUs (on a GPU machine).

    Example (slow: starts processes)::

        measurements = measure_local_ddp((1, 2), epochs=2)
        profile = fit_profile(measurements, accelerator=probe_device()[0])
    """
    import torch.multiprocessing as mp

    if epochs < 1 or data_repeats < 1 or launches < 1:
        raise ValueError(
            f"epochs={epochs}, data_repeats={data_repeats} and launches={launches} must be >= 1."
        )
    if not workers or any(w < 1 for w in workers):
        raise ValueError(f"workers={list(workers)!r} must be counts >= 1, e.g. 1,2.")
    gpus = len(visible_gpus())
    if gpus and max(workers) > gpus:
        raise ValueError(
            f"workers={list(workers)!r}: this machine has {gpus} GPU(s), one per worker; "
            f"use counts up to {gpus} (e.g. --workers {' '.join(_powers_up_to(gpus))}), or hide "
            "the GPUs (CUDA_VISIBLE_DEVICES=) to profile CPU processes."
        )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    context = mp.get_context("spawn")
    measurements = []
    for count in workers:
        epoch_times: list[float] = []
        startups: list[float] = []
        for _ in range(launches):
            results = context.SimpleQueue()
            launched_at = time.time()
            mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
                train_worker,
                args=(count, free_port(), epochs, data_repeats, launched_at, results, gpus > 0),
                nprocs=count,
                join=True,
                start_method="spawn",
            )
            report = results.get()
            epoch_times += report["epochs"]
            startups.append(float(report["startup"]))
        measurements.append(Measurement(count, tuple(epoch_times), tuple(startups)))
    return tuple(measurements)


def _powers_up_to(limit: int) -> list[str]:
    """``1 2 4 ... limit`` (``limit`` included) as strings, for messages."""
    counts = [1]
    while counts[-1] * 2 < limit:
        counts.append(counts[-1] * 2)
    if counts[-1] != limit:
        counts.append(limit)
    return [str(c) for c in counts]
