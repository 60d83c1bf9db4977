"""A driver process for the killed-driver tests: a tiny two-rung plan on real LocalBackend
workers (Lightning DDP on CPU, SQLite storage).

Usage: ``python resume_driver.py SQLITE_URL WORKDIR [--final-workers K] [--final-epochs E]
[--repeats R]``; prints the report. Run again with the same arguments, it continues the study
(``ElasticTuner``'s default ``resume="auto"``) or, once finished, prints its stored result.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import optuna

from optuna_seer.backends.local import LocalBackend
from optuna_seer.execution.report import format_report
from optuna_seer.execution.tuner import ElasticTuner
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload

REPO = Path(__file__).resolve().parents[2]
TRAIN = f"{REPO / 'examples' / 'lightning_digits.py'}:train"
PRICE = 3.0 / 3600
STUDY = "resume"


def search_space(trial: optuna.Trial) -> None:
    trial.suggest_float("lr", 0.02, 0.1, log=True)
    trial.suggest_int("hidden", 32, 48)
    trial.suggest_float("weight_decay", 1e-5, 1e-4, log=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--final-workers", type=int, default=1)
    parser.add_argument("--final-epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="copies of the digits per epoch")
    args = parser.parse_args()
    epochs = args.final_epochs
    workload = Workload(epoch_seconds=1.0, scaling="linear", max_epochs=epochs, startup_seconds=15)
    shapes = [RungShape(2, 1, 1), RungShape(1, epochs, args.final_workers)]
    plan = Plan(
        rungs=schedule(shapes, workload, PRICE, ClusterLimits(max_gpus=2)),
        reduction_factor=2,
        deadline_s=1800.0,
        budget_dollars=5.0,
        price_per_gpu_second=PRICE,
        min_marginal_speedup=0.2,
    )
    study = optuna.create_study(
        storage=args.url,
        study_name=STUDY,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=SeerPruner(plan=plan),
        load_if_exists=True,
    )
    env = {
        "DIGITS_REPEATS": str(args.repeats),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    result = ElasticTuner(
        study,
        backend=LocalBackend(slots=2, gpus=(), log_dir=args.workdir / "logs", env=env),
        train=TRAIN,
        search_space=search_space,
        checkpoints=args.workdir / "ckpt",
        drift_tolerance=float("inf"),
        progress=False,
    ).run()
    print(format_report(result), flush=True)


if __name__ == "__main__":
    main()
