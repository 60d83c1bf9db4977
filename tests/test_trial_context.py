"""The launch contract a worker reads, and how it reports back through a real storage."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
import pytest

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.launch_env import launch_env
from optuna_seer.integration.keys import TRIAL_STOP_REASON, launch_timing_key
from optuna_seer.storage.urls import open_storage, storage_url_of
from optuna_seer.worker.context import ENV_MAX_EPOCHS, checkpoint_name, trial_context


def _spec(url: str, **changes: object) -> LaunchSpec:
    fields: dict[str, object] = {
        "study_name": "ctx",
        "storage": url,
        "trial_number": 0,
        "params": {"lr": 0.1, "hidden": 32},
        "rung": 1,
        "target_epochs": 3,
        "workers": 2,
        "checkpoint_uri": "/tmp/unused",
        "env": {ENV_MAX_EPOCHS: "9"},
        "entrypoint": "train.py",
    }
    fields.update(changes)
    return LaunchSpec(**fields)  # type: ignore[arg-type]


def test_round_trip_and_lightning_kwargs() -> None:
    spec = _spec("sqlite:///unused.db")
    env = {**launch_env(spec), **spec.env, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    ctx = trial_context(env)
    assert (ctx.trial_number, ctx.rung, ctx.target_epochs, ctx.max_epochs) == (0, 1, 3, 9)
    assert dict(ctx.params) == {"lr": 0.1, "hidden": 32}
    assert (ctx.world_size, ctx.rank, ctx.is_global_zero) == (2, 1, False)
    assert ctx.resume_checkpoint is None
    kwargs = ctx.lightning_trainer_kwargs()
    assert kwargs["devices"] == 2 and kwargs["strategy"] == "ddp" and kwargs["num_nodes"] == 1
    assert trial_context(launch_env(spec)).lightning_trainer_kwargs()["strategy"] == "auto"
    assert ctx.per_worker_batch_size(64) == 32
    with pytest.raises(ValueError, match="does not divide among 2 workers"):
        ctx.per_worker_batch_size(63)


def test_missing_variable_is_named() -> None:
    env = launch_env(_spec("sqlite:///unused.db"))
    del env["SEER_TRIAL"]
    with pytest.raises(RuntimeError, match="SEER_TRIAL is not set"):
        trial_context(env)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_report_stop_and_timing_go_through_the_storage(tmp_path: Path, kind: str) -> None:
    url = (
        f"sqlite:///{tmp_path / 'ctx.db'}"
        if kind == "sqlite"
        else str(tmp_path / "ctx.log")  # a journal file's path, as optuna and its dashboard take
    )
    storage = open_storage(url)
    assert storage_url_of(storage) == url
    assert isinstance(storage, JournalStorage) == (kind == "journal")
    study = optuna.create_study(storage=storage, study_name="ctx", direction="maximize")
    trial = study.ask()
    worker = trial_context(launch_env(_spec(url)))
    other_rank = trial_context({**launch_env(_spec(url)), "WORLD_SIZE": "2", "RANK": "1"})
    worker.report(3, 0.75)
    other_rank.report(3, 0.1)  # ranks other than 0 never write
    worker.record_training(4.5, 2)
    assert not worker.should_stop()
    storage.set_trial_system_attr(trial._trial_id, TRIAL_STOP_REASON, "rung 0: not in the top 1")
    assert worker.should_stop() and other_rank.should_stop()
    frozen = study.get_trials()[0]
    assert frozen.intermediate_values == {3: 0.75}
    assert frozen.system_attrs[launch_timing_key(1)] == {"train_seconds": 4.5, "epochs": 2}


def test_save_checkpoint_and_resume_fetch(tmp_path: Path) -> None:
    source = tmp_path / "last.ckpt"
    source.write_bytes(b"state")
    spec = _spec("sqlite:///unused.db", checkpoint_uri=str(tmp_path / "store"))
    stored = trial_context(launch_env(spec)).save_checkpoint(source)
    assert stored is not None and stored.endswith(checkpoint_name(1))
    resumed = trial_context(launch_env(_spec("sqlite:///unused.db", resume_from=stored)))
    assert resumed.resume_uri == stored
    assert resumed.resume_checkpoint is not None
    assert Path(resumed.resume_checkpoint).read_bytes() == b"state"
    resumed.discard_resume_copy()  # a local store's file is the checkpoint itself: kept
    assert Path(stored).exists()


def test_journal_storages_follow_optunas_conventions(tmp_path: Path) -> None:
    path = str(tmp_path / "seer.jsonl")
    by_object = JournalStorage(JournalFileBackend(path))
    assert open_storage(by_object) is by_object  # a storage object is taken as it is
    assert storage_url_of(by_object) == path  # workers get the path, no scheme of our own
    optuna.create_study(storage=by_object, study_name="conv")
    # The path opens the same study here and in the optuna CLI (which optuna-dashboard
    # shares: an existing file that is not SQLite is a journal).
    assert optuna.get_all_study_names(open_storage(path)) == ["conv"]
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("optuna")), "studies", "--storage", path, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert [s["name"] for s in json.loads(listed.stdout)] == ["conv"]
    # The old journal:<path> form still opens, with a warning naming the new form.
    new_form = rf"deprecated; pass the journal file's path '{path}'"
    with pytest.warns(DeprecationWarning, match=new_form):
        old = open_storage(f"journal:{path}")
    assert isinstance(old, JournalStorage) and storage_url_of(old) == path
    assert optuna.get_all_study_names(old) == ["conv"]
    # A SQLite database given as a bare path is refused with the URL that opens it.
    db = tmp_path / "seer.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="sql")
    for bare in (str(db), str(tmp_path / "new.sqlite")):
        with pytest.raises(ValueError, match=rf"use 'sqlite:///{bare}'"):
            open_storage(bare)
    renamed = tmp_path / "actually-sqlite.log"
    renamed.write_bytes(db.read_bytes())
    with pytest.raises(ValueError, match="looks like a SQLite database"):
        open_storage(str(renamed))


def test_in_memory_storage_has_no_url() -> None:
    with pytest.raises(ValueError, match="cannot be shared with worker processes"):
        storage_url_of(optuna.storages.InMemoryStorage())
    with pytest.raises(ValueError, match="must be a non-empty RDB URL"):
        open_storage("")


def test_a_malformed_checkpoint_key_is_named_and_not_shown() -> None:
    env = {**launch_env(_spec("sqlite:///unused.db")), "SEER_CHECKPOINT_KEY": "short-k3y"}
    with pytest.raises(
        RuntimeError, match="SEER_CHECKPOINT_KEY must be a string of at least 16"
    ) as e:
        trial_context(env)
    assert "short-k3y" not in str(e.value)
