"""Checkpoints inside a rung every N epochs *or every M minutes* (#14 item 7): the minutes
rule on a real TrialContext and a real local store (a test clock, so "10 minutes" takes no
time), the two rules together, configuration through SEER_CHECKPOINT_EVERY_* (the launch
environment, the Lightning callback's default, the SkyPilot trial template, all the way to
what a node's workers read), and bad values refused naming them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.launch_env import launch_env
from optuna_seer.backends.skypilot import SkyPilotBackend
from optuna_seer.backends.skypilot.tasks import DEFAULT_TEMPLATE
from optuna_seer.planning.placement import TrialSlot
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.context import trial_context
from optuna_seer.worker.epoch_checkpoints import (
    CheckpointSchedule,
    EpochCheckpoints,
    checkpoint_every_env,
)
from tests.fake_sky import REPO_ROOT, node_variables


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'seer.db'}"
    optuna.create_study(study_name="sched", storage=url, direction="maximize").ask()
    spec = LaunchSpec(
        study_name="sched",
        storage=url,
        trial_number=0,
        params={},
        rung=0,
        target_epochs=20,
        workers=1,
        checkpoint_uri=str(tmp_path / "ckpt"),
    )
    return {**launch_env(spec), **extra}


def _train(
    tmp_path: Path, schedule: CheckpointSchedule, epoch_minutes: float, epochs: int
) -> list[int]:
    """Epochs of ``epoch_minutes`` each on the test clock; the epochs stored, in order."""
    ctx = trial_context(_env(tmp_path))
    clock = Clock()
    checkpoints = EpochCheckpoints(ctx, schedule, clock=clock)
    checkpoints.start(0)
    state = tmp_path / "state.bin"
    stored: list[int] = []
    for epoch in range(1, epochs + 1):
        clock.now += 60.0 * epoch_minutes
        state.write_bytes(f"epoch {epoch}".encode())
        uri = checkpoints.epoch_ended(epoch, state, store=checkpoints.due(epoch))
        if uri is not None:
            stored.append(int(uri.rsplit("-", 1)[1].removesuffix(".ckpt")))
    names = open_store(str(tmp_path / "ckpt")).names()
    assert names == [f"rung-0-epoch-{stored[-1]}.ckpt"]  # the newest only, in the real store
    return stored


def test_long_epochs_are_stored_every_m_minutes(tmp_path: Path) -> None:
    # 4-minute epochs, every 10 minutes: after epochs 3 (12 min), 6, 9 (12 min after each).
    minutes_only = CheckpointSchedule(every_epochs=None, every_minutes=10)
    assert _train(tmp_path, minutes_only, epoch_minutes=4, epochs=10) == [3, 6, 9]


def test_either_rule_stores_whichever_comes_first(tmp_path: Path) -> None:
    both = CheckpointSchedule(every_epochs=5, every_minutes=10)
    assert _train(tmp_path / "short", both, epoch_minutes=1, epochs=12) == [5, 10]
    assert _train(tmp_path / "long", both, epoch_minutes=4, epochs=7) == [3, 6]


def test_the_minutes_come_from_the_launch_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = checkpoint_every_env(epochs=None, minutes=0.5)
    assert env == {"SEER_CHECKPOINT_EVERY_MINUTES": "0.5"}
    assert CheckpointSchedule.from_env(env) == CheckpointSchedule(None, 0.5)
    both = {"SEER_CHECKPOINT_EVERY_EPOCHS": "5", "SEER_CHECKPOINT_EVERY_MINUTES": "10"}
    assert CheckpointSchedule.from_env(both) == CheckpointSchedule(5, 10.0)
    assert CheckpointSchedule.from_env({}) == CheckpointSchedule(1, None)
    # The Lightning callback's default is what its process's environment asks for.
    pytest.importorskip("lightning")
    from optuna_seer.worker.lightning import SeerCallback

    monkeypatch.setenv("SEER_CHECKPOINT_EVERY_MINUTES", "7.5")
    monkeypatch.delenv("SEER_CHECKPOINT_EVERY_EPOCHS", raising=False)
    callback = SeerCallback(trial_context(_env(tmp_path)), monitor="val_acc")
    assert callback.checkpoints.schedule == CheckpointSchedule(None, 7.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every_minutes": 0}, r"every_minutes=0 must be a number of minutes > 0"),
        ({"every_minutes": -5.0}, r"every_minutes=-5.0 must be"),
        ({"every_minutes": float("nan")}, r"every_minutes=nan must be"),
        ({"every_minutes": float("inf")}, r"every_minutes=inf must be"),
        ({"every_minutes": True}, r"every_minutes=True must be"),
        ({"every_minutes": "10"}, r"every_minutes='10' must be"),
        ({"every_epochs": None, "every_minutes": None}, r"needs every_epochs or every_minutes"),
    ],
)
def test_bad_schedules_are_refused_naming_the_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CheckpointSchedule(**kwargs)


@pytest.mark.parametrize(
    ("minutes", "message"),
    [
        ("ten", r"SEER_CHECKPOINT_EVERY_MINUTES='ten' a number of minutes"),
        ("0", r"every_minutes=0.0 must be a number of minutes > 0"),
        ("-1", r"every_minutes=-1.0 must be"),
    ],
)
def test_bad_environment_values_are_refused_naming_them(minutes: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CheckpointSchedule.from_env({"SEER_CHECKPOINT_EVERY_MINUTES": minutes})


def _template(tmp_path: Path, minutes: str) -> Path:
    text = DEFAULT_TEMPLATE.read_text()
    marker = '  SEER_MASTER_PORT: "29500"\n'
    assert marker in text
    path = tmp_path / "trial.yaml"
    path.write_text(text.replace(marker, f"{marker}  SEER_CHECKPOINT_EVERY_MINUTES: {minutes}\n"))
    return path


def _backend(template: Path) -> SkyPilotBackend:
    return SkyPilotBackend(
        script="train.py",
        resources="A100:8",
        clouds=["aws"],
        checkpoints="s3://bucket/seer",
        storage="postgresql://u:p@db.example.com/optuna",
        price_per_gpu_hour=2.0,
        workdir=str(REPO_ROOT),
        template=template,
    )


def test_a_trial_template_sets_the_minutes_for_every_node(
    tmp_path: Path, sky_home_dir: Path
) -> None:
    spec = LaunchSpec(
        study_name="digits",
        storage="sqlite:////tmp/study.db",
        trial_number=1,
        params={},
        rung=0,
        target_epochs=4,
        workers=8,
        checkpoint_uri="/driver/ckpt/trial-1",
    )
    task = _backend(_template(tmp_path, '"10"')).trial_task(spec, TrialSlot("c", 1, 8))
    # What a node's job environment holds, and so what its workers' schedule is.
    assert CheckpointSchedule.from_env(node_variables(task)) == CheckpointSchedule(None, 10.0)


@pytest.mark.parametrize("minutes", ['"0"', '"soon"', "-3"])
def test_a_trial_template_with_a_bad_schedule_is_refused_at_once(
    tmp_path: Path, sky_home_dir: Path, minutes: str
) -> None:
    with pytest.raises(ValueError, match=r"trial template .*trial.yaml has envs .*EVERY_MINUTES"):
        _backend(_template(tmp_path, minutes))
