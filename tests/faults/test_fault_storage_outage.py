"""S3 or the study storage unavailable for a while (the real moto server of the ``s3_server``
fixture stopped and restarted; a SQLite file locked by another connection): requests retry
with backoff and jitter, then fail with a clear error; nothing half-written, and an S3 outage
is never mistaken for a corrupt checkpoint."""

from __future__ import annotations

from pathlib import Path
import random
import sqlite3
import threading
import time

import optuna
import pytest

from optuna_seer.storage.retry import (
    RetryPolicy,
    StorageUnavailableError,
    call_with_retries,
    is_transient_storage_error,
)
from optuna_seer.worker.checkpoints import S3Store
from tests.local_s3 import S3Server


def _store(server: S3Server, policy: RetryPolicy, prefix: str) -> S3Store:
    # policy.attempts calls in all, retried by botocore itself (standard mode); short timeouts.
    timeouts = {"config_kwargs": {"connect_timeout": 1, "read_timeout": 2}}
    return S3Store(f"s3://{server.bucket}/{prefix}/trial-0", retry=policy, storage_options=timeouts)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_requests_ride_out_a_server_restart(s3_server: S3Server, tmp_path: Path) -> None:
    store = _store(s3_server, RetryPolicy(attempts=12, base_s=0.2, max_s=1.0), "restart")
    weights = tmp_path / "w.ckpt"
    weights.write_bytes(b"weights" * 1000)
    store.put(weights, "rung-0.ckpt")
    s3_server.stop()
    restarter = threading.Timer(2.0, s3_server.start)
    restarter.start()
    try:
        began = time.monotonic()
        fetched = store.fetch("rung-0.ckpt", tmp_path / "back.ckpt")  # waits out the outage
        waited = time.monotonic() - began
        assert fetched.read_bytes() == weights.read_bytes()
        assert waited > 0.5  # it really was down when the fetch began
        s3_server.stop()
        threading.Timer(1.5, s3_server.start).start()
        store.put(weights, "rung-1.ckpt")  # an upload rides it out too
        assert store.names() == ["rung-0.ckpt", "rung-1.ckpt"]
        assert store.fetch("rung-1.ckpt", tmp_path / "b1.ckpt").read_bytes() == weights.read_bytes()
    finally:
        restarter.join()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_server_that_stays_down_gives_a_clear_error_not_corruption(
    s3_server: S3Server, tmp_path: Path
) -> None:
    store = _store(s3_server, RetryPolicy(attempts=3, base_s=0.05, max_s=0.1), "down")
    weights = tmp_path / "w.ckpt"
    weights.write_bytes(b"x")
    store.put(weights, "rung-0.ckpt")
    s3_server.stop()
    with pytest.raises(StorageUnavailableError, match=r"read rung-0\.ckpt\.sha256 .*3 times"):
        store.fetch("rung-0.ckpt", tmp_path / "back.ckpt")
    with pytest.raises(StorageUnavailableError, match=r"upload rung-1\.ckpt .*s3://seer-test/down"):
        store.put(weights, "rung-1.ckpt")
    s3_server.start()
    # Nothing half-written: the failed put left no rung-1 checkpoint that could verify.
    assert store.names() == ["rung-0.ckpt"]


def test_backoff_is_jittered_bounded_and_gives_up_with_a_clear_error() -> None:
    pauses: list[float] = []
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("connection refused")

    policy = RetryPolicy(attempts=5, base_s=1.0, max_s=3.0)
    with pytest.raises(StorageUnavailableError, match="write ledger failed 5 times"):
        call_with_retries(
            down,
            what="write ledger",
            transient=lambda e: isinstance(e, ConnectionError),
            policy=policy,
            sleep=pauses.append,
            rng=random.Random(1),
        )
    assert len(calls) == 5 and len(pauses) == 4
    assert all(0 <= p <= min(3.0, 2.0**i) for i, p in enumerate(pauses))
    assert len(set(pauses)) == 4  # jittered


def test_non_transient_errors_propagate_at_once() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("no such key")

    with pytest.raises(KeyError):
        call_with_retries(broken, what="x", transient=lambda e: False, sleep=lambda s: None)
    assert calls == [1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"attempts": 0}, ValueError),
        ({"attempts": 1.5}, TypeError),
        ({"base_s": -1}, ValueError),
        ({"max_s": float("inf")}, ValueError),
        ({"base_s": "1"}, TypeError),
    ],
)
def test_retry_policy_names_its_bad_value(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def _locked_sqlite(tmp_path: Path) -> tuple[optuna.storages.RDBStorage, int, sqlite3.Connection]:
    path = tmp_path / "locked.db"
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 0.2}}
    )
    trial_id = optuna.create_study(storage=storage).ask()._trial_id
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process's long write, for real
    return storage, trial_id, holder


def test_a_locked_sqlite_storage_is_waited_out(tmp_path: Path) -> None:
    storage, trial_id, holder = _locked_sqlite(tmp_path)
    release = threading.Timer(1.5, lambda: holder.execute("COMMIT"))
    release.start()
    call_with_retries(
        lambda: storage.set_trial_system_attr(trial_id, "seer:ledger", [1.0, 2.0]),
        what="charge trial 0",
        transient=is_transient_storage_error,
        policy=RetryPolicy(attempts=12, base_s=0.2, max_s=0.5),
    )
    release.join()
    assert storage.get_trial(trial_id).system_attrs["seer:ledger"] == [1.0, 2.0]


def test_a_sqlite_storage_locked_for_good_gives_a_clear_error(tmp_path: Path) -> None:
    storage, trial_id, holder = _locked_sqlite(tmp_path)
    try:
        with pytest.raises(StorageUnavailableError, match="charge trial 0 failed 2 times"):
            call_with_retries(
                lambda: storage.set_trial_system_attr(trial_id, "seer:ledger", [1.0, 2.0]),
                what="charge trial 0",
                transient=is_transient_storage_error,
                policy=RetryPolicy(attempts=2, base_s=0.05, max_s=0.05),
            )
    finally:
        holder.execute("COMMIT")
    assert "seer:ledger" not in storage.get_trial(trial_id).system_attrs  # nothing half-written
