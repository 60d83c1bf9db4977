"""Planted secrets (a storage password, an AWS secret key) must not leak into what a run
leaves behind: its notes and report, the Optuna storage, the checkpoint tree, error messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from replay_study import run_replay

from optuna_seer.execution.report import format_report
from optuna_seer.integration.keys import TRIAL_STOP_REASON
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


def _sky_backend(storage: str) -> Any:
    """The SkyPilot backend both task-rendering tests inspect: 8-GPU spot nodes on AWS."""
    from optuna_seer.backends.skypilot.backend import SkyPilotBackend
    from tests.fake_sky import REPO_ROOT

    return SkyPilotBackend(
        script="train.py",
        resources="A100:8",
        clouds=["aws"],
        use_spot=True,
        checkpoints="s3://bucket/seer",
        storage=storage,
        price_per_gpu_hour=2.0,
        workdir=str(REPO_ROOT),
    )


@pytest.mark.usefixtures("sky_home_dir")
def test_a_rendered_skypilot_trial_task_holds_no_storage_password() -> None:
    import yaml

    from optuna_seer.backends.base import LaunchSpec
    from optuna_seer.planning.placement import ClusterShape, TrialSlot
    from tests.fake_sky import node_variables

    backend = _sky_backend(STORAGE_URL)
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


# Credentials of well-known formats, made up (built by concatenation, so no scanner takes this
# file for a leak) and each unique, so a test can tell which one leaked.
GITHUB_TOKEN = "ghp_" + "PLANTEDgithub0123456789abcdefghijKLMN"
SLACK_TOKEN = "xoxb-" + "1234567890-PLANTEDslack0123"
SLACK_WEBHOOK = "https://hooks.slack.com/services/" + "T0PLANTED/B0PLANTED/PLANTEDhook0123"
OPENAI_TOKEN = "sk-" + "proj-PLANTEDopenai0123456789abcdefgh"
AWS_KEY_ID = "AKIA" + "PLANTED0KEY0ID01"
JWT = "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiJQTEFOVEVEIn0." + "PLANTEDjwtSignature0123"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nPLANTEDpemBody0123\n-----END RSA PRIVATE KEY-----"
DB_PASSWORD = "PLANTED-db-pw-42"
DATABASE_URL = f"postgresql://app:{DB_PASSWORD}@db.invalid:5432/app"
PLANTED_BY_VALUE = (
    GITHUB_TOKEN,
    SLACK_TOKEN,
    SLACK_WEBHOOK,
    OPENAI_TOKEN,
    AWS_KEY_ID,
    JWT,
    "PLANTEDpemBody0123",
    DB_PASSWORD,
)


def test_credentials_are_found_by_name_and_by_value() -> None:
    from optuna_seer._secrets import is_secret, scrub

    by_name = {
        "MYSQL_PWD": "x",
        "DB_PASS": "x",
        "OPENAI_KEY": "x",
        "GITHUB_AUTH": "x",
        "SLACK_WEBHOOK_URL": "x",
        "PRIVATE_KEY_PEM": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "HF_TOKEN": "x",
    }
    by_value = {
        "DATABASE_URL": DATABASE_URL,
        "A": GITHUB_TOKEN,
        "B": SLACK_TOKEN,
        "C": SLACK_WEBHOOK,
        "D": OPENAI_TOKEN,
        "E": AWS_KEY_ID,
        "F": JWT,
        "G": PEM,
        "H": "github_pat_" + "PLANTED0123456789abcdefghij",
    }
    for name, value in {**by_name, **by_value}.items():
        assert is_secret(name, value), name
    for name, value in {
        "SEER_TRIAL": "3",
        "DEBUG": "1",
        "PWD": "/home/me",
        "TOKENIZER": "bert",
    }.items():
        assert not is_secret(name, value), name
    text = "\n".join(
        [f"{n}={v}" for n, v in by_name.items()]
        + [f"failed with {v}" for v in by_value.values()]
        + [f"{{'password': '{DB_PASSWORD}x'}} Authorization: Bearer PLANTEDbearer0123"]
    )
    scrubbed = scrub(text, known=())
    for secret in (*PLANTED_BY_VALUE, "PLANTEDbearer0123", "github_pat_"):
        assert secret not in scrubbed
    assert "MYSQL_PWD=***" in scrubbed and "postgresql://app:***@db.invalid" in scrubbed
    assert scrub("KeyError: 'x'", known=()) == "KeyError: 'x'"  # plain errors stay readable


def _failing_launches(reason: str) -> object:
    def factory(backend: object) -> object:
        failed: set[str] = set()

        def observe(handle: str, epoch: int, value: float) -> None:
            if handle not in failed:  # every launch fails once, with the worker's error text
                failed.add(handle)
                backend.fail_launch(handle, reason)  # type: ignore[attr-defined]

        return observe

    return factory


def test_a_workers_error_text_is_scrubbed_before_it_is_stored_or_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    error = (
        f"Traceback ...\nRuntimeError: cannot reach {DATABASE_URL} with token {GITHUB_TOKEN}; "
        f"OPENAI_API_KEY={OPENAI_TOKEN} slack {SLACK_TOKEN} webhook {SLACK_WEBHOOK} "
        f"aws {AWS_KEY_ID} / {AWS_SECRET} jwt {JWT}\n{PEM}"
    )
    with caplog.at_level("INFO", logger="optuna"):
        run = run_replay(
            tmp_path, observer=_failing_launches(error), max_launch_retries=0, progress=True
        )
    failed = [r for r in run.result.launches if r.state == "failed"]
    assert failed and "RuntimeError: cannot reach postgresql://app:***@" in failed[0].message
    haystack = "\n".join(
        [
            format_report(run.result),
            "\n".join(run.result.notes),
            repr(run.result),
            caplog.text,
            _everything_in(run.study),  # seer:launches, seer:stop_reason, the journal's notes
        ]
    )
    reasons = [t.system_attrs.get(TRIAL_STOP_REASON, "") for t in run.study.trials]
    assert any("cannot reach postgresql://app:***@" in r for r in reasons)  # kept, masked
    for secret in (*PLANTED_BY_VALUE, AWS_SECRET):
        assert secret not in haystack, secret


@pytest.mark.usefixtures("sky_home_dir")
def test_credentials_by_name_or_value_go_to_skypilot_as_secrets() -> None:
    import yaml

    from optuna_seer.backends.base import LaunchSpec
    from optuna_seer.planning.placement import TrialSlot
    from tests.fake_sky import node_variables

    backend = _sky_backend("sqlite:////tmp/study.db")
    extra = {
        "DATABASE_URL": DATABASE_URL,
        "MYSQL_PWD": "PLANTED-mysql-pwd",
        "DB_PASS": "PLANTED-db-pass",
        "OPENAI_KEY": OPENAI_TOKEN,
        "GITHUB_AUTH": "PLANTED-github-auth",
        "SLACK_WEBHOOK_URL": SLACK_WEBHOOK,
        "PRIVATE_KEY_PEM": PEM,
        "SOME_SETTING": GITHUB_TOKEN,  # an innocent name, a token's value
        "DEBUG": "1",
    }
    spec = LaunchSpec(
        study_name="digits",
        storage="sqlite:////tmp/study.db",
        trial_number=1,
        params={},
        rung=0,
        target_epochs=1,
        workers=8,
        checkpoint_uri="s3://bucket/seer/digits/trial-1",
        env=extra,
    )
    task = backend.trial_task(spec, TrialSlot("seer-x-0", nodes=1, gpus_per_node=8))
    variables = node_variables(task)
    key = variables["SEER_CHECKPOINT_KEY"]  # the study's checkpoint key, a secret too
    kept = yaml.safe_dump(task.to_yaml_config(use_user_specified_yaml=True))
    for name, value in {**extra, "SEER_CHECKPOINT_KEY": key}.items():
        assert variables[name] == value  # the nodes get every variable ...
        if name != "DEBUG":  # ... but a credential not as a plain env, nor in the kept YAML
            assert name not in task.envs, name
            assert value not in json.dumps(task.envs) and value not in kept, name
    assert task.envs["DEBUG"] == "1"


def test_the_storage_proxy_child_gets_no_credential_on_its_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    from optuna_seer.storage import proxy

    started: list[tuple[list[str], dict[str, str] | None]] = []
    real_popen = subprocess.Popen

    def recording_popen(args: list[str], *more: object, **kwargs: object) -> object:
        started.append((list(args), kwargs.get("env")))  # type: ignore[arg-type]
        return real_popen(args, *more, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(proxy.subprocess, "Popen", recording_popen)
    with pytest.raises(Exception) as caught:  # no database there: the child exits at once
        proxy.StorageProxy(STORAGE_URL, host="127.0.0.1", ready_timeout_s=20).start()
    assert PASSWORD not in str(caught.value)
    assert started, "StorageProxy started no child"
    for argv, env in started:
        assert not any(PASSWORD in arg for arg in argv), argv  # `ps` shows argv to every user
        assert env is None or not any(PASSWORD in v for v in env.values())
