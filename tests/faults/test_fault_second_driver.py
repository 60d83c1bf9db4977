"""One driver per study: the same ``ElasticTuner`` command started twice (two drivers at
once, or while another holds the study) is refused by name; once the holder is dead (its pid
gone, or its lease not renewed for its ttl) the next one takes the study over."""

from __future__ import annotations

from pathlib import Path
import subprocess
import threading
import time

import optuna
import pytest
from replay_study import EPOCH_SECONDS, STARTUP_SECONDS, TRAIN, curves, plan, workload_of

from optuna_seer.backends.replay import ReplayBackend
from optuna_seer.execution.driver_lock import DriverLockedError
from optuna_seer.execution.tuner import ElasticTuner, TuningResult
from optuna_seer.integration.keys import STUDY_DRIVER_LEASE
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.worker.driver_watch import process_start_ticks

URL = "sqlite:///{}"


def _run(tmp_path: Path, name: str = "one") -> tuple[ReplayBackend, TuningResult]:
    """One driver process's worth: its own storage object, backend, study and tuner."""
    storage = optuna.storages.RDBStorage(URL.format(tmp_path / "study.db"))
    backend = ReplayBackend(
        curves(), "linear", EPOCH_SECONDS, slots=4, startup_seconds=STARTUP_SECONDS,
        storage=storage,
    )  # fmt: skip
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0), clock=backend.now),
        pruner=SeerPruner(plan=plan(), clock=backend.now),
    )
    tuner = ElasticTuner(
        study,
        plan(),
        backend=backend,
        train=TRAIN,
        checkpoints=tmp_path / "ckpt",
        search_space=lambda trial: trial.suggest_int("config_id", 0, 7),
        workload=workload_of(),
        storage_url="replay:in-memory",
        poll_seconds=5.0,
        progress=False,
    )
    return backend, tuner.run()


def test_two_drivers_started_at_once_run_the_study_once(tmp_path: Path) -> None:
    optuna.create_study(storage=URL.format(tmp_path / "study.db"), study_name="one")
    outcomes: list[object] = []

    def drive() -> None:
        try:
            outcomes.append(_run(tmp_path))
        except Exception as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=drive) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes if isinstance(o, DriverLockedError)]
    ran = [o for o in outcomes if isinstance(o, tuple)]
    assert len(refused) == 1 and len(ran) == 1, outcomes
    assert "another driver (pid" in str(refused[0])
    backend, result = ran[0]  # type: ignore[misc]
    assert len(result.launches) == 8 + 4 + 2  # nothing launched twice
    assert result.ledger.gpu_seconds == pytest.approx(backend.gpu_seconds)
    study = optuna.load_study(study_name="one", storage=URL.format(tmp_path / "study.db"))
    attrs = study._storage.get_study_system_attrs(study._study_id)
    assert attrs[STUDY_DRIVER_LEASE] is None  # given back at the end


def _hold(tmp_path: Path, lease: dict[str, object]) -> None:
    study = optuna.create_study(storage=URL.format(tmp_path / "study.db"), study_name="one")
    study._storage.set_study_system_attr(study._study_id, STUDY_DRIVER_LEASE, lease)


def test_a_live_driver_on_this_host_is_named_and_a_dead_one_taken_over(tmp_path: Path) -> None:
    from optuna_seer.execution.driver_lock import _host

    other = subprocess.Popen(["sleep", "60"])
    try:
        lease = {
            "holder": "other", "host": _host(), "pid": other.pid,
            "pid_started": process_start_ticks(other.pid), "renewed_at": time.time() - 600,
            "ttl_s": 30.0,
        }  # fmt: skip
        _hold(tmp_path, lease)
        # Its lease is old, but its process runs: it is alive.
        with pytest.raises(DriverLockedError, match=rf"another driver \(pid {other.pid} on"):
            _run(tmp_path)
        study = optuna.load_study(study_name="one", storage=URL.format(tmp_path / "study.db"))
        assert not study.trials  # refused before touching the study
    finally:
        other.kill()
        other.wait()
    _, result = _run(tmp_path)  # its process is gone: taken over at once
    assert result.best_trial is not None


def test_a_driver_elsewhere_is_alive_until_its_lease_expires(tmp_path: Path) -> None:
    lease = {
        "holder": "other", "host": "elsewhere/0", "pid": 1, "pid_started": 1,
        "renewed_at": time.time() - 5, "ttl_s": 30.0,
    }  # fmt: skip
    _hold(tmp_path, lease)
    with pytest.raises(DriverLockedError, match=r"pid 1 on elsewhere, lease renewed \d+ s ago"):
        _run(tmp_path)
    _hold_again = {**lease, "renewed_at": time.time() - 31}
    study = optuna.load_study(study_name="one", storage=URL.format(tmp_path / "study.db"))
    study._storage.set_study_system_attr(study._study_id, STUDY_DRIVER_LEASE, _hold_again)
    _, result = _run(tmp_path)
    assert result.best_trial is not None
