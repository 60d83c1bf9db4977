"""The elastic executor on SkyPilot: ``ElasticTuner`` with ``SkyPilotBackend`` instead of
``LocalBackend``, running a 3-rung SEER plan made by ``plan_seer``.

Fake at the SDK boundary only (no cloud is reachable here): ``RecordingSky`` replaces the
``sky`` client's cluster calls (launch with resize/exec/job_status/cancel/down/status/
tail_logs/cost_report/get). Everything
else is real: the plan, ``SeerSampler``/``SeerPruner``, ``ElasticTuner``, the SkyPilot
Task/Resources objects, one ``python -m optuna_seer.worker.node_entrypoint`` process per node with
SkyPilot's variables, torchrun, plain-PyTorch DDP over gloo (``examples/torch_digits.py``),
checkpoints in a moto S3 server on 127.0.0.1, and the study in SQLite served to the nodes
through Optuna's gRPC storage proxy, which the backend starts itself.
"""

from __future__ import annotations

from collections.abc import Iterator
import math
from pathlib import Path
import signal
import threading
import time
from types import FrameType

import optuna
from optuna.trial import TrialState
import pytest
import torch

from optuna_seer._ports import free_port
from optuna_seer.backends.skypilot.backend import SkyPilotBackend
from optuna_seer.execution.report import format_report
from optuna_seer.execution.tuner import ElasticTuner
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.workload import Workload
from optuna_seer.worker.checkpoints import open_store
from optuna_seer.worker.context import checkpoint_name
from tests.fake_sky import REPO_ROOT, RecordingSky, recording_sky
from tests.local_s3 import local_s3

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRAIN = f"{REPO_ROOT / 'examples' / 'torch_digits.py'}:train"
BUCKET = "seer-executor"
# A cloud-sized workload (10-minute epochs on 2-GPU nodes) under a 20-minute deadline: the
# planner must widen the survivors, 4 × 1 GPU → 2 × 2 → 1 × 4. The digits MLP trains in
# well under a second per epoch here, so the run never comes near the deadline or budget.
WORKLOAD = Workload(epoch_seconds=600, scaling="linear", max_epochs=4, gpus_per_node=2)
BUDGET = Budget(deadline="20m", dollars=5.0, price_per_gpu_hour=3.0)
LIMITS = ClusterLimits(max_gpus=4)


@pytest.fixture(scope="module", autouse=True)
def home(sky_home_dir: Path) -> Path:
    """Every test here runs with ``HOME`` in the module's SkyPilot home (tests/conftest.py)."""
    return sky_home_dir


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


def tuner_on_sky(fake: RecordingSky, tmp_path: Path) -> tuple[ElasticTuner, SkyPilotBackend]:
    pruner = SeerPruner(BUDGET, WORKLOAD, reduction_factor=2, limits=LIMITS, max_configs=4)
    shape = [(r.n_trials, r.resource, r.gpus_per_trial) for r in pruner.plan.rungs]
    assert shape == [(4, 1, 1), (2, 2, 2), (1, 4, 4)], pruner.plan
    study = optuna.create_study(
        study_name="sky-seer",
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=0)),
        pruner=pruner,
    )
    backend = SkyPilotBackend(
        resources="A100:2",
        clouds=["aws", "gcp"],
        use_spot=True,
        proxy_host="127.0.0.1",  # the gRPC proxy the nodes dial
        proxy_port=free_port(),
        max_gpus=LIMITS.max_gpus or 0,
        price_per_gpu_hour=1.5,
        workdir=REPO_ROOT,  # TRAIN lies under it, so the nodes have it
        poll_interval_s=0.2,
        sdk=fake,
    )
    tuner = ElasticTuner(
        study,
        backend=backend,
        train=TRAIN,
        checkpoints=f"s3://{BUCKET}/{tmp_path.name}",
        workload=WORKLOAD,
        drift_tolerance=math.inf,  # keep the plan's shape: this test is about the backend
        progress=False,
    )
    return tuner, backend


def node_logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
        for p in sorted((tmp_path / "node-logs").iterdir())
    )


