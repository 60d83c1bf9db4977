"""A swapped checkpoint: whoever can write the checkpoint store replaces a checkpoint *and* its
digest. The digest is an HMAC under the study's key, which the store never holds, so the worker
refuses the swap and falls back; loading a checkpoint never runs pickled code."""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
from pathlib import Path
import re
import stat

import optuna
import pytest

from optuna_seer._optuna import storage_of, study_id_of
from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.launch_env import launch_env
from optuna_seer.integration.keys import checkpoint_fallback_key
from optuna_seer.worker import checkpoints
from optuna_seer.worker.checkpoint_keys import (
    ENV_CHECKPOINT_KEY,
    CheckpointKey,
    key_from_env,
    keyring_dir,
    study_key,
)
from optuna_seer.worker.checkpoints import CorruptCheckpointError, LocalStore, open_store
from optuna_seer.worker.context import checkpoint_object_uri, fetch_checkpoint, trial_context

ROOT = Path(__file__).resolve().parents[2]
FORGED = b"attacker's weights: a pickle that runs code when loaded"


@pytest.fixture(autouse=True)
def private_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A keyring of this test's own, and no checkpoint key in this process's environment."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv(ENV_CHECKPOINT_KEY, raising=False)
    return tmp_path / "state"


def _study_run(tmp_path: Path, name: str = "tamper") -> tuple[optuna.Study, dict[str, str], Path]:
    """A trial at rung 2 resuming from rung-1.ckpt; rung 0 and 1 written by the workers."""
    url = f"sqlite:///{tmp_path / 'seer.db'}"
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    study.ask()
    root = tmp_path / "ckpt"
    env = launch_env(
        LaunchSpec(
            study_name=name,
            storage=url,
            trial_number=0,
            params={},
            rung=2,
            target_epochs=3,
            workers=1,
            checkpoint_uri=str(root),
            resume_from=checkpoint_object_uri(str(root), "rung-1.ckpt"),
        )
    )
    for rung in (0, 1):  # what the study's workers wrote: sealed with the launch's key
        ctx = trial_context({**env, "SEER_RUNG": str(rung)}, fetch=False)
        made = tmp_path / f"made-{rung}.pt"
        made.write_bytes(f"weights after rung {rung}".encode())
        ctx.save_checkpoint(made)
    return study, env, root


def test_a_checkpoint_swapped_with_a_recomputed_digest_is_refused(tmp_path: Path) -> None:
    study, env, root = _study_run(tmp_path)
    # The attacker writes the checkpoint store only: new bytes and a matching SHA-256.
    (root / "rung-1.ckpt").write_bytes(FORGED)
    (root / "rung-1.ckpt.sha256").write_text(hashlib.sha256(FORGED).hexdigest())
    ctx = trial_context(env)
    assert ctx.resume_checkpoint == str(root / "rung-0.ckpt")  # the forged one is not used
    record = study.trials[0].system_attrs[checkpoint_fallback_key(2)]
    assert "plain SHA-256, not the HMAC" in str(record["errors"])


def test_a_checkpoint_sealed_with_another_key_is_refused(tmp_path: Path) -> None:
    study, env, root = _study_run(tmp_path)
    theirs = CheckpointKey("an attacker's own key, long enough")
    for name in ("rung-0.ckpt", "rung-1.ckpt"):
        (root / name).write_bytes(FORGED)
        (root / f"{name}.sha256").write_text(theirs.seal(name, [FORGED]))
    ctx = trial_context(env)
    assert ctx.resume_checkpoint is None  # neither verifies: the launch starts fresh
    errors = str(study.trials[0].system_attrs[checkpoint_fallback_key(2)]["errors"])
    assert f"sealed with checkpoint key {theirs.fingerprint}" in errors


def test_a_checkpoint_renamed_to_a_later_rung_is_refused(tmp_path: Path) -> None:
    _, env, root = _study_run(tmp_path)
    key = key_from_env(env)
    for suffix in ("", ".sha256"):
        os.replace(root / f"rung-0.ckpt{suffix}", root / f"rung-1.ckpt{suffix}")
    with pytest.raises(CorruptCheckpointError, match="HMAC-SHA-256"):
        LocalStore(root, key=key).fetch("rung-1.ckpt", tmp_path / "copy")


