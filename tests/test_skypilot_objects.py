"""Every template and every Task/Resources SkyPilotBackend builds is a real, valid SkyPilot
object (no cloud needed: SkyPilot validates these offline)."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys
from typing import Any

import pytest

import optuna_seer
from optuna_seer.backends.base import LaunchSpec
from optuna_seer.backends.skypilot import TEMPLATES_DIR, SkyPilotBackend
from optuna_seer.backends.skypilot.tasks import DEFAULT_TEMPLATE, node_train_script
from optuna_seer.planning.placement import ClusterShape, TrialSlot
from optuna_seer.pricing.sources import sky_accelerator_quote
from optuna_seer.worker.context import ENV_CHECKPOINT_URI, ENV_STORAGE, trial_context
from optuna_seer.worker.node_entrypoint import torchrun_command
from tests.fake_sky import REPO_ROOT, node_env, node_variables
from tests.local_s3 import local_s3


@pytest.fixture(scope="module", autouse=True)
def home(sky_home_dir: Path) -> Path:
    """Every test here runs with ``HOME`` in the module's SkyPilot home (tests/conftest.py)."""
    return sky_home_dir


@pytest.fixture(scope="module")
def sky() -> Any:
    import sky

    return sky


def backend(**overrides: Any) -> SkyPilotBackend:
    options: dict[str, Any] = {
        "script": "train.py",
        "resources": "A100:8",
        "clouds": ["aws", "gcp"],
        "use_spot": True,
        "checkpoints": "s3://bucket/seer",
        "storage": "postgresql://u:p@db.example.com/optuna",
        "price_per_gpu_hour": 2.0,
        "workdir": str(REPO_ROOT),
    }
    options.update(overrides)
    return SkyPilotBackend(**options)


def spec(**overrides: Any) -> LaunchSpec:
    fields: dict[str, Any] = {
        "study_name": "digits",
        "storage": "sqlite:////tmp/study.db",
        "trial_number": 3,
        "params": {"lr": 0.1},
        "rung": 1,
        "target_epochs": 4,
        "workers": 16,
        "checkpoint_uri": "/driver/ckpt/trial-3",
        "resume_from": "/driver/ckpt/trial-3/rung-0.ckpt",
    }
    fields.update(overrides)
    return LaunchSpec(**fields)


def test_trial_template_is_a_valid_multi_node_task(sky: Any, tmp_path: Path) -> None:
    task = sky.Task.from_yaml(str(DEFAULT_TEMPLATE))
    assert task.num_nodes == 2
    (resources,) = task.resources
    assert resources.accelerators == {"A100": 8}
    assert "python -m optuna_seer.worker.node_entrypoint" in task.run
    # The template's defaults already satisfy the SEER_* contract a script reads (with the
    # checkpoints on this disk: the template's s3:// example bucket is not reachable here).
    variables = {**node_variables(task), ENV_CHECKPOINT_URI: str(tmp_path)}
    context = trial_context(variables)
    assert (context.trial_number, context.rung, context.resume_checkpoint) == (0, 0, None)


def test_the_templates_are_launchers_shipped_in_the_package_once() -> None:
    # launchers/ at the top holds them; the package reaches the same files through the link
    # optuna_seer/launchers (package data of the wheel), so nothing can drift.
    package = Path(optuna_seer.__file__).resolve().parent
    assert package / "launchers" / "trial.yaml" == DEFAULT_TEMPLATE
    assert DEFAULT_TEMPLATE.resolve() == REPO_ROOT / "launchers" / "trial.yaml"
    assert (package / "launchers").is_symlink()
    assert (package / "launchers").resolve() == REPO_ROOT / "launchers"
    assert not (package / "templates").exists()
    names = sorted(p.name for p in TEMPLATES_DIR.glob("*.yaml"))
    assert names == ["driver-job.yaml", "driver.yaml", "trial.yaml"]


def test_driver_template_is_a_valid_cpu_task_with_the_proxy_port(sky: Any) -> None:
    task = sky.Task.from_yaml(str(TEMPLATES_DIR / "driver.yaml"))
    (resources,) = task.resources
    assert resources.accelerators is None
    assert resources.ports == ["13000"]
    assert "SEER_ADVERTISE_HOST" in task.run
    # The port is the storage tunnel's; its credential is made by SkyPilotBackend on the
    # driver and reaches the nodes as a secret: the template carries none, nor a proxy URL.
    carried = {**task.envs, **task.secrets}
    assert not any(str(v).startswith(("grpc://", "grpcs://")) for v in carried.values())
    assert not any("TOKEN" in name for name in carried)


