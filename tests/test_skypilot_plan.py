"""A 3-rung SEER plan driven through SkyPilotBackend.

Fake at the SDK boundary: no cloud is reachable here. ``RecordingSky`` replaces only the
``sky`` client's cluster calls (launch with resize/exec/job_status/cancel/down/status/
tail_logs/cost_report/get); everything
behind it is real: the Task/Resources objects, the per-node entry point run as one process
per node with SkyPilot's variables, torchrun, the training script, checkpoints in a moto S3
server, and the study in SQLite served to the nodes through Optuna's gRPC proxy.

The driver loop below stands in for ElasticTuner (built on another branch): per rung it
starts every surviving trial with ``backend.start(LaunchSpec(...))``, waits, keeps the best
``n`` of the next rung, and ``release()``s in ``finally``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import json
import os
from pathlib import Path
import signal
import threading
import time
from typing import Any

import optuna
import pytest

from optuna_seer._ports import free_port
from optuna_seer.backends.base import LaunchSpec, LaunchState
from optuna_seer.backends.skypilot.backend import SkyPilotBackend
from optuna_seer.planning.plan import Plan, Rung
from optuna_seer.worker.checkpoints import open_store
from tests.fake_sky import REPO_ROOT, RecordingSky, recording_sky
from tests.local_s3 import local_s3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SCRIPT = "tests/scripts/epoch_counter.py"
BUCKET = "seer-plan"


def rung(index: int, n_trials: int, resource: int, gpus: int) -> Rung:
    return Rung(
        index=index,
        n_trials=n_trials,
        resource=resource,
        gpus_per_trial=gpus,
        start_s=0.0,
        end_s=0.0,
        cost=0.0,
        epoch_seconds=60.0,
        concurrent_trials=n_trials,
        waves=1,
    )


# 4 trials × 1 GPU → 2 trials × 2 GPUs → 1 trial × 4 GPUs, on nodes of 2 GPUs.
PLAN = Plan(
    rungs=(rung(0, 4, 1, 1), rung(1, 2, 2, 2), rung(2, 1, 4, 4)),
    reduction_factor=2,
    deadline_s=3600.0,
    budget_dollars=100.0,
    price_per_gpu_second=1.0 / 3600,
    min_marginal_speedup=0.2,
)


@pytest.fixture(scope="module", autouse=True)
def home(sky_home_dir: Path) -> Path:
    """Every test here runs with ``HOME`` in the module's SkyPilot home (tests/conftest.py)."""
    return sky_home_dir


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    with local_s3(BUCKET) as env:
        yield env


@pytest.fixture
def s3(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)  # the driver and the nodes reach the same S3
    return s3_env


