"""Cloud nodes take every checkpoint store the worker side opens: ``s3://`` and ``gs://`` out
of the box (the nodes' wheel installs both clients), any other fsspec protocol given as
``SkyPilotBackend(checkpoints=...)`` with the driver's version of its library pinned on the
nodes; a store no node could reach is refused naming it. The node entry point itself runs
here against a real local GCS server (gcp-storage-emulator) and real processes (torchrun);
SkyPilot is not called beyond its offline Task/Resources validation."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.skypilot import SkyPilotBackend
from optuna_seer.backends.skypilot.packages import NODE_EXTRAS
from optuna_seer.backends.skypilot.tasks import NODE_PACKAGES
from optuna_seer.planning.placement import ClusterShape
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.context import ENV_CHECKPOINT_URI, ENV_RESUME_FROM
from optuna_seer.worker.node_entrypoint import run_node
from tests.fake_sky import REPO_ROOT, node_env
from tests.local_gcs import local_gcs


@pytest.fixture(scope="module", autouse=True)
def home(sky_home_dir: Path) -> Path:
    """Every test here runs with ``HOME`` in the module's SkyPilot home (tests/conftest.py)."""
    return sky_home_dir


def backend(checkpoints: str | None) -> SkyPilotBackend:
    return SkyPilotBackend(
        script="train.py",
        resources="A100:8",
        clouds=["gcp"],
        checkpoints=checkpoints,
        storage="postgresql://u:p@db.example.com/optuna",
        price_per_gpu_hour=2.0,
        workdir=str(REPO_ROOT),
    )


def spec(**overrides: Any) -> LaunchSpec:
    fields: dict[str, Any] = {
        "study_name": "digits",
        "storage": "sqlite:////tmp/study.db",
        "trial_number": 3,
        "params": {},
        "rung": 1,
        "target_epochs": 4,
        "workers": 8,
        "checkpoint_uri": "/driver/ckpt/trial-3",
        "resume_from": "/driver/ckpt/trial-3/rung-0.ckpt",
    }
    fields.update(overrides)
    return LaunchSpec(**fields)


def requirements_of(b: SkyPilotBackend) -> str:
    task = b.cluster_task(ClusterShape(1, 8))
    return (Path(task.file_mounts[NODE_PACKAGES]) / "requirements.txt").read_text()


def test_gs_checkpoints_reach_the_nodes_and_the_nodes_install_the_gcs_client() -> None:
    b = backend("gs://bucket/seer/")
    env = b.node_env(spec())
    assert env[ENV_CHECKPOINT_URI] == "gs://bucket/seer/digits/trial-3"
    assert env[ENV_RESUME_FROM] == "gs://bucket/seer/digits/trial-3/rung-0.ckpt"
    assert "gcs" in NODE_EXTRAS and "s3" in NODE_EXTRAS
    (wheel_line,) = [line for line in requirements_of(b).splitlines() if ".whl[" in line]
    assert {"gcs", "s3"} <= set(wheel_line.partition("[")[2].rstrip("]").split(","))
    # A trial whose own checkpoints are on GCS already keeps them there.
    passed = backend(None).node_env(
        spec(checkpoint_uri="gs://other/t3", resume_from="gs://other/t3/rung-0.ckpt")
    )
    assert passed[ENV_CHECKPOINT_URI] == "gs://other/t3"
    assert passed[ENV_RESUME_FROM] == "gs://other/t3/rung-0.ckpt"


def test_another_fsspec_store_pins_the_drivers_client_on_the_nodes() -> None:
    # sftp:// is implemented inside fsspec: the nodes get the driver's fsspec version.
    b = backend("sftp://files.example.com/seer")
    assert b.node_env(spec())[ENV_CHECKPOINT_URI] == "sftp://files.example.com/seer/digits/trial-3"
    pinned = f"fsspec=={importlib.metadata.version('fsspec')}"
    assert pinned in requirements_of(b).splitlines()
    assert "fsspec==" not in requirements_of(backend("gs://bucket/seer"))


@pytest.mark.parametrize(
    ("checkpoints", "message"),
    [
        ("/tmp/ckpt", r"checkpoints='/tmp/ckpt' must be the URL of a store every node can reach"),
        ("file:///tmp/ckpt", r"checkpoints='file:///tmp/ckpt' must be the URL"),
        ("memory://seer", r"checkpoints='memory://seer' must be the URL.*not a local path"),
        ("gs://", r"checkpoints='gs://' must be the URL.*gs://bucket/prefix"),
        ("nosuchfs://bucket/seer", r"protocol 'nosuchfs' is not one fsspec knows.*s3://, gs://"),
    ],
)
def test_a_store_the_nodes_cannot_reach_is_refused_naming_it(
    checkpoints: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        backend(checkpoints)


def test_a_trials_store_the_nodes_get_no_client_for_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'sftp://host/t3' is in a sftp:// store the nodes get"):
        backend("gs://bucket/seer").node_env(spec(checkpoint_uri="sftp://host/t3"))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_node_resumes_from_and_uploads_to_gcs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node entry point, in this process (so it reaches the fake GCS), runs the trial's
    script under torchrun for rung 0, uploads its checkpoint to gs://, then resumes rung 1
    from there."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="node", storage=url, direction="maximize")
    study.ask()
    with local_gcs(monkeypatch) as root:
        remote = f"{root}/seer/node/trial-0"
        base = {
            "SEER_STUDY": "node",
            "SEER_STORAGE": url,
            "SEER_TRIAL": "0",
            "SEER_CHECKPOINT_URI": remote,
            "SEER_TRAIN_SCRIPT": str(REPO_ROOT / "tests" / "scripts" / "epoch_sleeper.py"),
            "SEER_LOCAL_DIR": str(tmp_path / "node"),
            "SKYPILOT_NUM_GPUS_PER_NODE": "0",
        }
        first = node_env({**base, "SEER_RUNG": "0", "SEER_TARGET_EPOCHS": "2"})
        first.pop(ENV_RESUME_FROM, None)
        assert run_node(first) == 0
        assert open_store(remote).names() == ["rung-0.ckpt"]
        second = {**base, "SEER_RUNG": "1", "SEER_TARGET_EPOCHS": "3"}
        second[ENV_RESUME_FROM] = f"{remote}/rung-0.ckpt"
        assert run_node(node_env(second)) == 0
        assert open_store(remote).names() == ["rung-0.ckpt", "rung-1.ckpt"]
        final = open_store(remote).fetch("rung-1.ckpt", tmp_path / "final.json")
    assert json.loads(final.read_text())["epoch"] == 3
    # Rung 1 trained epoch 3 only: it resumed at epoch 2 from the checkpoint on GCS.
    assert sorted(study.trials[0].intermediate_values) == [1, 2, 3]
