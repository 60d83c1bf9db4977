"""The per-node entry point: torchrun arguments, and 2 real "nodes" on loopback.

The slow test runs the entry point as 2 processes with the variables SkyPilot sets on a
2-node cluster (both nodes at 127.0.0.1), so torchrun's rendezvous, Lightning DDP (gloo),
the checkpoint round trip through S3 (moto server) and the study (Optuna's gRPC proxy over
SQLite) are all real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import subprocess
import sys
import tempfile

import optuna
import pytest
import torch

from optuna_seer._ports import free_port
from optuna_seer.storage.proxy import StorageProxy
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.node_entrypoint import fetch_resume_checkpoint, run_node, torchrun_command
from tests.fake_sky import REPO_ROOT, kill_group, node_env
from tests.local_s3 import local_s3

SCRIPT = str(REPO_ROOT / "tests" / "scripts" / "digits_ddp.py")


def test_torchrun_command_multi_node() -> None:
    env = {
        "SKYPILOT_NUM_NODES": "2",
        "SKYPILOT_NODE_RANK": "1",
        "SKYPILOT_NODE_IPS": "10.0.0.7\n10.0.0.9\n",
        "SKYPILOT_NUM_GPUS_PER_NODE": "4",
        "SEER_TRAIN_SCRIPT": "train.py",
        "SEER_MASTER_PORT": "29999",
    }
    assert torchrun_command(env, ["--fast"])[1:] == [
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--node_rank=1",
        "--nproc_per_node=4",
        "--master_addr=10.0.0.7",
        "--master_port=29999",
        "train.py",
        "--fast",
    ]


def test_torchrun_command_single_node_is_standalone_and_cpu_gets_one_process() -> None:
    env = {
        "SKYPILOT_NUM_NODES": "1",
        "SKYPILOT_NUM_GPUS_PER_NODE": "0",
        "SEER_TRAIN_SCRIPT": "t.py",
    }
    assert torchrun_command(env)[3:] == ["--standalone", "--nnodes=1", "--nproc_per_node=1", "t.py"]


def test_the_script_may_be_a_module_target_with_arguments() -> None:
    env = {"SEER_TRAIN_SCRIPT": "-m optuna_seer.worker.entrypoint 'my dir/train.py:main'"}
    assert torchrun_command(env)[-3:] == [
        "-m",
        "optuna_seer.worker.entrypoint",
        "my dir/train.py:main",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SKYPILOT_NUM_NODES": "2", "SKYPILOT_NODE_IPS": "10.0.0.1"}, "lists 1 addresses"),
        ({"SKYPILOT_NUM_NODES": "two"}, "SKYPILOT_NUM_NODES='two'"),
        ({"SKYPILOT_NODE_RANK": "3"}, "SKYPILOT_NODE_RANK=3"),
        ({}, "SEER_TRAIN_SCRIPT is not set"),
    ],
)
def test_torchrun_command_rejects_bad_variables(env: dict[str, str], message: str) -> None:
    if "SEER_TRAIN_SCRIPT is not set" not in message:
        env = {"SEER_TRAIN_SCRIPT": "t.py", **env}
    with pytest.raises(RuntimeError, match=message):
        torchrun_command(env)


def test_corrupt_resume_checkpoint_falls_back_to_an_earlier_good_one(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    for rung in range(2):
        source = tmp_path / f"src-{rung}"
        source.write_text(f"weights after rung {rung}")
        store.put(source, f"rung-{rung}.ckpt")
    (tmp_path / "store" / "rung-1.ckpt").write_text("bit rot")
    local = fetch_resume_checkpoint(f"{tmp_path / 'store'}/rung-1.ckpt", tmp_path / "local")
    assert local.read_text() == "weights after rung 0"


@pytest.fixture
def s3_env() -> Iterator[dict[str, str]]:
    with local_s3("seer-ckpt") as env:
        yield env


def run_nodes(env: dict[str, str], nodes: int, timeout_s: float) -> list[str]:
    """Start the entry point once per node, like SkyPilot does; their outputs."""
    port = str(free_port())
    processes = []
    logs = []
    for rank in range(nodes):
        node = node_env(env)
        node.update(
            {
                "SKYPILOT_NODE_RANK": str(rank),
                "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * nodes),
                "SKYPILOT_NUM_NODES": str(nodes),
                "SKYPILOT_NUM_GPUS_PER_NODE": "1",
                "SEER_MASTER_PORT": port,
                "SEER_LOCAL_DIR": env["SEER_LOCAL_DIR"] + f"/node-{rank}",
            }
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "optuna_seer.worker.node_entrypoint"],
                env=node,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        for process in processes:
            out, _ = process.communicate(timeout=timeout_s)
            logs.append(out.decode(errors="replace"))
    finally:
        for process in processes:
            kill_group(process)
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
    return logs


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_launch_leaves_no_local_copies_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node keeps its copies of the trial's checkpoints only while the launch runs: a
    reused node would fill its disk one trial and rung at a time. A real torchrun of a
    script that writes its rung-end checkpoint; it is uploaded, and no local copy stays."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where mkdtemp makes it
    (tmp_path / "tmp").mkdir()
    env = node_env(
        {
            "SEER_STUDY": "s",
            "SEER_STORAGE": "sqlite:///unused.db",
            "SEER_TRIAL": "3",
            "SEER_RUNG": "0",
            "SEER_TARGET_EPOCHS": "1",
            "SEER_CHECKPOINT_URI": str(tmp_path / "store"),
            "SEER_TRAIN_SCRIPT": str(REPO_ROOT / "tests" / "scripts" / "rung_checkpoint.py"),
            "SEER_MASTER_PORT": str(free_port()),
            "SKYPILOT_NUM_GPUS_PER_NODE": "0",
        }
    )
    assert run_node(env) == 0
    assert open_store(str(tmp_path / "store")).names() == ["rung-0.ckpt"]
    assert list((tmp_path / "tmp").iterdir()) == []  # its own temporary dir is gone
    given = tmp_path / "local"
    assert run_node({**env, "SEER_RUNG": "1", "SEER_LOCAL_DIR": str(given)}) == 0
    assert given.is_dir() and list(given.iterdir()) == []  # the given dir stays, emptied


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_nodes_on_loopback_train_lightning_ddp_and_resume_through_s3(
    tmp_path: Path, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    storage_url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="digits", storage=storage_url, direction="maximize")
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.05, 0.5)})
    checkpoint_uri = "s3://seer-ckpt/seer/digits/trial-0"
    with StorageProxy(storage_url, host="127.0.0.1") as proxy:
        base = {
            **s3_env,
            "SEER_STUDY": "digits",
            "SEER_STORAGE": proxy.url,
            "SEER_TRIAL": str(trial.number),
            "SEER_PARAMS": f'{{"lr": {trial.params["lr"]}}}',
            "SEER_CHECKPOINT_URI": checkpoint_uri,
            "SEER_TRAIN_SCRIPT": SCRIPT,
            "SEER_LOCAL_DIR": str(tmp_path / "nodes"),
        }
        logs = run_nodes({**base, "SEER_RUNG": "0", "SEER_TARGET_EPOCHS": "1"}, 2, 200)
        assert "world 2 epochs 1" in logs[0]
        logs = run_nodes(
            {
                **base,
                "SEER_RUNG": "1",
                "SEER_TARGET_EPOCHS": "2",
                "SEER_RESUME_FROM": f"{checkpoint_uri}/rung-0.ckpt",
            },
            2,
            200,
        )
        assert "world 2 epochs 2" in logs[0]
        assert "uploaded s3://seer-ckpt/seer/digits/trial-0/rung-1.ckpt" in logs[0]
        assert "uploaded" not in logs[1]  # only node rank 0 uploads
        assert not list((tmp_path / "nodes").rglob("*.ckpt"))  # no local copies left

    for name, value in s3_env.items():  # this process reads S3 too
        monkeypatch.setenv(name, value)
    store = open_store(checkpoint_uri)
    assert store.names() == ["rung-0.ckpt", "rung-1.ckpt"]
    fetched = store.fetch("rung-1.ckpt", tmp_path / "final.ckpt")
    state = torch.load(fetched, map_location="cpu", weights_only=False)
    assert state["epoch"] == 2  # resumed after epoch 1, trained one more
    reported = optuna.load_study(study_name="digits", storage=storage_url).trials[0]
    assert sorted(reported.intermediate_values) == [1, 2]
    assert all(0.0 <= v <= 1.0 for v in reported.intermediate_values.values())
