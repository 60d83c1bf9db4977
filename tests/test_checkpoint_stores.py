"""Checkpoint stores the executor uses, all alike through one interface: a local directory,
S3 through s3fs on a real local moto server, GCS through gcsfs on a real local fake GCS
server (gcp-storage-emulator, pure Python, on 127.0.0.1), and fsspec's in-memory
filesystem. Sealing (SHA-256 / HMAC-SHA-256), corruption detection, the fallback to an
earlier good checkpoint and deletion are checked on each."""

from __future__ import annotations

from collections.abc import Iterator
import hashlib
import os
from pathlib import Path
import tempfile
import uuid

import pytest

from optuna_seer.storage.retry import RetryPolicy, StorageUnavailableError
from optuna_seer.worker.checkpoint_keys import CheckpointKey
from optuna_seer.worker.checkpoints import (
    CorruptCheckpointError,
    LocalStore,
    S3Store,
    open_store,
)
from optuna_seer.worker.context import checkpoint_object_uri, fetch_checkpoint
from optuna_seer.worker.remote_checkpoints import RemoteStore
from tests.local_gcs import local_gcs
from tests.local_s3 import S3Server


@pytest.fixture
def gcs_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fake GCS server on 127.0.0.1 (tests/local_gcs.py); ``gs://<bucket>``."""
    with local_gcs(monkeypatch) as root:
        yield root


def _file(tmp_path: Path, payload: bytes) -> Path:
    path = tmp_path / f"weights-{uuid.uuid4().hex[:8]}.bin"
    path.write_bytes(payload)
    return path


