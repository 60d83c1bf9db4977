"""Epoch checkpoints on cloud nodes (optuna_seer.worker.node_entrypoint): uploaded while
torchrun runs and after it ends, the newest only; a SIGTERM to the node is passed to the
workers, whose newest epoch reaches the store; the next launch of the rung resumes there.
Real S3 (moto server), real processes (torchrun) in the slow test."""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import optuna
import pytest

from optuna_seer.worker.checkpoints import LocalStore, open_store
from optuna_seer.worker.node_entrypoint import (
    EpochUploader,
    fetch_resume_checkpoint,
    resume_point,
)
from tests.fake_sky import REPO_ROOT, kill_group, node_env
from tests.local_s3 import S3Server


def _write(directory: Path, name: str, payload: bytes) -> None:
    source = directory.parent / f"src-{name}"
    source.write_bytes(payload)
    LocalStore(directory).put(source, name)  # as the worker's ctx writes it (sealed)


def test_the_uploader_sends_the_newest_epoch_and_drops_older_ones(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    remote = open_store(f"s3://{s3_server.bucket}/node/trial-0")
    uploader = EpochUploader(out, remote, rung=2)
    assert uploader.sync() is None  # nothing yet
    _write(out, "rung-2-epoch-5.ckpt", b"five")
    assert uploader.sync() == f"{remote.uri}/rung-2-epoch-5.ckpt"
    assert uploader.sync() is None  # not again
    _write(out, "rung-2-epoch-6.ckpt", b"six")
    _write(out, "rung-1-epoch-9.ckpt", b"another rung")
    uploader.sync()
    assert remote.names() == ["rung-2-epoch-6.ckpt"]
    # A file whose seal does not hold stays on the node.
    (out / "rung-2-epoch-7.ckpt").write_bytes(b"cut short")
    (out / "rung-2-epoch-7.ckpt.sha256").write_text("0" * 64)
    assert uploader.sync() is None and remote.names() == ["rung-2-epoch-6.ckpt"]
    assert resume_point(remote, 2, f"{remote.uri}/rung-1.ckpt").endswith("rung-2-epoch-6.ckpt")
    assert resume_point(remote, 3, f"{remote.uri}/rung-2.ckpt").endswith("rung-2.ckpt")


def test_the_rung_end_fallback_skips_epoch_checkpoints_and_counts_rungs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for name in ("rung-2.ckpt", "rung-10-epoch-3.ckpt", "rung-9.ckpt"):
        _write(store, name, name.encode())
    (store / "rung-10.ckpt").write_bytes(b"no seal")
    local = fetch_resume_checkpoint(f"{store}/rung-10.ckpt", tmp_path / "local")
    assert local.name == "rung-9.ckpt"  # rung 9 before rung 2, never an epoch checkpoint


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sigterm_to_the_node_stores_the_newest_epoch_and_the_relaunch_resumes_there(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="node", storage=url, direction="maximize")
    study.ask()
    remote = tmp_path / "remote"
    env = node_env(
        {
            "SEER_STUDY": "node",
            "SEER_STORAGE": url,
            "SEER_TRIAL": "0",
            "SEER_RUNG": "0",
            "SEER_TARGET_EPOCHS": "50",
            "SEER_CHECKPOINT_URI": str(remote),
            "SEER_TRAIN_SCRIPT": str(REPO_ROOT / "tests" / "scripts" / "epoch_sleeper.py"),
            "SEER_LOCAL_DIR": str(tmp_path / "node"),
            "SEER_UPLOAD_EVERY_S": "0.5",
            "SKYPILOT_NUM_GPUS_PER_NODE": "0",
        }
    )
    command = [sys.executable, "-m", "optuna_seer.worker.node_entrypoint"]
    node = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while len(study.trials[0].intermediate_values) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(study.trials[0].intermediate_values) >= 3, "the script did not train"
        os.kill(node.pid, signal.SIGTERM)  # the preemption notice reaches the node process
        out, _ = node.communicate(timeout=120)
    finally:
        kill_group(node)
    log = out.decode(errors="replace")
    assert node.returncode != 0, log[-2000:]
    reached = max(study.trials[0].intermediate_values)
    names = open_store(str(remote)).names()
    assert len(names) == 1 and names[0].startswith("rung-0-epoch-"), (names, log[-2000:])
    kept = int(names[0].removeprefix("rung-0-epoch-").removesuffix(".ckpt"))
    assert kept == reached, log[-2000:]  # every reported epoch kept: none lost
    # The relaunch of rung 0 (no resume point named) goes on from there.
    done = subprocess.run(
        command,
        env={**env, "SEER_TARGET_EPOCHS": str(kept + 2)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert open_store(str(remote)).names() == ["rung-0.ckpt"]
    final = open_store(str(remote)).fetch("rung-0.ckpt", tmp_path / "final.json")
    assert json.loads(final.read_text())["epoch"] == kept + 2
