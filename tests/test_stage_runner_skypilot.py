"""RubberBand plans on SkyPilot: ``run_elastic_plan`` with ``SkyPilotBackend`` as it is.

The ``StagedCluster`` hands SkyPilot no more launches at once than a stage's cluster holds,
and SkyPilot's own placement packs them onto that many nodes. ``SkyPilotBackend`` takes its
``resources`` when built, so a plan that changes instance type between stages gets one
backend per type from a factory (the previous one released, its clusters down).

Fake at the SDK boundary only, as in ``tests/test_skypilot_executor.py``: ``RecordingSky``
replaces the ``sky`` client's cluster calls; the node processes, torchrun, DDP over gloo,
checkpoints in a moto S3 server and the study behind the gRPC storage proxy are real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from optuna_seer._ports import free_port
from optuna_seer.backends.skypilot.backend import SkyPilotBackend
from optuna_seer.execution.stage_runner import run_elastic_plan
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import CloudModel
from optuna_seer.planning.stage_plan import ElasticPlan, Stage
from tests.fake_sky import REPO_ROOT, RecordingSky, recording_sky
from tests.local_s3 import local_s3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRAIN = f"{REPO_ROOT / 'examples' / 'torch_digits.py'}:train"
BUCKET = "seer-staged"
NODE = PriceQuote("A100x2", "A100", 2, 3.0)


@pytest.fixture(scope="module", autouse=True)
def home(sky_home_dir: Path) -> Path:
    return sky_home_dir


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingSky]:
    with (
        local_s3(BUCKET) as env,
        recording_sky(tmp_path, env, monkeypatch, DIGITS_REPEATS="1") as sdk,
    ):
        yield sdk


def test_a_rubberband_plan_runs_on_skypilot_stage_by_stage(
    fake: RecordingSky, tmp_path: Path
) -> None:
    # 4 one-GPU trials on 2 nodes, 2 two-GPU trials on 2 nodes, then 1 four-GPU trial.
    plan = ElasticPlan((Stage(4, 1, 1, NODE, 2), Stage(2, 2, 2, NODE, 2), Stage(1, 4, 4, NODE, 2)))
    backend = SkyPilotBackend(
        resources="A100:2",
        clouds=["aws"],
        proxy_host="127.0.0.1",
        proxy_port=free_port(),
        max_gpus=4,
        price_per_gpu_hour=1.5,
        workdir=REPO_ROOT,
        poll_interval_s=0.2,
        sdk=fake,
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run = run_elastic_plan(
        plan,
        backend=backend,
        profile=Profile(epoch_seconds=600, scaling="linear", startup_seconds=60),
        deadline_s=3600,
        budget_dollars=50,
        train=TRAIN,
        checkpoints=f"s3://{BUCKET}/{tmp_path.name}",
        storage=url,
        study_name="sky-staged",
        sampler=optuna.samplers.RandomSampler(seed=0),
        cloud=CloudModel(billing="per-second"),
        poll_seconds=0.5,
    )
    assert [r.state for r in run.tuning.launches] == ["succeeded"] * 7
    assert sorted(run.tuning.trial_states.values()) == ["COMPLETE", "PRUNED", "PRUNED", "PRUNED"]
    assert [r.workers for r in run.tuning.launches] == [1, 1, 1, 1, 2, 2, 4]
    # SkyPilot was never asked for more than the stage's 2 nodes of 2 GPUs at once.
    assert fake.peak_gpus == 4
    # (SkyPilot's placement decides how: new clusters, or idle ones resized.)
    assert {call[3] for call in fake.ops("launch")} == {2}  # nodes of 2 GPUs only
    assert fake.get(fake.status()) == []  # everything torn down
    # One cluster shape all along: one lease in the plan's terms.
    assert [(lease.nodes, lease.stages) for lease in run.leases] == [(2, (0, 1, 2))]
    assert backend.spent_dollars > 0


def _backend(fake: RecordingSky, gpus: int) -> SkyPilotBackend:
    return SkyPilotBackend(
        resources=f"A100:{gpus}",
        clouds=["aws"],
        proxy_host="127.0.0.1",
        proxy_port=free_port(),
        max_gpus=4,
        price_per_gpu_hour=1.5,
        workdir=REPO_ROOT,
        poll_interval_s=0.2,
        sdk=fake,
    )


def test_a_plan_that_changes_instance_type_gets_a_backend_per_type(
    fake: RecordingSky, tmp_path: Path
) -> None:
    single = PriceQuote("A100x1", "A100", 1, 1.5)
    # 4 one-GPU trials on 4 one-GPU nodes, then 2 × 2 GPUs and 1 × 4 on 2-GPU nodes.
    plan = ElasticPlan(
        (Stage(4, 1, 1, single, 4), Stage(2, 2, 2, NODE, 2), Stage(1, 4, 4, NODE, 2))
    )
    made: list[SkyPilotBackend] = []

    def backend_for(instance: PriceQuote) -> SkyPilotBackend:
        made.append(_backend(fake, instance.gpus))
        return made[-1]

    run = run_elastic_plan(
        plan,
        backend=backend_for,
        profile=Profile(epoch_seconds=600, scaling="linear", startup_seconds=60),
        deadline_s=3600,
        budget_dollars=50,
        train=TRAIN,
        checkpoints=f"s3://{BUCKET}/{tmp_path.name}",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        study_name="sky-two-types",
        sampler=optuna.samplers.RandomSampler(seed=0),
        poll_seconds=0.5,
    )
    assert [r.state for r in run.tuning.launches] == ["succeeded"] * 7
    assert [r.workers for r in run.tuning.launches] == [1, 1, 1, 1, 2, 2, 4]
    assert len(made) == 2
    shapes = [call[2:] for call in fake.ops("launch")]
    assert shapes[:4] == [(1, 1)] * 4  # stage 0: one-GPU nodes
    assert all(gpus_per_node == 2 for _, gpus_per_node in shapes[4:])  # then 2-GPU nodes
    assert fake.peak_gpus == 4
    assert fake.get(fake.status()) == []
    assert [(lease.instance, lease.stages) for lease in run.leases] == [
        (single, (0,)),
        (NODE, (1, 2)),
    ]
