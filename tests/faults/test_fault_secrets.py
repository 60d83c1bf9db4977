"""Planted secrets (a storage password, an AWS secret key) must not leak into what a run
leaves behind: its notes and report, the Optuna storage, the checkpoint tree, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from replay_study import run_replay

from optuna_seer.execution.report import format_report
from optuna_seer.storage.urls import open_storage, redact_url

PASSWORD = "PLANTED-pw-7f3c9"
AWS_SECRET = "PLANTEDawsSECRETkey0123456789abcdefGHIJ"
STORAGE_URL = f"postgresql://seer:{PASSWORD}@db.invalid:5432/optuna"


def _everything_in(study: optuna.Study) -> str:
    storage = study._storage
    parts = [json.dumps(storage.get_study_system_attrs(study._study_id), default=str)]
    parts.append(json.dumps(storage.get_study_user_attrs(study._study_id), default=str))
    for trial in study.get_trials(deepcopy=False):
        parts += [
            json.dumps(trial.system_attrs, default=str),
            json.dumps(trial.user_attrs, default=str),
            json.dumps(trial.params, default=str),
        ]
    return "\n".join(parts)


def _files_under(root: Path) -> str:
    return "\n".join(
        str(p) + "\n" + p.read_bytes().decode(errors="replace")
        for p in root.rglob("*")
        if p.is_file()
    )


def test_a_run_leaves_no_planted_secret_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "PLANTEDKEYID")
    # The workers are given the full URL (they need it); nothing else may keep it.
    run = run_replay(tmp_path, storage_url=STORAGE_URL, progress=True)
    printed = capsys.readouterr()
    haystack = "\n".join(
        [
            format_report(run.result),
            "\n".join(run.result.notes),
            repr(run.result.ledger),
            repr(run.result),
            printed.out,
            printed.err,
            _everything_in(run.study),
            _files_under(tmp_path),
        ]
    )
    for secret in (PASSWORD, AWS_SECRET, "PLANTEDKEYID"):
        assert secret not in haystack


def test_a_local_launch_log_holds_no_storage_password(tmp_path: Path) -> None:
    # A real worker process that gets the full URL (it must, to open the study) and fails to
    # open it (no such database here): neither its log file nor the status message the
    # executor records may show the password.
    from optuna_seer.backends.base import LaunchSpec
    from optuna_seer.backends.local import LocalBackend

    script = tmp_path / "train.py"
    script.write_text(
        "from optuna_seer.worker.context import trial_context\ntrial_context().report(0.5, 1)\n"
    )
    backend = LocalBackend(slots=1, log_dir=tmp_path / "logs")
    handle = backend.start(
        LaunchSpec(
            study_name="s",
            storage=STORAGE_URL,
            trial_number=0,
            params={},
            rung=0,
            target_epochs=1,
            workers=1,
            checkpoint_uri=str(tmp_path / "ckpt"),
            entrypoint=str(script),
        )
    )
    while not backend.wait([handle], 30.0):
        pass
    status = backend.poll(handle)
    backend.release()
    assert status.state.name == "FAILED"
    logs = _files_under(tmp_path / "logs")
    assert "trial_context" in logs  # the log is there, with the worker's error
    assert PASSWORD not in logs + status.message


@pytest.mark.parametrize("dialect", ["postgresql", "nosuchdialect"])
def test_the_report_command_does_not_print_the_password(
    dialect: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from optuna_seer.cli.main import main

    url = STORAGE_URL.replace("postgresql", dialect)
    assert main(["report", "--storage", url, "--study", "digits"]) != 0
    printed = capsys.readouterr()
    assert "db.invalid" in printed.err  # it says which storage it could not open ...
    assert PASSWORD not in printed.out + printed.err  # ... without the password


def test_storage_errors_and_redaction_do_not_show_the_password() -> None:
    assert PASSWORD not in redact_url(STORAGE_URL)
    with pytest.raises(Exception) as caught:  # any error, as long as it hides the password
        open_storage(STORAGE_URL.replace("postgresql://", "nosuchdialect://"))
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


@pytest.mark.usefixtures("sky_home_dir")
def test_a_rendered_skypilot_trial_task_holds_no_storage_password() -> None:
    import yaml

    from optuna_seer.backends.base import LaunchSpec
    from optuna_seer.backends.skypilot.backend import SkyPilotBackend
    from optuna_seer.planning.placement import ClusterShape, TrialSlot
    from tests.fake_sky import REPO_ROOT, node_variables

    backend = SkyPilotBackend(
        script="train.py",
        resources="A100:8",
        clouds=["aws"],
        use_spot=True,
        checkpoints="s3://bucket/seer",
        storage=STORAGE_URL,
        price_per_gpu_hour=2.0,
        workdir=str(REPO_ROOT),
    )
    spec = LaunchSpec(
        study_name="digits",
        storage="sqlite:////tmp/study.db",
        trial_number=1,
        params={},
        rung=0,
        target_epochs=1,
        workers=8,
        checkpoint_uri="s3://bucket/seer/digits/trial-1",
        env={"AWS_SECRET_ACCESS_KEY": AWS_SECRET, "DEBUG": "1"},
    )
    task = backend.trial_task(spec, TrialSlot("seer-x-0", nodes=1, gpus_per_node=8))
    # The nodes still get the full URL in their environment (they need it) ...
    assert node_variables(task)["SEER_STORAGE"] == STORAGE_URL
    assert node_variables(task)["AWS_SECRET_ACCESS_KEY"] == AWS_SECRET
    assert task.envs["DEBUG"] == "1"  # plain variables stay envs
    # ... but not as a plain env, and not in the YAML SkyPilot keeps in its cluster table
    # and shows (`to_yaml_config(use_user_specified_yaml=True)`, what its backend stores).
    kept = task.to_yaml_config(use_user_specified_yaml=True)
    assert kept["secrets"]["SEER_STORAGE"] == "<redacted>"
    for secret in (PASSWORD, AWS_SECRET):
        assert secret not in json.dumps(task.envs)
        assert secret not in yaml.safe_dump(kept)
        assert secret not in repr(task) + str(task)
    # The cluster (setup-only) task carries only the template's placeholder.
    cluster = backend.cluster_task(ClusterShape(1, 8))
    assert PASSWORD not in json.dumps(cluster.to_yaml_config(), default=str)


@pytest.mark.usefixtures("sky_home_dir")
@pytest.mark.parametrize("name", ["driver.yaml", "trial.yaml"])
def test_the_templates_declare_the_storage_url_a_secret(name: str) -> None:
    # Launched by hand with `--secret NAME=<url with password>`, the URL must end up where
    # SkyPilot redacts it, not in envs.
    import sky
    import yaml

    from optuna_seer.backends.skypilot.backend import TEMPLATES_DIR
    from tests.fake_sky import node_variables

    key = "SEER_STORAGE_URL" if name == "driver.yaml" else "SEER_STORAGE"
    task = sky.Task.from_yaml_config(
        yaml.safe_load((TEMPLATES_DIR / name).read_text()),
        secrets_overrides=[(key, STORAGE_URL)],
    )
    assert node_variables(task)[key] == STORAGE_URL
    assert key not in task.envs
    kept = task.to_yaml_config(use_user_specified_yaml=True)
    assert kept["secrets"][key] == "<redacted>"
    assert PASSWORD not in json.dumps(kept, default=str)