def nothing_left(fake: RecordingSky, backend: SkyPilotBackend) -> None:
    """No cluster up (``sky status`` through the SDK is empty), no node process, no proxy."""
    assert fake.get(fake.status()) == []
    assert fake.clusters == {} and backend.clusters == {}
    assert fake.running_processes() == 0
    assert {call[1] for call in fake.ops("down")} == set(fake.launched)


def test_a_three_rung_seer_plan_runs_on_skypilot_clusters(
    fake: RecordingSky, tmp_path: Path
) -> None:
    fake.launch_delay_s = 0.05  # each sky launch call: boot and setup take that long at least
    tuner, backend = tuner_on_sky(fake, tmp_path)
    result = tuner.run()
    study = optuna.load_study(study_name="sky-seer", storage=f"sqlite:///{tmp_path / 'study.db'}")
    trials = {t.number: t for t in study.trials}
    assert [r.state for r in result.launches] == ["succeeded"] * 7, node_logs(tmp_path)

    # Trials end PRUNED or COMPLETE as their reported values say: each rung keeps its best.
    assert sorted(result.trial_states.values()) == ["COMPLETE", "PRUNED", "PRUNED", "PRUNED"]
    for record in result.rungs[:-1]:
        epoch = record.planned.resource
        kept = [trials[n].intermediate_values[epoch] for n in record.promoted]
        dropped = [trials[n].intermediate_values[epoch] for n in record.eliminated]
        assert len(kept) == result.plan.rungs[record.planned.index + 1].n_trials
        assert min(kept) >= max(dropped)
        for number in record.eliminated:
            assert trials[number].state is TrialState.PRUNED
            assert trials[number].last_step == epoch
    (finalist,) = result.rungs[-1].trials
    best = trials[finalist]
    assert best.state is TrialState.COMPLETE
    assert sorted(best.intermediate_values) == [1, 2, 3, 4]
    assert best.value == best.intermediate_values[4] == result.best_value
    assert [r.workers for r in result.launches if r.trial_number == finalist] == [1, 2, 4]

    # Clusters: rung 0 packs 4 one-GPU trials two per 2-GPU node (2 single-node clusters);
    # rung 1 reuses both nodes for its 2 two-GPU trials; rung 2's 4-GPU trial needs 2 nodes:
    # one idle cluster is resized to 2 nodes (sky launch --resize), the other goes down.
    launches, execs = fake.ops("launch"), fake.ops("exec")
    assert [call[2:] for call in launches] == [(1, 2), (1, 2)]
    c0, c1 = sorted(call[1] for call in launches)
    assert sorted(call[1] for call in execs[:4]) == [c0, c0, c1, c1]
    assert all(call[3:] == (1, 1) for call in execs[:4])
    assert sorted(call[1] for call in execs[4:6]) == [c0, c1]
    assert all(call[3:] == (1, 2) for call in execs[4:6])
    assert fake.ops("resize") == [("resize", c0, 2, 2)]
    assert [call[1] for call in execs[6:]] == [c0] and execs[6][3:] == (2, 2)
    order = [(c[0], c[1]) for c in fake.calls if c[0] in ("launch", "down", "resize")]
    assert sorted(order[:2]) == [("launch", c0), ("launch", c1)]
    assert order[2:] == [("down", c1), ("resize", c0), ("down", c0)]
    # Fewest nodes: never more GPUs up than a rung needs (4), every node full.
    assert fake.peak_gpus == 4
    assert set(fake.autodown.values()) == {(backend.autostop_minutes, True)}
    nothing_left(fake, backend)

    # The finalist resumed from S3 each rung: 1 → 2 → 4 epochs on 1 → 2 → 4 workers.
    store = open_store(f"s3://{BUCKET}/{tmp_path.name}/sky-seer/trial-{finalist}")
    assert store.names() == [checkpoint_name(r) for r in range(3)]
    state = torch.load(store.fetch(checkpoint_name(2), tmp_path / "final.pt"), map_location="cpu")
    assert state["epoch"] == 4
    assert len(backend.cost_report()) == 2 and backend.spent_dollars > 0

    # Every launch record the executor stored says where its time went before its job ran:
    # rung 0 and rung 2 waited for a cluster to boot and set up (new, then resized), rung 1
    # ran on clusters already up.
    stored = [r for t in study.trials for r in t.system_attrs["seer:launches"]]
    assert len(stored) == 7
    for record in stored:
        assert record["queue_s"] >= 0.0, record
        if record["rung"] == 1:
            assert (record["boot_s"], record["setup_s"]) == (0.0, 0.0), record
        else:
            assert record["boot_s"] >= 0.05 and record["setup_s"] >= 0.05, record

    # The bill: whole nodes from launch to down, beside SkyPilot's cost report (the fake's:
    # its price x the node-seconds it recorded); the report shows both.
    bill = backend.bill()
    assert bill.skypilot_dollars is not None and bill.skypilot_dollars > 0
    assert bill.dollars == max(bill.estimated_dollars, bill.skypilot_dollars)
    assert bill.idle_gpu_hours > 0  # whole nodes from launch: boot, setup, idle GPUs
    report = format_report(result, bill=bill)
    assert "SkyPilot cost report: $" in report
    assert f"bill ${bill.dollars:,.4f}" in report


