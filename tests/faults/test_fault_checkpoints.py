"""A corrupt or missing resume checkpoint: the worker detects it (its HMAC-SHA-256 under the
study's key), resumes from the previous good checkpoint or from scratch, and records the event
for the executor's report. Real stores: a directory and a local moto S3 server; real SQLite
storage."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.launch_env import launch_env
from optuna_seer.integration.keys import checkpoint_fallback_key
from optuna_seer.worker.checkpoint_keys import key_from_env
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.context import checkpoint_object_uri, trial_context
from tests.local_s3 import S3Server


def _setup(tmp_path: Path, store_uri: str) -> tuple[optuna.Study, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'seer.db'}"
    study = optuna.create_study(storage=url, study_name="ckpt", direction="maximize")
    study.ask()
    spec = LaunchSpec(
        study_name="ckpt",
        storage=url,
        trial_number=0,
        params={},
        rung=2,
        target_epochs=3,
        workers=1,
        checkpoint_uri=store_uri,
        resume_from=checkpoint_object_uri(store_uri, "rung-1.ckpt"),
    )
    env = launch_env(spec)
    store = open_store(store_uri, key=key_from_env(env))  # as the study's workers wrote them
    for rung in (0, 1):
        local = tmp_path / f"made-{rung}.ckpt"
        local.write_bytes(f"weights after rung {rung}".encode())
        store.put(local, f"rung-{rung}.ckpt")
    return study, env


def _fallback(study: optuna.Study) -> dict[str, object]:
    return study.trials[0].system_attrs[checkpoint_fallback_key(2)]  # type: ignore[no-any-return]


def test_a_corrupt_checkpoint_falls_back_to_the_previous_good_one(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    study, env = _setup(tmp_path, str(root))
    (root / "rung-1.ckpt").write_bytes(b"bit rot")
    ctx = trial_context(env)
    assert ctx.resume_checkpoint == str(root / "rung-0.ckpt")
    assert ctx.resume_uri == str(root / "rung-0.ckpt")
    record = _fallback(study)
    assert record["used"] == str(root / "rung-0.ckpt")
    assert "does not match its HMAC-SHA-256" in str(record["errors"])


def test_a_missing_checkpoint_falls_back_and_all_bad_means_from_scratch(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    study, env = _setup(tmp_path, str(root))
    open_store(str(root)).delete("rung-1.ckpt")
    assert trial_context(env).resume_checkpoint == str(root / "rung-0.ckpt")
    (root / "rung-0.ckpt.sha256").unlink()
    ctx = trial_context(env)
    assert ctx.resume_checkpoint is None and ctx.resume_uri is None
    assert _fallback(study)["used"] is None
    assert len(_fallback(study)["errors"]) == 2  # type: ignore[arg-type]


def test_a_good_checkpoint_records_nothing(tmp_path: Path) -> None:
    root = tmp_path / "ckpt"
    study, env = _setup(tmp_path, str(root))
    assert trial_context(env).resume_checkpoint == str(root / "rung-1.ckpt")
    assert checkpoint_fallback_key(2) not in study.trials[0].system_attrs


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_corrupt_s3_checkpoint_falls_back(tmp_path: Path, s3_server: S3Server) -> None:
    prefix = f"s3://{s3_server.bucket}/study/trial-0"
    study, env = _setup(tmp_path, prefix)
    s3_server.client().put_object(
        Bucket=s3_server.bucket, Key="study/trial-0/rung-1.ckpt", Body=b"truncated"
    )
    ctx = trial_context(env)
    assert ctx.resume_uri == f"{prefix}/rung-0.ckpt"
    assert ctx.resume_checkpoint is not None
    assert Path(ctx.resume_checkpoint).read_bytes() == b"weights after rung 0"
    ctx.discard_resume_copy()
    assert _fallback(study)["used"] == f"{prefix}/rung-0.ckpt"
