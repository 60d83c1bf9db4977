"""Checkpoint stores the executor uses: a local directory and S3 on a real local moto server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from optuna_seer.worker.checkpoint_keys import CheckpointKey
from optuna_seer.worker.checkpoints import CorruptCheckpointError, LocalStore, S3Store, open_store
from optuna_seer.worker.context import checkpoint_object_uri, fetch_checkpoint
from tests.local_s3 import S3Server


def _file(tmp_path: Path, payload: bytes) -> Path:
    path = tmp_path / "weights.bin"
    path.write_bytes(payload)
    return path


def test_local_store_round_trip_and_corruption(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ckpt"))
    assert isinstance(store, LocalStore)
    uri = store.put(_file(tmp_path, b"epoch-1"), "rung-0.ckpt")
    assert uri == checkpoint_object_uri(store.uri, "rung-0.ckpt")
    assert Path(fetch_checkpoint(uri)).read_bytes() == b"epoch-1"
    assert store.names() == ["rung-0.ckpt"]
    Path(uri).write_bytes(b"tampered")
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        fetch_checkpoint(uri)


def test_s3_store_round_trip_and_corruption(tmp_path: Path, s3_server: S3Server) -> None:
    store = open_store(f"s3://{s3_server.bucket}/study/trial-0")
    assert isinstance(store, S3Store)
    uri = store.put(_file(tmp_path, b"epoch-3"), "rung-1.ckpt")
    assert uri == f"s3://{s3_server.bucket}/study/trial-0/rung-1.ckpt"
    assert store.names() == ["rung-1.ckpt"]
    local = fetch_checkpoint(uri)
    assert Path(local).read_bytes() == b"epoch-3"
    Path(local).unlink()
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key="study/trial-0/rung-1.ckpt", Body=b"tampered"
    )
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        fetch_checkpoint(uri)
    store.delete("rung-1.ckpt")
    assert store.names() == []


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(ValueError, match="only local directories and s3://"):
        open_store("gs://bucket/prefix")


def test_s3_store_with_a_key_seals_and_refuses_a_swapped_pair(
    tmp_path: Path, s3_server: S3Server
) -> None:
    key = CheckpointKey("the study's checkpoint key, 64 hex digits in real runs")
    store = open_store(f"s3://{s3_server.bucket}/keyed/trial-0", key=key)
    uri = store.put(_file(tmp_path, b"epoch-3"), "rung-1.ckpt")
    client = s3_server.client()
    sidecar = client.get_object(Bucket=s3_server.bucket, Key="keyed/trial-0/rung-1.ckpt.sha256")
    assert sidecar["Body"].read().decode().startswith(f"hmac-sha256:{key.fingerprint}:")
    assert Path(fetch_checkpoint(uri, key=key)).read_bytes() == b"epoch-3"
    # Whoever can write the bucket replaces the object and its digest: refused.
    client.put_object(Bucket=s3_server.bucket, Key="keyed/trial-0/rung-1.ckpt", Body=b"forged")
    client.put_object(
        Bucket=s3_server.bucket,
        Key="keyed/trial-0/rung-1.ckpt.sha256",
        Body=hashlib.sha256(b"forged").hexdigest().encode(),
    )
    with pytest.raises(CorruptCheckpointError, match="plain SHA-256, not the HMAC"):
        fetch_checkpoint(uri, key=key)
