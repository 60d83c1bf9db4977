"""Clocks that are off: a ``study.optimize`` worker 120 s behind (SQLite, journal file) and an
``ElasticTuner`` driver resumed 300 s behind or 250 s ahead read and write the study's time
(the storage's clock, :mod:`optuna_seer.integration.clock`), so the deadline and the ledger
stay true. (Ahead, the driver's ledger once charged each trial the skew again at every rung
end: its pruner took the backend's clock unshifted while its journal shifted it.)"""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys
import time

from optimize_plan import PLAN
import optuna
import pytest
from replay_study import EPOCH_SECONDS, STARTUP_SECONDS, TRAIN, curves, plan, workload_of

from optuna_seer.backends.replay import ReplayBackend
from optuna_seer.execution.journal import InFlight, Progress, RunJournal
from optuna_seer.execution.tuner import ElasticTuner
from optuna_seer.integration import clock
from optuna_seer.integration.keys import STUDY_STARTED_AT
from optuna_seer.integration.ledger import read_ledger, trial_gpu_seconds
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.integration.trial_gpus import implicit_placement

HERE = Path(__file__).parent


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_worker_120_s_behind_neither_starts_the_clock_early_nor_charges_less(
    kind: str, tmp_path: Path
) -> None:
    if kind == "journal":
        url = str(tmp_path / "study.log")
        storage: optuna.storages.BaseStorage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(url)
        )
    else:
        url = f"sqlite:///{tmp_path / 'study.db'}"
        storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="skew", storage=storage, direction="maximize")
    began = time.time()
    subprocess.run(
        [sys.executable, str(HERE / "optimize_worker.py"), url, "skew", "--skew", "-120"],
        check=True,
        capture_output=True,
        cwd=HERE.parents[1],
    )
    ended = time.time()
    started_at = storage.get_study_system_attrs(study._study_id)[STUDY_STARTED_AT]
    assert began - 1.0 <= started_at <= ended  # not 120 s early
    ledger = read_ledger(study, PLAN, time.time())
    assert 0 <= ledger.elapsed_s <= ended - began + 1.0
    (trial,) = study.get_trials(deepcopy=False)
    charged = trial_gpu_seconds(trial, time.time(), implicit_placement(storage, study._study_id))
    # Epochs of 0.2 s on one GPU (alone, it trains to the last rung's door, where it is
    # parked): charged from its start to its end, not 120 s less (0).
    assert trial.last_step is not None and trial.last_step >= 2
    assert 0.2 * trial.last_step * 0.9 <= charged <= ended - began


@pytest.mark.parametrize("skew", [-300.0, 250.0])
def test_a_resumed_driver_off_by_minutes_charges_the_dead_drivers_launches_and_keeps_the_deadline(
    skew: float, tmp_path: Path
) -> None:
    """A driver with a true clock died 150 s into the study with 4 launches in flight for
    120 s; the same command is run again on a machine whose clock is 300 s behind or 250 s
    ahead."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    the_plan = plan()
    study = optuna.create_study(
        storage=storage,
        study_name="resumed",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=SeerPruner(plan=the_plan),
    )
    # What the dead driver (true clock) left: its progress, 8 placed trials, 4 in flight.
    now = time.time()
    journal = RunJournal(study)
    journal.save_progress(Progress(rung=0, rungs=the_plan.rungs, slots=4))
    for number in range(the_plan.n_configs):
        trial = study.ask()
        trial.suggest_int("config_id", 0, 7)
        if number < 4:
            journal.set_in_flight(trial._trial_id, InFlight(0, 1, now - 120.0, 0))
    storage.set_study_system_attr(study._study_id, STUDY_STARTED_AT, now - 150.0)

    start = time.time() + skew
    backend = ReplayBackend(
        curves(), "linear", EPOCH_SECONDS, slots=4, startup_seconds=STARTUP_SECONDS,
        storage=storage, start_time=start,
    )  # fmt: skip
    again = optuna.load_study(
        study_name="resumed",
        storage=storage,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0), clock=backend.now),
        pruner=SeerPruner(plan=the_plan, clock=backend.now),
    )
    result = ElasticTuner(
        again,
        the_plan,
        backend=backend,
        train=TRAIN,
        checkpoints=tmp_path / "ckpt",
        search_space=lambda trial: trial.suggest_int("config_id", 0, 7),
        workload=workload_of(),
        storage_url="replay:in-memory",
        poll_seconds=5.0,
        progress=False,
    ).run()
    (resumed,) = [note for note in result.notes if note.startswith("resumed study")]
    # The 4 launches in flight ran 120 s (and until the resume): charged, not 0.
    lost = float(resumed.split(" slot-seconds charged")[0].rsplit("; ", 1)[1].replace(",", ""))
    assert 4 * 120.0 <= lost <= 4 * 130.0, resumed
    assert result.ledger.gpu_seconds == pytest.approx(lost + backend.gpu_seconds, rel=0.01)
    # The deadline counts the 150 s before the resume, not 300 s less.
    ran = backend.now() - start
    assert result.wall_seconds == pytest.approx(150.0 + ran, abs=10.0)
    assert clock.usable_offset(300.0) == 300.0
