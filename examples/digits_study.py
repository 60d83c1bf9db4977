"""Tune a torch MLP on scikit-learn's bundled digits with SEER inside plain ``study.optimize``.

Everything is real and local: the data ship inside scikit-learn (nothing is downloaded), the
study lives in SQLite, each trial trains a real model and reports validation accuracy per
epoch, and SeerPruner eliminates trials rung by rung within the deadline and the budget. A
"GPU" here is one worker slot (a CPU thread), priced at ``--price`` dollars per hour.

    python examples/digits_study.py --deadline 2m --budget 0.1 --workers 2
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
import tempfile
import time

import numpy as np
import optuna
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
import torch
from torch import nn

from optuna_seer import Budget, ClusterLimits, SeerPruner, SeerSampler, Workload, gpus_for
from optuna_seer.integration.keys import stop_reason
from optuna_seer.integration.ledger import read_ledger
from optuna_seer.integration.reruns import rerun_of
from optuna_seer.planning.plan import format_seconds

Split = tuple[torch.Tensor, torch.Tensor]


def load_splits(seed: int = 0) -> tuple[Split, Split, Split]:
    """Digits (1797 8×8 images) split 60/20/20 into train, validation and test."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, random_state=seed, stratify=y
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )

    def pair(a: np.ndarray, b: np.ndarray) -> Split:
        return torch.from_numpy(a), torch.from_numpy(b).long()

    return pair(x_train, y_train), pair(x_val, y_val), pair(x_test, y_test)


def build_model(width: int, depth: int, dropout: float) -> nn.Module:
    layers: list[nn.Module] = []
    size = 64
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
        size = width
    layers.append(nn.Linear(size, 10))
    return nn.Sequential(*layers)


def accuracy(model: nn.Module, data: Split) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(data[0]).argmax(1) == data[1]).float().mean())


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    model.train()
    order = torch.randperm(len(data[0]), generator=generator)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(data[0][index]), data[1][index]).backward()
        optimizer.step()


def make_objective(splits: tuple[Split, Split, Split], max_epochs: int):  # type: ignore[no-untyped-def]
    train, val, test = splits

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-4, 3e-1, log=True)
        width = trial.suggest_categorical("width", [32, 64, 128, 256])
        depth = trial.suggest_int("depth", 1, 3)
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        weight_decay = trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
        optimizer_name = trial.suggest_categorical("optimizer", ["adam", "sgd"])
        batch_size = trial.suggest_categorical("batch_size", [16, 32, 64, 128])
        torch.set_num_threads(gpus_for(trial))  # the plan's workers for this trial
        # A re-run of a trial parked at the last rung's door trains its configuration again,
        # from the same seed (a checkpointing objective would resume that trial's checkpoint).
        earlier = rerun_of(trial)
        seed = trial.number if earlier is None else earlier
        torch.manual_seed(seed)
        model = build_model(width, depth, dropout)
        optimizer: torch.optim.Optimizer
        if optimizer_name == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        else:
            optimizer = torch.optim.SGD(
                model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay
            )
        generator = torch.Generator().manual_seed(seed)
        value = 0.0
        for epoch in range(1, max_epochs + 1):
            train_epoch(model, optimizer, train, batch_size, generator)
            value = accuracy(model, val)
            if not np.isfinite(value):
                raise optuna.TrialPruned("diverged")
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("test_accuracy", accuracy(model, test))
        return value

    return objective


def measure_epoch_seconds(splits: tuple[Split, Split, Split], threads: int) -> float:
    """Profile: seconds of one epoch plus validation of the search space's largest model."""
    torch.set_num_threads(threads)
    model = build_model(256, 3, 0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    train_epoch(model, optimizer, splits[0], 16, generator)  # warm-up
    start = time.perf_counter()
    for _ in range(3):
        train_epoch(model, optimizer, splits[0], 16, generator)
        accuracy(model, splits[1])
    return (time.perf_counter() - start) / 3


def measure_report_seconds() -> float:
    """Profile: one ``report`` + ``should_prune`` round trip on a scratch SQLite study."""
    with tempfile.TemporaryDirectory() as scratch:
        study = optuna.create_study(storage=f"sqlite:///{scratch}/profile.db")
        trial = study.ask()
        start = time.perf_counter()
        for step in range(5):
            trial.report(0.5, step)
            trial.should_prune()
        return (time.perf_counter() - start) / 5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", default="2m")
    parser.add_argument("--budget", type=float, default=0.1, help="dollars")
    parser.add_argument("--price", type=float, default=3.0, help="dollars per slot-hour")
    parser.add_argument("--workers", type=int, default=2, help="slots used at once")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--max-configs", type=int, default=1000)
    parser.add_argument("--storage", default="sqlite:///runs/seer.db")
    parser.add_argument("--study-name", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.storage.startswith("sqlite:///"):  # runs/ is not in a fresh checkout
        Path(args.storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)

    splits = load_splits(args.seed)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report_s = measure_report_seconds()
    one = measure_epoch_seconds(splits, 1) + report_s
    two = measure_epoch_seconds(splits, 2) + report_s if args.workers >= 2 else one
    speedup = {1: 1.0, 2: min(max(one / two, 1.001), 2.0)} if args.workers >= 2 else {1: 1.0}
    workload = Workload(
        epoch_seconds=one,
        scaling=speedup,
        max_epochs=args.max_epochs,
        gpus_per_node=args.workers,
        startup_seconds=0.3,
    )
    budget = Budget(deadline=args.deadline, dollars=args.budget, price_per_gpu_hour=args.price)
    pruner = SeerPruner(
        budget,
        workload,
        reduction_factor=3,
        limits=ClusterLimits(max_gpus=args.workers),
        max_configs=args.max_configs,
    )
    print(
        f"profile: one epoch {one:.3f} s on 1 thread (storage round trip {report_s:.3f} s), "
        f"speedup {speedup}"
    )
    print(pruner.plan, flush=True)

    name = args.study_name or f"digits-{time.strftime('%Y%m%d-%H%M%S')}"
    study = optuna.create_study(
        study_name=name,
        storage=args.storage,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=args.seed)),
        pruner=pruner,
        load_if_exists=True,
    )
    study.optimize(
        make_objective(splits, args.max_epochs),
        n_jobs=args.workers,
        # No n_trials: the sampler stops the study once the plan's configurations, and the
        # re-runs of finalists parked at the last rung's door, are placed.
        timeout=budget.deadline_seconds,
    )
    ledger = read_ledger(study, pruner.plan, time.time())

    trials = study.get_trials()
    states = Counter(t.state.name for t in trials)
    reasons = Counter(
        (stop_reason(t) or "-").split(":")[0] for t in trials if t.state.name == "PRUNED"
    )
    best = study.best_trial
    print("\nreport")
    print(f"  study        {name} ({args.storage})")
    print(f"  trials       {dict(states)}; pruned by {dict(reasons)}")
    print(
        f"  time         {format_seconds(ledger.elapsed_s)} used of "
        f"{format_seconds(budget.deadline_seconds)} (plan predicted "
        f"{format_seconds(pruner.plan.predicted_seconds)})"
    )
    print(
        f"  cost         ${ledger.spent_dollars:.4f} of ${budget.dollars:.2f} "
        f"(plan predicted ${pruner.plan.predicted_cost:.4f})"
    )
    print(
        f"  best trial   #{best.number}: val acc {best.value:.4f}, "
        f"test acc {best.user_attrs.get('test_accuracy', float('nan')):.4f}"
    )
    print(f"  best params  {best.params}")


if __name__ == "__main__":
    main()
