"""``study.optimize`` with SEER on this machine's workers: survivors get more of them.

The first way to use optuna-seer: a plain Optuna objective, the SEER pair, and
:func:`optuna_seer.rungs`, which trains each trial rung by rung on workers it leases from this
machine's pool (one per visible GPU, else CPU processes; ``--slots N`` to choose). A
configuration that survives a rung comes back for the next one on the plan's worker count, as
a Lightning DDP run (NCCL across GPUs, gloo across CPU processes), resumed from its checkpoint;
the study never uses more workers than the pool has, and a pruned trial's log line says why::

    python examples/optimize_elastic.py --deadline 4m --budget 1.0 \\
        --storage sqlite:///runs/optimize.db --out runs/optimize

Several processes (or machines sharing one RDB or journal file) can run the same command on
the same study: leases live in the study's storage, so they share the pool (give each
machine's pool its own name with ``--pool``). Nothing is downloaded: the digits ship with
scikit-learn. The training program is the one :class:`~optuna_seer.ElasticTuner` launches in
``examples/lightning_digits.py``, the synchronous driver built on the same pieces.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

import optuna

HERE = Path(__file__).resolve().parent
TRAIN = f"{HERE / 'lightning_digits.py'}:train"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    from lightning_digits import add_promote_by, search_space

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deadline", default="4m", help="wall-clock limit, e.g. 4m or 240")
    parser.add_argument("--budget", type=float, default=1.0, help="dollars")
    parser.add_argument("--price-per-slot-hour", type=float, default=1.0)
    parser.add_argument("--slots", type=int, default=None, help="workers (default: machine's)")
    parser.add_argument("--pool", default=None, help="pool name (default: the host name)")
    parser.add_argument("--storage", default="sqlite:///runs/optimize.db")
    parser.add_argument("--study-name", default="optimize-digits")
    parser.add_argument("--out", default="runs/optimize", help="checkpoints and launch logs")
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--max-configs", type=int, default=9)
    add_promote_by(parser)
    parser.add_argument("--epoch-seconds", type=float, default=5.0)
    parser.add_argument("--startup-seconds", type=float, default=20.0)
    parser.add_argument("--scaling", default="amdahl:0.8")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from optuna_seer import (
        Budget,
        ClusterLimits,
        SeerProgress,
        SeerPruner,
        SeerSampler,
        WorkerPool,
        Workload,
        best_finalist,
        rungs,
    )
    from optuna_seer.planning.budget import parse_duration

    pool = WorkerPool.of_machine(size=args.slots, name=args.pool)
    where = f"GPUs {','.join(pool.gpus)}" if pool.gpus else "CPU processes"
    print(f"pool {pool.name!r}: {pool.size} worker(s), {where}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.storage.startswith("sqlite:///"):
        Path(args.storage[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    pruner = SeerPruner(
        Budget(
            deadline=parse_duration(args.deadline),
            dollars=args.budget,
            price_per_gpu_hour=args.price_per_slot_hour,
        ),
        Workload(
            epoch_seconds=args.epoch_seconds,
            scaling=args.scaling,
            max_epochs=args.max_epochs,
            gpus_per_node=pool.size,
            startup_seconds=args.startup_seconds,
        ),
        reduction_factor=3,
        limits=ClusterLimits(max_gpus=pool.size),  # the plan never asks for more than the pool
        max_configs=args.max_configs,
        promote_by=args.promote_by,
    )
    print(pruner.plan, flush=True)
    study = optuna.create_study(
        storage=args.storage,
        study_name=args.study_name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.TPESampler(seed=args.seed), widen=True),
        pruner=pruner,
        load_if_exists=True,
    )

    def objective(trial: optuna.Trial) -> float:
        search_space(trial)
        value = float("nan")
        for rung in rungs(trial, pool=pool, checkpoints=out / "ckpt", log_dir=out / "logs"):
            value = rung.run(TRAIN, trial.params)  # leases rung.workers, trains, may prune
        return value

    # Two threads per worker: a trial that waits (for workers, or for its place in the last
    # rung to be certain) holds no worker, and another thread's trial can use it meanwhile.
    # The bar: configurations against the plan, rung, dollars, time left, best value.
    with SeerProgress(study) as progress:
        study.optimize(objective, n_jobs=2 * pool.size, callbacks=[progress])
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        print("no configuration trained to the end within the deadline and budget")
        return 1
    plan = pruner.plan
    since = plan.rungs[-2].resource if len(plan.rungs) > 1 else 0
    best = best_finalist(finished, since, plan.max_epochs, study.direction)
    print(f"SEER's pick: trial {best.number}, value {best.value:.4f}, params {best.params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