@pytest.fixture(params=["local", "s3", "gs", "memory"])
def store_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The root URI of a store of each kind, served locally."""
    kind = request.param
    if kind == "local":
        return str(tmp_path / "ckpt")
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return f"s3://{server.bucket}/study"
    if kind == "gs":
        return str(request.getfixturevalue("gcs_server")) + "/study"
    return f"memory://seer-{uuid.uuid4().hex[:8]}/study"


def test_every_store_seals_verifies_falls_back_and_deletes_alike(
    tmp_path: Path, store_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = tmp_path / "downloads"  # where remote checkpoints are copied to
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    uri = f"{store_root}/trial-0"
    key = CheckpointKey("the study's checkpoint key, 64 hex digits in real runs")
    store = open_store(uri, key=key)
    assert isinstance(store, LocalStore if "://" not in uri else RemoteStore)
    assert store.names() == []  # an empty (or absent) prefix
    first = store.put(_file(tmp_path, b"epoch-1"), "rung-0.ckpt")
    second = store.put(_file(tmp_path, b"epoch-3"), "rung-1.ckpt")
    assert second == checkpoint_object_uri(uri, "rung-1.ckpt")
    assert store.names() == ["rung-0.ckpt", "rung-1.ckpt"]
    local = Path(fetch_checkpoint(second, key=key))
    assert local.read_bytes() == b"epoch-3"
    # The bytes swapped under the same name: refused, and the reader falls back.
    swapped = open_store(uri, key=CheckpointKey("whoever can write the store, not the study"))
    swapped.put(_file(tmp_path, b"forged"), "rung-1.ckpt")
    with pytest.raises(CorruptCheckpointError, match="is sealed with checkpoint key"):
        fetch_checkpoint(second, key=key)
    from optuna_seer.worker.context import fetch_good_checkpoint

    copy, used, errors = fetch_good_checkpoint(second, key=key)
    assert used == first and copy is not None and Path(copy).read_bytes() == b"epoch-1"
    assert len(errors) == 1
    with pytest.raises(FileNotFoundError, match=r"no checkpoint 'rung-7\.ckpt'"):
        fetch_checkpoint(checkpoint_object_uri(uri, "rung-7.ckpt"), key=key)
    # Only the verified copies stay (the caller discards them once loaded): a refused or
    # missing object left an empty download file behind before.
    kept = {p for p in (local, Path(copy)) if p.parent == downloads}
    assert set(downloads.iterdir()) == kept
    store.delete("rung-1.ckpt")
    store.delete("rung-1.ckpt")  # idempotent
    assert store.names() == ["rung-0.ckpt"]


def test_local_store_round_trip_and_corruption(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ckpt"))
    assert isinstance(store, LocalStore)
    assert isinstance(open_store(f"file://{tmp_path / 'ckpt'}"), LocalStore)
    uri = store.put(_file(tmp_path, b"epoch-1"), "rung-0.ckpt")
    assert Path(fetch_checkpoint(uri)).read_bytes() == b"epoch-1"
    Path(uri).write_bytes(b"tampered")
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        fetch_checkpoint(uri)


def test_s3_store_round_trip_and_corruption(tmp_path: Path, s3_server: S3Server) -> None:
    store = open_store(f"s3://{s3_server.bucket}/study/trial-0")
    assert isinstance(store, S3Store)
    uri = store.put(_file(tmp_path, b"epoch-3"), "rung-1.ckpt")
    assert uri == f"s3://{s3_server.bucket}/study/trial-0/rung-1.ckpt"
    local = fetch_checkpoint(uri)
    assert Path(local).read_bytes() == b"epoch-3"
    Path(local).unlink()
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key="study/trial-0/rung-1.ckpt", Body=b"tampered"
    )
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        fetch_checkpoint(uri)
    # A digest that went missing: corrupt, not absent.
    s3_server.client().delete_object(
        Bucket=s3_server.bucket, Key="study/trial-0/rung-1.ckpt.sha256"
    )
    with pytest.raises(CorruptCheckpointError, match="no readable digest"):
        fetch_checkpoint(uri)


def test_s3_retries_are_botocores_and_an_outage_is_named_not_corruption(
    tmp_path: Path, s3_server: S3Server
) -> None:
    store = S3Store(f"s3://{s3_server.bucket}/retry/trial-0", retry=RetryPolicy(attempts=2))
    config = store._fs.config_kwargs  # what s3fs hands to botocore's Config
    assert config["retries"] == {"mode": "standard", "total_max_attempts": 2}
    assert store._fs.retries == 1  # no loop of s3fs's (or ours) stacked on botocore's
    store.put(_file(tmp_path, b"x"), "rung-0.ckpt")
    s3_server.stop()
    try:
        with pytest.raises(StorageUnavailableError, match=r"read rung-0\.ckpt\.sha256 .*2 times"):
            store.fetch("rung-0.ckpt", tmp_path / "back.ckpt")
    finally:
        s3_server.start()


def test_s3_store_with_a_key_refuses_a_swapped_pair(tmp_path: Path, s3_server: S3Server) -> None:
    key = CheckpointKey("the study's checkpoint key, 64 hex digits in real runs")
    store = open_store(f"s3://{s3_server.bucket}/keyed/trial-0", key=key)
    uri = store.put(_file(tmp_path, b"epoch-3"), "rung-1.ckpt")
    client = s3_server.client()
    sidecar = client.get_object(Bucket=s3_server.bucket, Key="keyed/trial-0/rung-1.ckpt.sha256")
    assert sidecar["Body"].read().decode().startswith(f"hmac-sha256:{key.fingerprint}:")
    # Whoever can write the bucket replaces the object and its digest: refused.
    client.put_object(Bucket=s3_server.bucket, Key="keyed/trial-0/rung-1.ckpt", Body=b"forged")
    client.put_object(
        Bucket=s3_server.bucket,
        Key="keyed/trial-0/rung-1.ckpt.sha256",
        Body=hashlib.sha256(b"forged").hexdigest().encode(),
    )
    with pytest.raises(CorruptCheckpointError, match="plain SHA-256, not the HMAC"):
        fetch_checkpoint(uri, key=key)


def test_open_store_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"protocol 'nosuchfs'.*another protocol fsspec knows"):
        open_store("nosuchfs://bucket/prefix")
    with pytest.raises(ValueError, match=r"must be a directory path or a URL such as s3://"):
        open_store("")
    with pytest.raises(ValueError, match="SEER_CHECKPOINT_STORAGE_OPTIONS is not JSON"):
        os.environ["SEER_CHECKPOINT_STORAGE_OPTIONS"] = "{not json"
        try:
            open_store("memory://x/y")
        finally:
            del os.environ["SEER_CHECKPOINT_STORAGE_OPTIONS"]