def test_spot_with_on_demand_fallback_across_clouds_is_an_any_of_set(sky: Any) -> None:
    resources = backend().node_resources(ClusterShape(2, 8))
    assert isinstance(resources, set)
    assert all(isinstance(r, sky.Resources) for r in resources)
    seen = {(str(r.cloud), r.use_spot, r.accelerators["A100"]) for r in resources}
    assert seen == {("AWS", True, 8), ("GCP", True, 8), ("AWS", False, 8), ("GCP", False, 8)}


def test_listed_order_is_an_ordered_list_spot_tier_first(sky: Any) -> None:
    resources = backend(candidate_order="listed").node_resources(ClusterShape(1, 4))
    assert isinstance(resources, list)
    assert [(str(r.cloud), r.use_spot) for r in resources] == [
        ("AWS", True),
        ("GCP", True),
        ("AWS", False),
        ("GCP", False),
    ]
    assert all(r.accelerators == {"A100": 4} for r in resources)


def test_single_candidate_is_one_resources_with_extra_fields(sky: Any) -> None:
    b = backend(
        resources={"accelerators": "H100:8", "disk_size": 512},
        clouds=["aws/us-east-1"],
        use_spot=False,
    )
    (resources,) = b.node_resources(ClusterShape(1, 8))
    assert isinstance(resources, sky.Resources)
    assert (str(resources.cloud), resources.region, resources.disk_size) == (
        "AWS",
        "us-east-1",
        512,
    )


def test_cluster_task_provisions_the_shape_and_runs_nothing(sky: Any) -> None:
    task = backend().cluster_task(ClusterShape(2, 8))
    assert isinstance(task, sky.Task)
    assert task.num_nodes == 2 and task.run is None
    assert "pip install" in task.setup
    assert len(task.resources) == 4


def test_trial_task_carries_the_contract_with_remote_uris(sky: Any) -> None:
    b = backend()
    task = b.trial_task(spec(), TrialSlot("seer-x-0", nodes=2, gpus_per_node=8))
    assert isinstance(task, sky.Task)
    assert task.num_nodes == 2
    (resources,) = task.resources
    assert resources.accelerators == {"A100": 8}
    # fetch=False: read the contract only. Fetching would download the resume checkpoint
    # from s3://bucket (the node's job, tested against a local S3 server in
    # test_node_entrypoint.py), and tests never touch the network.
    context = trial_context(node_variables(task), fetch=False)
    assert context.storage == "postgresql://u:p@db.example.com/optuna"
    assert context.checkpoint_uri == "s3://bucket/seer/digits/trial-3"
    assert context.resume_uri == "s3://bucket/seer/digits/trial-3/rung-0.ckpt"
    assert context.resume_checkpoint is None  # not fetched
    assert (context.trial_number, context.rung, context.target_epochs) == (3, 1, 4)
    assert task.envs["SEER_TRAIN_SCRIPT"] == "train.py"


def test_the_executors_train_target_runs_on_the_nodes_relative_to_workdir() -> None:
    train = f"{REPO_ROOT / 'examples' / 'torch_digits.py'}:train"  # as ElasticTuner gives it
    env = backend(script=None).node_env(spec(entrypoint=train))
    assert (
        env["SEER_TRAIN_SCRIPT"]
        == "-m optuna_seer.worker.entrypoint examples/torch_digits.py:train"
    )
    # What the node runs under torchrun: the same entry point LocalBackend runs.
    command = torchrun_command({**env, "SKYPILOT_NUM_GPUS_PER_NODE": "2"})
    assert command[-3:] == ["-m", "optuna_seer.worker.entrypoint", "examples/torch_digits.py:train"]
    assert (
        node_train_script("my pkg/train.py", "/work")
        == "-m optuna_seer.worker.entrypoint 'my pkg/train.py'"
    )
    assert (
        node_train_script("pkg.train:fit", "/work")
        == "-m optuna_seer.worker.entrypoint pkg.train:fit"
    )


