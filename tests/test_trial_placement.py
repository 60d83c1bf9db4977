"""Where trials sit in the plan: placed for free on the wall clock, written on a simulated one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import time

import optuna
import pytest

from optuna_seer import Budget, SeerPruner, SeerSampler, Workload, gpus_for
from optuna_seer.integration.keys import STUDY_IMPLICIT_PLACEMENT, TRIAL_PLACEMENT
from optuna_seer.integration.ledger import read_ledger
from optuna_seer.integration.trial_gpus import (
    ImplicitPlacement,
    implicit_placement,
    keeps_true_start_times,
    placement_of,
)
from optuna_seer.storage.proxy import StorageProxy
from optuna_seer.storage.urls import open_storage

# Optuna 4's RDB storage kept the writer's local time, so there SEER writes every placement
# (keeps_true_start_times is False) and the tests of implicit placement on SQLite do not apply.
OPTUNA_5 = pytest.mark.skipif(
    int(optuna.__version__.split(".")[0]) < 5,
    reason="implicit placement on RDB storages needs Optuna 5 (UTC start times)",
)


def test_rdb_start_times_are_trusted_from_optuna_5_only(tmp_path: Path) -> None:
    storage = optuna.storages.get_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert keeps_true_start_times(storage) is (int(optuna.__version__.split(".")[0]) >= 5)


def seer_pair(clock: object = time.time) -> tuple[SeerSampler, SeerPruner]:
    pruner = SeerPruner(
        Budget(deadline="2h", dollars=50, price_per_gpu_hour=3.0),
        Workload(epoch_seconds=60, scaling="linear", max_epochs=9),
        clock=clock,  # type: ignore[arg-type]
    )
    return SeerSampler(optuna.samplers.RandomSampler(0)), pruner


@pytest.fixture
def timezone() -> Iterator[None]:
    """Restore the process's time zone after a test changes it."""
    import os

    before = os.environ.get("TZ")
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@OPTUNA_5
def test_wall_clock_trials_are_placed_without_a_write(tmp_path: Path) -> None:
    sampler, pruner = seer_pair()
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 's.db'}", sampler=sampler, pruner=pruner
    )
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    frozen = study._storage.get_trial(trial._trial_id)
    # The ask wrote no placement into the trial; only its heartbeat, which the heartbeat
    # thread writes at once, may be there already (integration/heartbeat.py).
    assert set(frozen.system_attrs) <= {"seer:heartbeat"}
    plan = pruner.plan
    assert gpus_for(trial) == plan.rungs[0].gpus_per_trial  # a live trial finds its study
    assert gpus_for(frozen, study=study) == plan.rungs[0].gpus_per_trial
    with pytest.raises(ValueError, match="pass study="):
        gpus_for(frozen)
    rule = implicit_placement(study._storage, study._study_id)
    assert rule == ImplicitPlacement.for_plan(plan)
    placed = placement_of(frozen, rule)
    assert placed is not None
    assert placed["gpus"] == [r.gpus_per_trial for r in plan.rungs]
    assert frozen.datetime_start is not None
    assert abs(placed["placed_at"] - frozen.datetime_start.timestamp()) < 1e-6
    # The running trial accrues cost from its placement, as an explicitly placed one does.
    time.sleep(0.05)
    assert read_ledger(study, plan, time.time()).gpu_seconds > 0


def test_simulated_clock_trials_are_placed_explicitly() -> None:
    now = [1_000.0]
    sampler, pruner = seer_pair(clock=lambda: now[0])
    study = optuna.create_study(sampler=sampler, pruner=pruner)
    trial = study.ask()
    attrs = study._storage.get_trial_system_attrs(trial._trial_id)
    assert attrs[TRIAL_PLACEMENT]["placed_at"] == 1_000.0  # the simulated time, not the wall's
    assert STUDY_IMPLICIT_PLACEMENT not in study._storage.get_study_system_attrs(study._study_id)
    now[0] = 1_010.0
    ledger = read_ledger(study, pruner.plan, now[0])
    assert ledger.gpu_seconds == 10.0 * pruner.plan.rungs[0].gpus_per_trial


@OPTUNA_5
def test_start_times_are_true_moments_across_time_zones(tmp_path: Path, timezone: None) -> None:
    """Another process of the study, in another time zone, reads the implicitly placed
    trial's start as the same moment and places its own trials implicitly too (Optuna 5's RDB
    storage keeps UTC; journal storages keep aware times)."""
    import os

    def journal() -> optuna.storages.JournalStorage:  # a new one per process
        return optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log"))
        )

    for opened in (lambda: f"sqlite:///{tmp_path / 's.db'}", journal):
        os.environ["TZ"] = "UTC"
        time.tzset()
        sampler, pruner = seer_pair()
        study = optuna.create_study(storage=opened(), sampler=sampler, pruner=pruner)
        before = time.time()
        first = study.ask()
        after = time.time()
        os.environ["TZ"] = "Asia/Kolkata"  # UTC+5:30, no daylight saving time
        time.tzset()
        sampler, pruner = seer_pair()  # another process of the same study
        other = optuna.load_study(
            study_name=study.study_name, storage=opened(), sampler=sampler, pruner=pruner
        )
        second = other.ask()
        rule = implicit_placement(other._storage, other._study_id)
        for trial in (first, second):
            assert TRIAL_PLACEMENT not in other._storage.get_trial_system_attrs(trial._trial_id)
        placed = placement_of(other._storage.get_trial(first._trial_id), rule)
        assert placed is not None and before - 1e-3 <= placed["placed_at"] <= after + 1e-3


@OPTUNA_5
def test_a_grpc_proxy_study_gets_explicit_placements(tmp_path: Path) -> None:
    """Through Optuna's gRPC proxy a naive start time is the server's local time, which a
    worker in another time zone would misread: trials are placed with a write there."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert keeps_true_start_times(optuna.storages.InMemoryStorage())
    assert keeps_true_start_times(optuna.storages.get_storage(url))
    optuna.create_study(study_name="proxied", storage=url)
    with StorageProxy(url, host="127.0.0.1") as proxy:
        storage = open_storage(proxy.url)
        assert not keeps_true_start_times(storage)
        sampler, pruner = seer_pair()
        study = optuna.load_study(
            study_name="proxied", storage=storage, sampler=sampler, pruner=pruner
        )
        trial = study.ask()
        assert TRIAL_PLACEMENT in storage.get_trial_system_attrs(trial._trial_id)
        assert STUDY_IMPLICIT_PLACEMENT not in storage.get_study_system_attrs(study._study_id)
        assert gpus_for(trial) == pruner.plan.rungs[0].gpus_per_trial


def test_implicit_placement_rule_round_trips_and_checks_its_shape() -> None:
    rule = ImplicitPlacement(gpus=(1, 2), ends=(3, 9))
    assert ImplicitPlacement.from_dict(rule.to_dict()) == rule
    with pytest.raises(ValueError, match="one entry per rung"):
        ImplicitPlacement(gpus=(1, 2), ends=(3,))