@pytest.fixture
def fake(
    tmp_path: Path, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[RecordingSky]:
    with recording_sky(tmp_path, s3_env, monkeypatch) as sdk:
        yield sdk


def make_backend(fake: RecordingSky, tmp_path: Path) -> SkyPilotBackend:
    return SkyPilotBackend(
        script=SCRIPT,
        resources="A100:2",
        clouds=["aws", "gcp"],
        use_spot=True,
        checkpoints=f"s3://{BUCKET}/{tmp_path.name}",
        proxy_host="127.0.0.1",
        proxy_port=free_port(),
        max_gpus=8,
        price_per_gpu_hour=1.5,
        workdir=REPO_ROOT,
        poll_interval_s=0.2,
        sdk=fake,
    )


def new_study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(
        study_name="plan",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )


def drive(
    backend: SkyPilotBackend,
    plan: Plan,
    study: optuna.Study,
    tmp_path: Path,
    *,
    extra_params: Callable[[int, int], dict[str, Any]] = lambda number, rung: {},
    on_wait: Callable[[int], None] = lambda rung: None,
    first_rung: int = 0,
    trials: Sequence[Any] | None = None,
) -> dict[int, dict[int, LaunchState]]:
    """A minimal SEER executor loop; the launch states per rung."""
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    if trials is None:
        trials = [study.ask(space) for _ in range(plan.rungs[0].n_trials)]
    alive = [t.number for t in trials]
    params = {t.number: t.params for t in trials}
    states: dict[int, dict[int, LaunchState]] = {}
    try:
        for r in plan.rungs[first_rung:]:
            handles = {}
            for number in alive:
                local = tmp_path / "checkpoints" / f"trial-{number}"
                handles[number] = backend.start(
                    LaunchSpec(
                        study_name=study.study_name,
                        storage=f"sqlite:///{tmp_path / 'study.db'}",
                        trial_number=number,
                        params={**params[number], **extra_params(number, r.index)},
                        rung=r.index,
                        target_epochs=r.resource,
                        workers=r.gpus_per_trial,
                        checkpoint_uri=str(local),
                        resume_from=None
                        if r.index == 0
                        else str(local / f"rung-{r.index - 1}.ckpt"),
                    )
                )
            pending = set(handles.values())
            while pending:
                on_wait(r.index)
                for handle in backend.wait(sorted(pending), timeout_s=2.0):
                    pending.discard(handle)
            states[r.index] = {n: backend.poll(h).state for n, h in handles.items()}
            for handle in handles.values():
                backend.stop(handle)  # idempotent on finished launches
            if r.index + 1 < len(plan.rungs):
                scores = {
                    t.number: t.intermediate_values.get(r.resource, float("-inf"))
                    for t in study.get_trials(deepcopy=False)
                    if t.number in alive
                }
                keep = plan.rungs[r.index + 1].n_trials
                alive = sorted(alive, key=lambda n: -scores[n])[:keep]
    finally:
        backend.release()
    return states


def test_three_rungs_launch_resize_and_tear_down(fake: RecordingSky, tmp_path: Path) -> None:
    study = new_study(tmp_path)
    backend = make_backend(fake, tmp_path)
    states = drive(backend, PLAN, study, tmp_path)
    logs = "\n".join(p.read_text() for p in sorted((tmp_path / "node-logs").iterdir()))
    assert all(s is LaunchState.SUCCEEDED for r in states.values() for s in r.values()), logs

    launches = fake.ops("launch")
    execs = fake.ops("exec")
    downs = fake.ops("down")
    c0, c1 = sorted(call[1] for call in launches)  # launched in parallel threads
    # Rung 0: 4 one-GPU trials packed two per 2-GPU node → 2 single-node clusters, each
    # booted, then set up (the second launch on the same name), before any trial runs.
    assert [call[2:] for call in launches] == [(1, 2), (1, 2)]
    assert sorted(call[1] for call in execs[:4]) == [c0, c0, c1, c1]
    assert all(call[3:] == (1, 1) for call in execs[:4])
    first_exec = fake.calls.index(execs[0])
    assert sorted(c[1] for c in fake.calls[:first_exec] if c[0] == "setup") == [c0, c1]
    # Rung 1: 2 two-GPU trials reuse the two nodes: no launch, no teardown.
    assert sorted(call[1] for call in execs[4:6]) == [c0, c1]
    assert all(call[3:] == (1, 2) for call in execs[4:6])
    # Rung 2: one 4-GPU trial spans 2 nodes of 2 (fewest nodes): SkyPilot resizes one idle
    # cluster to 2 nodes (sky launch --resize; its node keeps running), the other goes down.
    assert fake.ops("resize") == [("resize", c0, 2, 2)]
    assert execs[6][1] == c0 and execs[6][3:] == (2, 2)
    order = [(c[0], c[1]) for c in fake.calls if c[0] in ("launch", "down", "resize", "setup")]
    assert sorted(order[:4]) == [("launch", c0), ("launch", c1), ("setup", c0), ("setup", c1)]
    assert order[4:] == [("down", c1), ("resize", c0), ("setup", c0), ("down", c0)]
    assert len(downs) == 2
    # Nothing left running, on the "cloud" or locally; autodown was armed on every cluster.
    assert fake.clusters == {} and fake.running_processes() == 0 and backend.clusters == {}
    assert set(fake.autodown.values()) == {(backend.autostop_minutes, True)}

    # The finalist trained 1 → 2 → 4 epochs on 1 → 2 → 4 workers, resuming from S3 each rung.
    finalist = max(study.trials, key=lambda t: len(t.intermediate_values))
    assert sorted(finalist.intermediate_values) == [1, 2, 4]
    store = open_store(f"s3://{BUCKET}/{tmp_path.name}/plan/trial-{finalist.number}")
    assert store.names() == ["rung-0.ckpt", "rung-1.ckpt", "rung-2.ckpt"]
    saved = json.loads(store.fetch("rung-2.ckpt", tmp_path / "final.json").read_text())
    assert saved["epochs"] == 4
    assert [h["world_size"] for h in saved["history"]] == [1, 2, 4]

    report = backend.cost_report()
    assert sorted(c.name for c in report) == [c0, c1]
    assert all("configured $1.5/GPU-hour" in c.price_source for c in report)
    assert backend.spent_dollars > 0
    resized = next(c for c in report if c.name == c0)
    assert (resized.nodes, resized.hourly_price) == (2, 2 * 2 * 1.5)  # billed per node

    # The bill beside SkyPilot's accounting (the fake's cost report: its price x the
    # node-seconds it recorded, as SkyPilot computes it): both figures, the larger counts.
    bill = backend.bill()
    assert bill.skypilot_dollars is not None and bill.skypilot_dollars > 0
    assert bill.dollars == max(bill.estimated_dollars, bill.skypilot_dollars)
    assert bill.idle_gpu_hours > 0  # nodes are billed from launch, before and between trials
    assert "SkyPilot cost report: $" in bill.summary()


def test_an_exception_in_the_driver_tears_everything_down(
    fake: RecordingSky, tmp_path: Path
) -> None:
    backend = make_backend(fake, tmp_path)

    def boom(rung: int) -> None:
        if fake.running_processes():
            raise RuntimeError("driver bug")

    with pytest.raises(RuntimeError, match="driver bug"):
        drive(
            backend,
            PLAN,
            new_study(tmp_path),
            tmp_path,
            extra_params=lambda n, r: {"sleep": 30},
            on_wait=boom,
        )
    assert len(fake.ops("launch")) == 2
    assert sorted(c[1] for c in fake.ops("down")) == sorted(c[1] for c in fake.ops("launch"))
    assert fake.clusters == {} and fake.running_processes() == 0 and backend.clusters == {}


def test_a_failing_trial_is_reported_and_its_gpus_are_freed(
    fake: RecordingSky, tmp_path: Path
) -> None:
    backend = make_backend(fake, tmp_path)
    plan = Plan(
        rungs=(rung(0, 2, 1, 1),),
        reduction_factor=2,
        deadline_s=60.0,
        budget_dollars=1.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )
    handles: dict[int, str] = {}
    start = backend.start

    def remember(spec: LaunchSpec) -> str:
        handles[spec.trial_number] = start(spec)
        return handles[spec.trial_number]

    backend.start = remember  # type: ignore[method-assign]
    states = drive(
        backend,
        plan,
        new_study(tmp_path),
        tmp_path,
        extra_params=lambda n, r: {"fail": n == 0},
    )
    assert states[0] == {0: LaunchState.FAILED, 1: LaunchState.SUCCEEDED}
    assert fake.clusters == {} and backend.clusters == {}
    # The failure names its cluster and job, shows the end of the job's log (node 0's:
    # torchrun reporting the script's exit code 3) and the command that shows all of it.
    (failed,) = [c for c in fake.ops("exec") if c[2].startswith("seer-trial-0-")]
    cluster = failed[1]
    message = backend.poll(handles[0]).message
    assert message.startswith(f"trial 0 rung 0: job 1 on cluster {cluster} FAILED; its log ends")
    assert "exitcode" in message.lower() or "exit code" in message.lower(), message
    assert message.endswith(f"see the whole log: sky logs {cluster} 1")


@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_tears_everything_down_and_the_study_resumes(
    fake: RecordingSky, tmp_path: Path
) -> None:
    study = new_study(tmp_path)
    backend = make_backend(fake, tmp_path)

    def press_ctrl_c_during_rung_1() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if len(fake.ops("exec")) >= 5 and fake.running_processes():
                os.kill(os.getpid(), signal.SIGINT)  # what a terminal sends on Ctrl-C
                return
            time.sleep(0.1)

    presser = threading.Thread(target=press_ctrl_c_during_rung_1, daemon=True)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        drive(
            backend,
            PLAN,
            study,
            tmp_path,
            extra_params=lambda n, r: {"sleep": 60} if r == 1 else {},
        )
    presser.join(timeout=5)
    assert fake.clusters == {} and fake.running_processes() == 0 and backend.clusters == {}
    assert {c[1] for c in fake.ops("down")} == set(fake.launched)

    # Resumable: rung 0's results are in the study and its checkpoints in S3, so a new
    # backend continues with rung 1 from them.
    finished = [t for t in study.trials if 1 in t.intermediate_values]
    assert len(finished) == 4
    for t in finished:
        store = open_store(f"s3://{BUCKET}/{tmp_path.name}/plan/trial-{t.number}")
        assert "rung-0.ckpt" in store.names()
    best = sorted(finished, key=lambda t: -t.intermediate_values[1])[:2]
    resumed = Plan(
        rungs=PLAN.rungs[:2],
        reduction_factor=2,
        deadline_s=60.0,
        budget_dollars=1.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )
    states = drive(
        make_backend(fake, tmp_path), resumed, study, tmp_path, first_rung=1, trials=best
    )
    assert set(states[1].values()) == {LaunchState.SUCCEEDED}
    assert fake.clusters == {}


@pytest.mark.parametrize("retries", [1, 0])
def test_a_preempted_cluster_is_relaunched_from_the_checkpoint_or_reported(
    fake: RecordingSky, tmp_path: Path, retries: int
) -> None:
    backend = make_backend(fake, tmp_path)
    backend.preemption_retries = retries
    plan = Plan(
        rungs=(rung(0, 1, 1, 2),),
        reduction_factor=2,
        deadline_s=60.0,
        budget_dollars=1.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )

    def preempt_first_cluster() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if fake.running_processes():
                fake.preempt(fake.launched[0])
                return
            time.sleep(0.05)

    preempter = threading.Thread(target=preempt_first_cluster, daemon=True)
    preempter.start()
    states = drive(
        backend, plan, new_study(tmp_path), tmp_path, extra_params=lambda n, r: {"sleep": 3}
    )
    preempter.join(timeout=5)
    if retries:
        assert states[0] == {0: LaunchState.SUCCEEDED}
        assert len(fake.ops("launch")) == 2  # a fresh cluster for the relaunch
    else:
        assert states[0] == {0: LaunchState.FAILED}
        assert len(fake.ops("launch")) == 1
    assert fake.clusters == {} and backend.clusters == {}


def test_a_cluster_that_cannot_launch_fails_its_trials_and_leaks_nothing(
    fake: RecordingSky, tmp_path: Path
) -> None:
    fake.fail_launches = {0}
    backend = make_backend(fake, tmp_path)
    plan = Plan(
        rungs=(rung(0, 2, 1, 1),),
        reduction_factor=2,
        deadline_s=60.0,
        budget_dollars=1.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )
    states = drive(backend, plan, new_study(tmp_path), tmp_path)
    assert states[0] == {0: LaunchState.FAILED, 1: LaunchState.FAILED}
    assert fake.ops("exec") == []
    (record,) = backend._retired  # the message every trial on it got
    assert record.launch_error is not None
    assert record.launch_error.startswith(f"launch of cluster {record.name} (1 node(s) x 2 GPUs)")
    assert "ResourcesUnavailableError: no capacity (fake)" in record.launch_error
    assert record.launch_error.endswith(f"sky logs --provision {record.name}")
    assert [c[1] for c in fake.ops("down")] == [c[1] for c in fake.ops("launch")]
    assert backend.clusters == {} and backend.spent_dollars == 0.0


def test_the_gpu_quota_turns_a_rung_into_waves(fake: RecordingSky, tmp_path: Path) -> None:
    backend = make_backend(fake, tmp_path)
    backend.max_gpus = 2  # one 2-GPU node at a time
    plan = Plan(
        rungs=(rung(0, 4, 1, 1),),
        reduction_factor=2,
        deadline_s=60.0,
        budget_dollars=1.0,
        price_per_gpu_second=0.001,
        min_marginal_speedup=0.2,
    )
    states = drive(backend, plan, new_study(tmp_path), tmp_path)
    assert set(states[0].values()) == {LaunchState.SUCCEEDED}
    assert fake.peak_gpus == 2
    assert len(fake.ops("exec")) == 4
    assert fake.clusters == {}