def test_the_key_reaches_workers_only_through_their_environment(tmp_path: Path) -> None:
    study, env, root = _study_run(tmp_path)
    key = key_from_env(env)
    assert key is not None and key == study_key("tamper")
    sidecar = (root / "rung-1.ckpt.sha256").read_text()
    assert sidecar.startswith(f"hmac-sha256:{key.fingerprint}:")
    # Neither the study's storage nor the checkpoint store holds the key ...
    storage, study_id = storage_of(study), study_id_of(study)
    stored = json.dumps(
        [storage.get_study_system_attrs(study_id), study.user_attrs]
        + [[t.system_attrs, t.user_attrs, t.params] for t in study.trials],
        default=str,
    )
    assert key.text not in stored
    for path in root.rglob("*"):
        assert key.text.encode() not in path.read_bytes()
    # ... the driver's copy is a private file outside both ...
    (key_file,) = keyring_dir().glob("*.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert root not in key_file.parents
    # ... with which a process without the key (a user reading a finished study) verifies.
    assert Path(fetch_checkpoint(str(root / "rung-1.ckpt"))).read_bytes() == b"weights after rung 1"


def test_a_user_given_key_is_used_for_every_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_CHECKPOINT_KEY, "a key the user keeps in a secret manager")
    _, env, root = _study_run(tmp_path)
    assert env[ENV_CHECKPOINT_KEY] == "a key the user keeps in a secret manager"
    assert not keyring_dir().exists()  # no key file made
    assert open_store(str(root)).names() == ["rung-0.ckpt", "rung-1.ckpt"]


def test_a_keyed_checkpoint_without_its_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, root = _study_run(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "another-machine"))
    with pytest.raises(CorruptCheckpointError, match="this process does not have"):
        fetch_checkpoint(str(root / "rung-1.ckpt"))


def test_without_any_key_the_plain_digest_still_catches_corruption_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(checkpoints, "_warned_unkeyed", False)
    store = LocalStore(tmp_path / "ckpt")
    assert store.key is None
    source = tmp_path / "w.bin"
    source.write_bytes(b"weights")
    with caplog.at_level(logging.WARNING, logger="optuna.optuna_seer"):
        store.put(source, "rung-0.ckpt")
    assert "no checkpoint key" in caplog.text
    assert re.fullmatch(r"[0-9a-f]{64}", (tmp_path / "ckpt" / "rung-0.ckpt.sha256").read_text())
    (tmp_path / "ckpt" / "rung-0.ckpt").write_bytes(b"bit rot")
    with pytest.raises(CorruptCheckpointError, match="does not match its SHA-256"):
        store.fetch("rung-0.ckpt", tmp_path / "copy")


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
    ]


def _passes_weights_only_true(call: ast.Call) -> bool:
    return any(
        k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def test_no_shipped_code_loads_a_checkpoint_with_pickled_code() -> None:
    sources = [*ROOT.joinpath("examples").glob("*.py"), *ROOT.joinpath("optuna_seer").rglob("*.py")]
    unsafe = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loads = [c for c in _calls(tree, "load") if ast.unparse(c.func) == "torch.load"]
        resumes = [c for c in _calls(tree, "fit") if any(k.arg == "ckpt_path" for k in c.keywords)]
        unsafe += [
            f"{path.relative_to(ROOT)}:{c.lineno}"
            for c in loads + resumes
            if not _passes_weights_only_true(c)
        ]
    assert not unsafe, (
        f"torch.load / Trainer.fit(ckpt_path=...) without weights_only=True: {unsafe}"
    )


def test_the_torch_floor_loads_weights_only_by_default() -> None:
    pyproject = ROOT.joinpath("pyproject.toml").read_text(encoding="utf-8")
    floors = re.findall(r'"torch>=(\d+)\.(\d+)', pyproject)
    assert floors and all((int(a), int(b)) >= (2, 6) for a, b in floors), floors


def test_a_node_uploads_only_checkpoints_sealed_with_the_key(tmp_path: Path) -> None:
    from optuna_seer.worker.node_entrypoint import fetch_resume_checkpoint, upload_checkpoints

    key = CheckpointKey("the study's checkpoint key, 64 hex digits in real runs")
    out = LocalStore(tmp_path / "out", key=key)  # what the node's workers wrote
    for rung in (0, 1):
        made = tmp_path / f"made-{rung}"
        made.write_bytes(f"weights after rung {rung}".encode())
        out.put(made, f"rung-{rung}.ckpt")
    (tmp_path / "out" / "rung-1.ckpt").write_bytes(FORGED)  # replaced on the node's disk
    remote = LocalStore(tmp_path / "remote", key=key)
    assert upload_checkpoints(tmp_path / "out", remote) == [str(tmp_path / "remote/rung-0.ckpt")]
    # A node resumes only from what verifies under the key.
    (tmp_path / "remote" / "rung-0.ckpt.sha256").write_text(hashlib.sha256(FORGED).hexdigest())
    with pytest.raises(CorruptCheckpointError, match="plain SHA-256"):
        fetch_resume_checkpoint(f"{tmp_path / 'remote'}/rung-0.ckpt", tmp_path / "dl", key)
    # A script may leave a plain file in the node's own directory: sealed on upload.
    (tmp_path / "out" / "rung-2.ckpt").write_bytes(b"weights after rung 2")
    assert str(tmp_path / "remote/rung-2.ckpt") in upload_checkpoints(tmp_path / "out", remote)
    assert remote.fetch("rung-2.ckpt", tmp_path / "r2").read_bytes() == b"weights after rung 2"