def test_a_bill_above_the_ledger_stops_the_run_on_budget(
    fake: RecordingSky, tmp_path: Path
) -> None:
    # SkyPilot bills these clusters far above the plan's price (the fake's cost report at
    # $20,000 per GPU-hour): the guard counts the bill, not the ledger, and stops on budget.
    fake.gpu_hour_price = 20_000.0
    tuner, backend = tuner_on_sky(fake, tmp_path)
    backend._sky_costs.refresh_s = 0.0  # ask SkyPilot's cost report at every guard step
    result = tuner.run()
    assert result.spent_dollars < BUDGET.dollars  # the ledger alone would have gone on
    assert backend.bill().dollars > BUDGET.dollars
    assert len(result.launches) < 7, result.notes
    assert any("budget" in note for note in result.notes), result.notes
    nothing_left(fake, backend)


class DriverBug(BaseException):
    """A bug in the driver, raised from a signal handler wherever the main thread is: a
    BaseException, so that no handler of expected errors (a SkyPilot call's) swallows it."""


def _raise_driver_bug(signum: int, frame: FrameType | None) -> None:
    raise DriverBug("driver bug")


@pytest.mark.parametrize(
    ("signum", "error", "execs_before"),
    [
        (signal.SIGINT, KeyboardInterrupt, 4),  # Ctrl-C while rung 0's trials run
        (signal.SIGUSR1, DriverBug, 5),  # an exception in the driver during rung 1
    ],
    ids=["ctrl-c-in-rung-0", "exception-in-rung-1"],
)
@pytest.mark.usefixtures("ctrl_c_raises")
def test_ctrl_c_or_an_exception_mid_run_tears_every_cluster_down(
    fake: RecordingSky,
    tmp_path: Path,
    signum: int,
    error: type[BaseException],
    execs_before: int,
) -> None:
    tuner, backend = tuner_on_sky(fake, tmp_path)
    ended = threading.Event()

    def interrupt_while_trials_run() -> None:
        while not ended.is_set():  # however long SkyPilot takes to start (the test's timeout)
            if len(fake.ops("exec")) >= execs_before and fake.running_processes():
                signal.raise_signal(signum)  # delivered to the main thread, as Ctrl-C is
                return
            time.sleep(0.05)

    previous = signal.signal(signal.SIGUSR1, _raise_driver_bug)
    interrupter = threading.Thread(target=interrupt_while_trials_run, daemon=True)
    try:
        interrupter.start()
        with pytest.raises(error):
            tuner.run()
        interrupter.join(timeout=5)
    finally:
        ended.set()
        signal.signal(signal.SIGUSR1, previous)
    nothing_left(fake, backend)
    study = optuna.load_study(study_name="sky-seer", storage=f"sqlite:///{tmp_path / 'study.db'}")
    states = sorted(t.state.name for t in study.trials)
    if error is KeyboardInterrupt:  # a pause: the trials stay in play for a rerun
        assert states == ["RUNNING"] * 4
    else:  # rung 0 decided; its survivors (2, fewer if a slow start made the re-plan keep
        # fewer) were running and were failed, the others pruned
        assert len(states) == 4 and set(states) == {"FAIL", "PRUNED"}, states
        assert states.count("PRUNED") >= 2, states
