"""What users ``sky launch`` (launchers/): valid SkyPilot tasks, nodes that install the
driver's own code, and the example tune script run end to end.

SkyPilot validates the templates offline with its own ``sky.Task.from_yaml``. The end-to-end
run fakes the cloud at the SDK boundary only (no cloud is reachable here): ``RecordingSky``
(tests/fake_sky.py) stands in for the ``sky`` client's cluster calls, and everything behind
them is real: the tune script as shipped (``optuna_seer.launchers.tune_on_sky``), the plan,
``ElasticTuner``, the Task objects, one node-entrypoint process per node with torchrun,
checkpoints on a moto S3 server, the study in SQLite behind the backend's storage proxy.
"""

from __future__ import annotations

from collections.abc import Iterator
import hashlib
from pathlib import Path
import subprocess
import sys
from typing import Any
import zipfile

import optuna
import pytest
import yaml

import optuna_seer
from optuna_seer._ports import free_port
from optuna_seer.backends.skypilot import TEMPLATES_DIR, SkyPilotBackend
from optuna_seer.backends.skypilot.packages import package_files, write_node_packages
from optuna_seer.backends.skypilot.tasks import NODE_PACKAGES, node_packages_dir
from optuna_seer.execution.report import format_report
from optuna_seer.planning.placement import ClusterShape
from tests.fake_sky import REPO_ROOT, RecordingSky, recording_sky
from tests.local_s3 import local_s3

LAUNCHERS = REPO_ROOT / "launchers"
TEMPLATES = sorted(p.name for p in LAUNCHERS.glob("*.yaml"))
BUCKET = "seer-launchers"


@pytest.fixture(scope="module", autouse=True)
def home(sky_home_dir: Path) -> Path:
    """Every test here runs with ``HOME`` in the module's SkyPilot home (tests/conftest.py)."""
    return sky_home_dir


def test_launchers_hold_the_templates_and_the_tune_script() -> None:
    assert TEMPLATES == ["driver-job.yaml", "driver.yaml", "trial.yaml"]
    assert (LAUNCHERS / "tune_on_sky.py").is_file()
    # The package's copy is the same directory (a link in a checkout), not a second copy.
    assert TEMPLATES_DIR.resolve() == LAUNCHERS


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_is_a_valid_skypilot_task(name: str) -> None:
    import sky

    task = sky.Task.from_yaml(str(LAUNCHERS / name))
    assert task.run and "set -e" in task.setup
    # Nodes install what the driver wrote (its wheel, its pinned versions), never
    # optuna-seer from a package index.
    assert "pip install --quiet -r requirements.txt" in task.setup
    assert "optuna-seer" not in task.setup and "SEER_PIP" not in task.setup
    assert task.envs["SEER_PACKAGES"] in (".seer-node", ".seer-driver")


def test_the_managed_driver_recovers_and_keeps_no_study_on_its_disk() -> None:
    import sky

    config = yaml.safe_load((LAUNCHERS / "driver-job.yaml").read_text())
    recovery = config["resources"]["job_recovery"]
    assert recovery["max_restarts_on_errors"] >= 1 and recovery["strategy"]
    assert "ports" not in config["resources"]  # an RDB study: no proxy port to open
    task = sky.Task.from_yaml(str(LAUNCHERS / "driver-job.yaml"))
    assert task.envs["SEER_MANAGED_JOB"] == "1"


def test_the_node_wheel_is_the_drivers_code_and_pins_its_optuna(tmp_path: Path) -> None:
    packages = write_node_packages(tmp_path / "node")
    requirements = (tmp_path / "node" / "requirements.txt").read_text().splitlines()
    assert f"./{packages.wheel.name}[lightning,s3,gcs,grpc]" in requirements
    assert f"optuna=={optuna.__version__}" in requirements
    # pip installs the wheel (no index): its files are byte for byte the package this runs.
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(packages.wheel),
        ],
        check=True,
        timeout=120,
    )
    for name, path in package_files():
        installed = target / name
        assert installed.read_bytes() == path.read_bytes(), name
    assert (target / "optuna_seer" / "launchers" / "trial.yaml").is_file()
    # The version names the content: other code, another version.
    with zipfile.ZipFile(packages.wheel) as wheel:
        assert f"optuna_seer-{packages.version}.dist-info/RECORD" in wheel.namelist()
    digest = hashlib.sha256(packages.wheel.read_bytes()).hexdigest()
    again = write_node_packages(tmp_path / "again")
    assert hashlib.sha256(again.wheel.read_bytes()).hexdigest() == digest  # reproducible