def test_a_program_the_nodes_cannot_run_is_refused_at_start(tmp_path: Path) -> None:
    outside = f"{tmp_path / 'train.py'}:train"
    with pytest.raises(ValueError, match=r"outside workdir=.*move it under workdir"):
        backend(script=None).start(spec(workers=1, entrypoint=outside))
    with pytest.raises(ValueError, match=r"script='train.py': leave script out"):
        backend().start(spec(workers=1, entrypoint="pkg.train:fit"))
    with pytest.raises(ValueError, match="names no program"):
        backend(script=None).start(spec(workers=1))


def test_remote_storage_and_s3_uris_pass_through(sky: Any) -> None:
    env = backend(storage=None).node_env(
        spec(
            storage="grpc://10.0.0.2:13000",
            checkpoint_uri="s3://other/t3",
            resume_from="s3://other/t3/rung-0.ckpt",
            env={"EXTRA": "1"},
        )
    )
    assert env[ENV_STORAGE] == "grpc://10.0.0.2:13000"
    assert env[ENV_CHECKPOINT_URI] == "s3://other/t3"
    assert env["EXTRA"] == "1"


def test_driver_local_storage_without_a_reachable_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SEER_ADVERTISE_HOST", raising=False)
    b = backend(storage=None)
    with pytest.raises(ValueError, match="gRPC proxy"):
        b.start(spec(workers=1))


def test_local_checkpoints_without_an_s3_prefix_are_refused() -> None:
    with pytest.raises(ValueError, match="checkpoints='s3://bucket/prefix'"):
        backend(checkpoints=None).start(spec(workers=1))


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"resources": {"accelerators": "A100:8", "infra": "aws"}}, ValueError, "'infra'"),
        ({"resources": "A100:eight"}, ValueError, "must be an int"),
        ({"resources": {"cpus": 4}}, ValueError, "needs accelerators"),
        ({"checkpoints": "/tmp/ckpt"}, ValueError, "s3://bucket/prefix"),
        ({"clouds": "aws"}, TypeError, "list of infra"),
        ({"max_gpus": 0}, ValueError, "max_gpus=0"),
        ({"node_sizes": [16]}, ValueError, "node size 16"),
        ({"candidate_order": "fastest"}, ValueError, "'cost' or 'listed'"),
        ({"script": ""}, ValueError, "script=''"),
        ({"template": "/nowhere/trial.yaml"}, ValueError, "not found"),
    ],
)
def test_bad_arguments_are_named(overrides: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        backend(**overrides)


def test_unknown_cloud_is_rejected_by_skypilot_itself() -> None:
    with pytest.raises(ValueError, match="'awz' does not match"):
        backend(clouds=["awz"])


def test_a_trial_larger_than_the_quota_can_never_start() -> None:
    with pytest.raises(ValueError, match="needs 16 GPUs"):
        backend(max_gpus=8).start(spec(workers=16))


def test_prices_come_from_skypilots_catalog_where_it_has_them() -> None:
    # ~/.sky/catalogs/v8/aws/vms.csv (hand-written, see sky_home) has p4d.24xlarge.
    price, source = backend(clouds=["aws"]).hourly_price(ClusterShape(2, 8))
    assert price == pytest.approx(2 * 12.5)
    assert source == "skypilot catalog: aws p4d.24xlarge (spot)"
    on_demand = backend(clouds=["aws"], use_spot=False).hourly_price(ClusterShape(1, 8))
    assert on_demand == (pytest.approx(32.7726), "skypilot catalog: aws p4d.24xlarge")


def test_prices_fall_back_to_the_configured_price_and_say_so() -> None:
    # No AWS instance has 2 A100s in the catalog.
    price, source = backend(clouds=["aws"]).hourly_price(ClusterShape(1, 2))
    assert price == pytest.approx(4.0)
    assert "configured $2.0/GPU-hour" in source
    unknown = backend(clouds=["aws"], price_per_gpu_hour=None).hourly_price(ClusterShape(1, 2))
    assert unknown[0] is None and "unknown" in unknown[1]


def test_one_catalog_lookup_prices_by_accelerator_and_never_downloads(home: Path) -> None:
    # The backend and the planners share pricing.sources' lookup: cheapest matching type.
    quote = sky_accelerator_quote("A100", 8, cloud="aws", market="spot")
    assert quote is not None
    assert (quote.instance_type, quote.dollars_per_hour, quote.gpus) == ("p4d.24xlarge", 12.5, 8)
    assert sky_accelerator_quote("A100", 2, cloud="aws") is None  # no such instance
    # GCP's catalog is not on disk: no quote, and no download attempted.
    assert sky_accelerator_quote("A100", 8, cloud="gcp") is None
    assert not list(home.glob(".sky/catalogs/*/gcp/vms.csv"))
    # A region in the infra string is priced in that region, and named in the source.
    price, source = backend(clouds=["aws/us-east-1"], use_spot=False).hourly_price(
        ClusterShape(1, 8)
    )
    assert (price, source) == (
        pytest.approx(32.7726),
        "skypilot catalog: aws/us-east-1 p4d.24xlarge",
    )


def test_no_cloud_named_means_no_single_catalog_price() -> None:
    # SkyPilot may pick any cloud: the configured price is the estimate.
    price, source = backend(clouds=[]).hourly_price(ClusterShape(1, 8))
    assert price == pytest.approx(16.0)
    assert "configured $2.0/GPU-hour" in source


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_skypilots_optimizer_picks_instances_for_the_backends_clusters(
    tmp_path: Path, home: Path
) -> None:
    """SkyPilot's optimizer, the part of ``sky launch --dryrun`` that works offline.

    ``sky launch --dryrun`` itself starts a local API server (~1.2 GB) and needs ``rsync``,
    which this machine lacks; the optimizer it runs is called here in a child process, with
    the hand-written catalog and AWS credentials pointed at a local moto server (what
    ``sky check`` accepts as an enabled AWS).
    """
    common = home / ".sky" / "catalogs" / "v8" / "common"
    common.mkdir(parents=True, exist_ok=True)
    (common / "accelerators.csv").write_text('AcceleratorName,Clouds\nA100,"AWS, GCP"\n')
    (common / "metadata.csv").write_text("GPU,MemoryGB,Manufacturer\nA100,40,NVIDIA\n")
    with local_s3("optimizer") as s3:
        env = node_env({**s3, "HOME": str(home), "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"})
        result = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "tests/scripts/optimize_cluster_tasks.py"),
                str(tmp_path),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["nodes"], r["instance"], r["spot"]) for r in rows] == [
        (1, "p4d.24xlarge", True),
        (2, "p4d.24xlarge", True),
    ]
    for row in rows:  # the backend's price estimate is what SkyPilot would charge
        assert row["hourly"] == pytest.approx(row["nodes"] * 12.5)
        assert row["estimate"] == pytest.approx(row["hourly"])


