"""A small SEER study on the ReplayBackend's simulated clock, for injecting faults cheaply.

Everything is real (Optuna storage, SeerSampler/SeerPruner, ElasticTuner, the ledger); only
time is simulated, and the training is replayed from synthetic learning curves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from optuna_seer.backends.replay import EpochObserver, RecordedCurve, ReplayBackend
from optuna_seer.execution.tuner import ElasticTuner, TuningResult
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.cost_model import ClusterLimits, RungShape, schedule
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.workload import Workload

PRICE = 3.0 / 3600
MAX_EPOCHS = 6
N_CONFIGS = 8
EPOCH_SECONDS = 60.0
STARTUP_SECONDS = 20.0
TRAIN = "benchmarks.seer_arm:replayed_training"


def curves(n: int = N_CONFIGS) -> list[RecordedCurve]:
    """Config ``i`` learns towards ``0.5 + 0.05 * i``: higher configs are better."""
    out = []
    for i in range(n):
        top = 0.5 + 0.05 * i
        val = tuple(top * (1 - 0.5 ** (e + 1)) for e in range(MAX_EPOCHS))
        out.append(RecordedCurve(val_acc=val, test_acc=tuple(v - 0.01 for v in val)))
    return out


def plan(slots: int = 4, deadline_s: float = 3600.0, budget: float = 5.0) -> Plan:
    """8 -> 4 -> 2 trials at 1, 3, 6 epochs, one worker each."""
    workload = workload_of()
    shapes = [RungShape(8, 1, 1), RungShape(4, 3, 1), RungShape(2, MAX_EPOCHS, 1)]
    return Plan(
        rungs=schedule(shapes, workload, PRICE, ClusterLimits(max_gpus=slots)),
        reduction_factor=2,
        deadline_s=deadline_s,
        budget_dollars=budget,
        price_per_gpu_second=PRICE,
        min_marginal_speedup=0.2,
    )


def workload_of() -> Workload:
    return Workload(
        epoch_seconds=EPOCH_SECONDS,
        scaling="linear",
        max_epochs=MAX_EPOCHS,
        startup_seconds=STARTUP_SECONDS,
    )


@dataclass
class ReplayRun:
    study: optuna.Study
    backend: ReplayBackend
    result: TuningResult


def run_replay(
    tmp_path: Path,
    *,
    observer: Callable[[ReplayBackend], EpochObserver] | None = None,
    preemption_rate: float = 0.0,
    seed: int = 0,
    the_plan: Plan | None = None,
    storage: optuna.storages.BaseStorage | None = None,
    **tuner_kwargs: object,
) -> ReplayRun:
    """Run the study; ``observer(backend)`` builds an epoch observer that may inject faults."""
    the_plan = the_plan or plan()
    storage = storage or optuna.storages.InMemoryStorage()
    holder: dict[str, ReplayBackend] = {}

    def observe(handle: str, epoch: int, value: float) -> None:
        if observer is not None:
            observer(holder["backend"])(handle, epoch, value)

    backend = ReplayBackend(
        curves(),
        "linear",
        EPOCH_SECONDS,
        slots=4,
        startup_seconds=STARTUP_SECONDS,
        storage=storage,
        seed=seed,
        observer=observe,
        preemption_rate=preemption_rate,
    )
    holder["backend"] = backend
    study = optuna.create_study(
        storage=storage,
        study_name=f"faults-{seed}",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=seed), clock=backend.now),
        pruner=SeerPruner(plan=the_plan, clock=backend.now),
    )

    def search_space(trial: optuna.Trial) -> None:
        trial.suggest_int("config_id", 0, N_CONFIGS - 1)

    options: dict[str, object] = {
        "backend": backend,
        "train": TRAIN,
        "checkpoints": tmp_path / "ckpt",
        "search_space": search_space,
        "workload": workload_of(),
        "storage_url": "replay:in-memory",
        "poll_seconds": 5.0,
        "progress": False,
    }
    options.update(tuner_kwargs)
    result = ElasticTuner(study, the_plan, **options).run()  # type: ignore[arg-type]
    return ReplayRun(study, backend, result)


def assert_consistent_steps(study: optuna.Study) -> None:
    """Every trial's intermediate values are epochs 1..last with no gap (dict keys: no dups)."""
    for trial in study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, len(steps) + 1)), (trial.number, steps)