def test_the_documented_driver_packages_command_runs_without_warnings(tmp_path: Path) -> None:
    # The command docs/cloud.md, launchers/README.md and driver.yaml show. The package's
    # __init__ once imported ``packages`` itself, so every run printed runpy's RuntimeWarning
    # ("found in sys.modules ... may result in unpredictable behaviour").
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::RuntimeWarning",
            "-m",
            "optuna_seer.backends.skypilot.packages",
            ".seer-driver",
            "--extras",
            "sky,s3",
            "--pin",
            "optuna",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr
    requirements = (tmp_path / ".seer-driver" / "requirements.txt").read_text().splitlines()
    assert any(line.endswith(".whl[sky,s3]") for line in requirements), requirements
    # The Optuna the command's own interpreter finds (from tmp_path: a relative PYTHONPATH, as
    # the test script's Optuna-floor pass sets, does not reach it there).
    seen = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('optuna'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert f"optuna=={seen}" in requirements


def test_an_unknown_extra_or_pin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not optuna-seer extras"):
        write_node_packages(tmp_path, extras=("lightnin",))
    with pytest.raises(ValueError, match="cannot pin"):
        write_node_packages(tmp_path, pins=("no-such-distribution",))


def test_the_rendered_cluster_task_installs_the_mounted_wheel() -> None:
    backend = SkyPilotBackend(
        script="train.py",
        resources="A100:8",
        clouds=["aws"],
        checkpoints="s3://bucket/seer",
        storage="postgresql://u:p@db.example.com/optuna",
        price_per_gpu_hour=2.0,
        workdir=str(REPO_ROOT),
    )
    task = backend.cluster_task(ClusterShape(2, 8))
    assert task.file_mounts[NODE_PACKAGES] == str(node_packages_dir())
    assert task.envs["SEER_PACKAGES"] == NODE_PACKAGES
    assert "pip install --quiet -r requirements.txt" in task.setup
    requirements = (node_packages_dir() / "requirements.txt").read_text()
    assert f"optuna=={optuna.__version__}" in requirements
    (wheel,) = node_packages_dir().glob("optuna_seer-*.whl")
    assert f"./{wheel.name}[" in requirements
    assert optuna_seer.__name__ == "optuna_seer"


def test_the_tune_script_refuses_a_sqlite_study_as_a_managed_job() -> None:
    from optuna_seer.launchers import tune_on_sky

    settings = tune_on_sky.Settings.from_env(
        {"SEER_CHECKPOINTS": "s3://b/p", "SKYPILOT_TASK_ID": "sky-managed-2026_1_1-1"}
    )
    assert settings.managed_job and settings.storage.startswith("sqlite")
    with pytest.raises(SystemExit, match="managed job loses"):
        tune_on_sky.tune(settings)
    with pytest.raises(SystemExit, match="SEER_CHECKPOINTS"):
        tune_on_sky.Settings.from_env({})


@pytest.mark.parametrize(
    ("name", "value"),
    [("SEER_BUDGET", "lots"), ("SEER_MAX_GPUS", "8.5"), ("SEER_PROXY_PORT", "0")],
)
def test_the_tune_script_names_a_bad_setting(name: str, value: str) -> None:
    # It used to stop with int()/float()'s traceback, which does not say which variable.
    from optuna_seer.launchers import tune_on_sky

    with pytest.raises(SystemExit, match=f"^{name}='{value}' must be"):
        tune_on_sky.Settings.from_env({"SEER_CHECKPOINTS": "s3://b/p", name: value})


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    with local_s3(BUCKET) as env:
        yield env


@pytest.fixture
def fake(
    tmp_path: Path, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecordingSky]:
    with recording_sky(tmp_path, s3_env, monkeypatch, DIGITS_REPEATS="1") as sdk:
        yield sdk


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_example_tune_script_runs_end_to_end(fake: RecordingSky, tmp_path: Path) -> None:
    from optuna_seer.launchers import tune_on_sky

    settings = tune_on_sky.Settings(
        checkpoints=f"s3://{BUCKET}/{tmp_path.name}",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        deadline="20m",
        budget_dollars=5.0,
        accelerators="A100:2",
        max_gpus=4,
        train="examples/torch_digits.py:train",  # the plain-PyTorch twin: quicker on CPU
        workdir=str(REPO_ROOT),
        proxy_port=free_port(),
        epoch_seconds=600.0,
        scaling="linear",
        max_epochs=4,
        price_per_gpu_hour=1.5,
        max_configs=4,
        reduction_factor=2,
        backend_options={"proxy_host": "127.0.0.1", "poll_interval_s": 0.2},
    )
    result, backend = tune_on_sky.tune(settings, sdk=fake)
    assert result.best_trial is not None, result.notes
    assert {r.state for r in result.launches} == {"succeeded"}
    # Every cluster was set up from the driver's wheel mounted on its nodes.
    assert fake.ops("setup") and all(op[1] in fake.launched for op in fake.ops("setup"))
    assert fake.clusters == {} and backend.clusters == {}
    report = format_report(result, bill=backend.bill())
    assert "bill: $" in report and "SkyPilot cost report: $" in report
    # A second run of the script (a recovered managed-job driver) finds the study finished.
    again, _ = tune_on_sky.tune(settings, sdk=fake)
    assert again.reloaded and again.best_trial is not None
    assert again.best_trial.number == result.best_trial.number


def test_mounts_are_checked_by_the_fake(fake: RecordingSky) -> None:
    # The fake records what each setup launch mounted: a cluster task must carry the wheel.
    backend = SkyPilotBackend(
        script="train.py",
        resources="A100:2",
        clouds=["aws"],
        checkpoints="s3://bucket/seer",
        storage="postgresql://u:p@db.example.com/optuna",
        price_per_gpu_hour=2.0,
        workdir=str(REPO_ROOT),
        sdk=fake,
    )
    task: Any = backend.cluster_task(ClusterShape(1, 2))
    fake.get(fake.launch(backend._tasks.boot_task(ClusterShape(1, 2)), cluster_name="c"))
    fake.get(fake.launch(task, cluster_name="c"))
    assert fake.clusters["c"].mounts == {NODE_PACKAGES: str(node_packages_dir())}
    assert fake.clusters["c"].setups == 1
    fake.get(fake.down("c"))