def test_a_template_without_run_or_with_a_typo_is_refused(tmp_path: Path) -> None:
    no_run = tmp_path / "no_run.yaml"
    no_run.write_text("name: t\nresources:\n  accelerators: A100:8\n")
    with pytest.raises(ValueError, match="has no run"):
        backend(template=no_run)
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: t\nnum_node: 2\nrun: echo\n")
    with pytest.raises(ValueError, match="num_node"):
        backend(template=typo)


def test_a_missing_catalog_is_fetched_once_unless_fetching_is_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # SkyPilot's catalog fetch faked at its boundary (sky.catalog's lookup, which is what
    # downloads a missing CSV): one that finds the network down, one that "downloads".
    import sky.catalog
    from sky.catalog import common as sky_common

    from optuna_seer.pricing import sources

    calls: list[str] = []
    path = Path(sky_common.get_catalog_path("lambda/vms.csv"))

    def offline(**kwargs: Any) -> None:
        calls.append(kwargs["clouds"])
        raise ConnectionError("offline (fake)")

    monkeypatch.setattr(sky.catalog, "list_accelerators", offline)
    monkeypatch.setenv("SEER_PRICE_FETCH", "0")
    assert sources._sky_catalog("lambda") is None and calls == []  # off: never asked
    monkeypatch.setenv("SEER_PRICE_FETCH", "1")
    monkeypatch.setattr(sources, "_UNFETCHABLE", set())
    with caplog.at_level("WARNING", logger="optuna_seer.pricing.sources"):
        assert sources._sky_catalog("lambda") is None
        assert sources._sky_catalog("lambda") is None  # not asked twice
    assert calls == ["lambda"]
    assert any("could not be fetched" in r.getMessage() for r in caplog.records)

    def download(**kwargs: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("InstanceType,AcceleratorName,AcceleratorCount,Price\n")

    monkeypatch.setattr(sky.catalog, "list_accelerators", download)
    monkeypatch.setattr(sources, "_UNFETCHABLE", set())
    try:
        assert sources._sky_catalog("lambda") is sky.catalog
    finally:
        path.unlink()
