"""A ``study.optimize`` worker process for the dead-worker and clock-skew fault tests.

Usage: ``python optimize_worker.py STORAGE STUDY [--skew S] [--trials N] [--epoch-s E]
[--optuna-heartbeat]``. ``STORAGE`` is a SQLite URL or a journal file path (``*.log``).
``--skew S`` puts this process's wall clock ``S`` seconds off (``time.time`` is replaced
before anything is imported, as a badly synchronised machine would have it). Each trial
prints ``trial N epoch E`` as it reports, so a test knows when to kill it.
"""

from __future__ import annotations

import argparse
import sys
import time

_real_time = time.time


def _storage(url: str, optuna_heartbeat: bool) -> object:
    import optuna

    if url.endswith(".log"):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    if optuna_heartbeat:
        return optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
    return url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("study")
    parser.add_argument("--skew", type=float, default=0.0)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--epoch-s", type=float, default=0.2)
    parser.add_argument("--optuna-heartbeat", action="store_true")
    args = parser.parse_args()
    if args.skew:
        time.time = lambda: _real_time() + args.skew  # before optuna_seer reads it
    import optuna

    from optuna_seer.integration import heartbeat
    from optuna_seer.integration.pruner import SeerPruner
    from optuna_seer.integration.sampler import SeerSampler

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from optimize_plan import PLAN

    heartbeat.configure(0.3, 1.5)
    study = optuna.load_study(
        study_name=args.study,
        storage=_storage(args.storage, args.optuna_heartbeat),  # type: ignore[arg-type]
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=1)),
        pruner=SeerPruner(plan=PLAN),
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        value = 0.0
        for epoch in range(1, PLAN.max_epochs + 1):
            time.sleep(args.epoch_s)
            value = x * epoch
            trial.report(value, epoch)
            print(f"trial {trial.number} epoch {epoch}", flush=True)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=args.trials)


if __name__ == "__main__":
    main()
