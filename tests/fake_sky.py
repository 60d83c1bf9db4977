"""A fake at the SkyPilot SDK boundary (no cloud is reachable here) and shared test helpers.

``RecordingSky`` stands in for the ``sky`` client module's cluster calls only (``launch``
with ``resize``, ``exec``, ``job_status``, ``cancel``, ``down``, ``status``, ``tail_logs``,
``cost_report``, ``get``). It records every call,
checks that what it is given is a real ``sky.Task`` and that each job fits its cluster the
way SkyPilot's job queue would, and runs each job for real: one
``python -m optuna_seer.worker.node_entrypoint`` process per node with the ``SKYPILOT_*`` variables
a SkyPilot node has (all nodes on 127.0.0.1), so torchrun, the training script, S3 and the
study are all real. Job states are the real ``sky.JobStatus`` values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
import contextlib
from dataclasses import dataclass, field
import itertools
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import optuna_seer
from optuna_seer._ports import free_port

REPO_ROOT = Path(optuna_seer.__file__).resolve().parent.parent
# Tests run offline (tests/conftest.py imports this module): no price lookup lets SkyPilot
# fetch a catalog, in this process or in the CLI processes tests start. A test of the fetch
# itself sets it back.
os.environ.setdefault("SEER_PRICE_FETCH", "0")


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill a process started with ``start_new_session=True`` and all its children."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def node_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a local "node": the test's, plus the repo on PYTHONPATH."""
    env = dict(os.environ)
    env.update(base)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env["OMP_NUM_THREADS"] = "1"
    return env


def node_variables(task: Any) -> dict[str, str]:
    """What a SkyPilot job's environment gets from ``task``: its envs and its secrets
    (in plain text; SkyPilot's backend builds the job's variables with the same call)."""
    from sky.task import get_plaintext_envs_and_secrets

    return dict(get_plaintext_envs_and_secrets(task.envs_and_secrets))


@dataclass
class FakeCluster:
    name: str
    nodes: int
    gpus_per_node: int
    free: list[int]
    autostop: int | None
    down_when_idle: bool
    jobs: dict[int, FakeJob] = field(default_factory=dict)
    setups: int = 0
    mounts: dict[str, str] = field(default_factory=dict)
    setup_script: str = ""


@dataclass
class FakeJob:
    job_id: int
    name: str
    nodes: list[int]
    gpus_per_node: int
    processes: list[subprocess.Popen[bytes]]
    cancelled: bool = False
    released: bool = False


class RecordingSky:
    """Fake SkyPilot client: records calls, runs jobs as local node processes."""

    def __init__(self, log_dir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        import sky

        self._sky = sky
        self.log_dir = log_dir
        self.extra_env = dict(extra_env or {})
        self.calls: list[tuple[Any, ...]] = []
        self.clusters: dict[str, FakeCluster] = {}
        self.launched: list[str] = []
        self.autodown: dict[str, tuple[int | None, bool]] = {}
        self._results: dict[str, Any] = {}
        self._ids = itertools.count()
        self.fail_launches: set[int] = set()  # 0-based launch numbers that find no capacity
        self.peak_gpus = 0
        self.launch_delay_s = 0.0  # seconds each launch call takes (boot and setup alike)
        self.gpu_hour_price = 1.5  # what the fake cost report charges per GPU-hour
        self.cost_report_error: BaseException | None = None
        # name -> [(since, nodes)], and when it went down: the fake cost report's usage.
        self.usage: dict[str, list[tuple[float, int]]] = {}
        self.downed_at: dict[str, float] = {}
        self.gpus_of: dict[str, int] = {}
        self._lock = threading.RLock()  # the backend brings clusters up from threads

    # -- request/response, like the real client's request ids
    def _request(self, result: Any) -> str:
        with self._lock:
            request_id = f"request-{next(self._ids)}"
            self._results[request_id] = result
        return request_id

    def get(self, request_id: str) -> Any:
        result = self._results.pop(request_id)
        if isinstance(result, BaseException):
            raise result
        return result

    # -- cluster calls
    def launch(
        self,
        task: Any,
        cluster_name: str,
        idle_minutes_to_autostop: int | None = None,
        down: bool = False,
        resize: bool = False,
        **kwargs: Any,
    ) -> str:
        assert isinstance(task, self._sky.Task), task
        assert not task.run, "the provisioning task must not run anything"
        resources = list(task.resources)
        per_node = {int(next(iter(r.accelerators.values()))) for r in resources}
        assert len(per_node) == 1, resources
        gpus = per_node.pop()
        time.sleep(self.launch_delay_s)
        with self._lock:
            return self._launch(task, cluster_name, gpus, idle_minutes_to_autostop, down, resize)

    def _launch(
        self, task: Any, name: str, gpus: int, autostop: int | None, down: bool, resize: bool
    ) -> str:
        existing = self.clusters.get(name)
        if existing is not None:
            # SkyPilot on a cluster that is up: the same shape provisions nothing and runs
            # the task's setup (after syncing workdir and mounts); another node count needs
            # resize=True (scale-down only with no job running); anything else is refused.
            if existing.gpus_per_node != gpus:
                raise AssertionError(f"{name} relaunched with {gpus} GPUs per node")
            if existing.nodes != task.num_nodes:
                assert resize, f"{name}: {existing.nodes} -> {task.num_nodes} nodes needs resize"
                running = [j for j in existing.jobs.values() if self._state(j).name == "RUNNING"]
                assert task.num_nodes > existing.nodes or not running, "scale-down under jobs"
                self.calls.append(("resize", name, task.num_nodes, gpus))
                existing.free = [gpus] * task.num_nodes
                existing.nodes = task.num_nodes
                self.usage[name].append((time.time(), task.num_nodes))
                self._peak()
                return self._request((None, None))
            self.calls.append(("setup", name))
            if task.setup:
                existing.setups += 1
                existing.setup_script = task.setup
            existing.mounts = {str(k): str(v) for k, v in (task.file_mounts or {}).items()}
            return self._request((None, None))
        assert not resize, f"resize=True for {name}, which is not up"
        self.calls.append(("launch", name, task.num_nodes, gpus))
        if len(self.ops("launch")) - 1 in self.fail_launches:
            return self._request(
                self._sky.exceptions.ResourcesUnavailableError("no capacity (fake)")
            )
        self.clusters[name] = FakeCluster(
            name, task.num_nodes, gpus, [gpus] * task.num_nodes, autostop, down
        )
        self.launched.append(name)
        self.usage[name] = [(time.time(), task.num_nodes)]
        self.gpus_of[name] = gpus
        self._peak()
        self.autodown[name] = (autostop, down)
        return self._request((None, None))

    def _peak(self) -> None:
        self.peak_gpus = max(
            self.peak_gpus, sum(c.nodes * c.gpus_per_node for c in self.clusters.values())
        )

    def exec(self, task: Any, cluster_name: str, **kwargs: Any) -> str:
        assert isinstance(task, self._sky.Task), task
        cluster = self.clusters[cluster_name]
        (resources,) = list(task.resources)
        gpus = int(next(iter(resources.accelerators.values())))
        nodes = [i for i, free in enumerate(cluster.free) if free >= gpus][: task.num_nodes]
        if len(nodes) < task.num_nodes:
            raise AssertionError(
                f"{task.name} needs {task.num_nodes}×{gpus} GPUs; {cluster_name} has "
                f"{cluster.free} free: the placement overcommitted the cluster"
            )
        job_id = len(cluster.jobs) + 1
        self.calls.append(("exec", cluster_name, task.name, task.num_nodes, gpus))
        processes = []
        port = str(free_port())  # all nodes of a job dial one master; jobs never share one
        for rank, node in enumerate(nodes):
            cluster.free[node] -= gpus
            env = node_env({**node_variables(task), **self.extra_env})
            env.update(
                {
                    "SKYPILOT_NODE_RANK": str(rank),
                    "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * task.num_nodes),
                    "SKYPILOT_NUM_NODES": str(task.num_nodes),
                    "SKYPILOT_NUM_GPUS_PER_NODE": str(gpus),
                    "SKYPILOT_TASK_ID": f"{cluster_name}-{job_id}",
                }
            )
            env["SEER_MASTER_PORT"] = port
            log = open(self.log_dir / f"{cluster_name}-job{job_id}-node{rank}.log", "wb")  # noqa: SIM115
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "optuna_seer.worker.node_entrypoint"],
                    cwd=task.workdir,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        cluster.jobs[job_id] = FakeJob(job_id, task.name, nodes, gpus, processes)
        return self._request((job_id, None))

    def _state(self, job: FakeJob) -> Any:
        status = self._sky.JobStatus
        if job.cancelled:
            return status.CANCELLED
        codes = [p.poll() for p in job.processes]
        if any(code is None for code in codes):
            return status.RUNNING
        return status.SUCCEEDED if all(code == 0 for code in codes) else status.FAILED

    def _release_if_done(self, cluster: FakeCluster, job: FakeJob) -> None:
        if not job.released and self._state(job) is not self._sky.JobStatus.RUNNING:
            job.released = True
            for node in job.nodes:
                cluster.free[node] += job.gpus_per_node

    def job_status(self, cluster_name: str, job_ids: Sequence[int] | None = None) -> str:
        cluster = self.clusters.get(cluster_name)
        if cluster is None:
            return self._request(self._sky.exceptions.ClusterDoesNotExist(cluster_name))
        result = {}
        for job_id in job_ids or []:
            job = cluster.jobs.get(job_id)
            if job is not None:
                self._release_if_done(cluster, job)
            result[job_id] = None if job is None else self._state(job)
        return self._request(result)

    def cancel(self, cluster_name: str, job_ids: Sequence[int] | None = None, **kw: Any) -> str:
        self.calls.append(("cancel", cluster_name, tuple(job_ids or ())))
        cluster = self.clusters.get(cluster_name)
        if cluster is None:
            return self._request(self._sky.exceptions.ClusterDoesNotExist(cluster_name))
        for job_id in job_ids or []:
            job = cluster.jobs[job_id]
            if self._state(job) is self._sky.JobStatus.RUNNING:
                for process in job.processes:
                    kill_group(process)
                job.cancelled = True
            self._release_if_done(cluster, job)
        return self._request(None)

    def down(self, cluster_name: str, **kwargs: Any) -> str:
        self.calls.append(("down", cluster_name))
        cluster = self.clusters.pop(cluster_name, None)
        if cluster is None:
            return self._request(self._sky.exceptions.ClusterDoesNotExist(cluster_name))
        self.downed_at[cluster_name] = time.time()
        for job in cluster.jobs.values():
            for process in job.processes:
                kill_group(process)
        return self._request(None)

    def status(self, cluster_names: Sequence[str] | None = None, **kwargs: Any) -> str:
        names = self.clusters if cluster_names is None else cluster_names
        up = self._sky.ClusterStatus.UP
        return self._request([{"name": n, "status": up} for n in names if n in self.clusters])

    def tail_logs(
        self,
        cluster_name: str,
        job_id: int | None,
        follow: bool,
        tail: int = 0,
        output_stream: Any = None,
        **kwargs: Any,
    ) -> int:
        """The last ``tail`` lines of the job's node-0 log, written to ``output_stream``
        (``sky.tail_logs`` answers directly, not with a request id)."""
        assert not follow, "the backend must not follow logs (it would block)"
        cluster = self.clusters.get(cluster_name)
        if cluster is None:
            raise self._sky.exceptions.ClusterDoesNotExist(cluster_name)
        log = self.log_dir / f"{cluster_name}-job{job_id}-node0.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        output_stream.write("\n".join(lines[-tail:] if tail > 0 else lines) + "\n")
        job = cluster.jobs.get(int(job_id or 0))
        return 0 if job is not None and self._state(job).name == "SUCCEEDED" else 100

    def cost_report(self, days: int | None = None) -> str:
        """SkyPilot's cost report of every cluster launched, as SkyPilot computes it: the
        instances' price x the node-seconds of their usage intervals (here
        ``gpu_hour_price`` x GPUs per node for a node's hourly price)."""
        if self.cost_report_error is not None:
            return self._request(self.cost_report_error)
        now = time.time()
        records = []
        for name, history in self.usage.items():
            end = self.downed_at.get(name, now)
            node_seconds = sum(
                nodes * ((history[i + 1][0] if i + 1 < len(history) else end) - since)
                for i, (since, nodes) in enumerate(history)
            )
            node_hour = self.gpu_hour_price * self.gpus_of[name]
            records.append(
                {
                    "name": name,
                    "launched_at": int(history[0][0]),
                    "duration": int(end - history[0][0]),
                    "num_nodes": history[-1][1],
                    "total_cost": node_hour * node_seconds / 3600.0,
                }
            )
        return self._request(records)

    def preempt(self, cluster_name: str) -> None:
        """The cloud takes the cluster's instances back (no ``down`` call is recorded)."""
        self.downed_at[cluster_name] = time.time()
        cluster = self.clusters.pop(cluster_name)
        for job in cluster.jobs.values():
            for process in job.processes:
                kill_group(process)

    # -- what tests assert on
    def running_processes(self) -> int:
        return sum(
            1
            for cluster in self.clusters.values()
            for job in cluster.jobs.values()
            for p in job.processes
            if p.poll() is None
        )

    def kill_everything(self) -> None:
        for cluster in self.clusters.values():
            for job in cluster.jobs.values():
                for process in job.processes:
                    kill_group(process)

    def ops(self, kind: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == kind]


AWS_CATALOG = """\
InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,SpotPrice,Region,AvailabilityZone
p4d.24xlarge,A100,8,96,1152,,32.7726,12.5,us-east-1,use1-az1
g5.xlarge,A10G,1,4,16,,1.006,0.4,us-east-1,use1-az1
"""


@contextlib.contextmanager
def sky_home(home: Path) -> Iterator[Path]:
    """Point ``HOME`` (where ``sky`` keeps ``~/.sky``) at ``home``, with a small AWS catalog.

    The CSV is hand-written (SkyPilot ships no catalogs and fetches them from the internet,
    which is unreachable here); without a ``.meta`` digest beside it SkyPilot treats it as
    user-provided and never re-downloads it. Enter it before ``import sky``.
    """
    catalogs = [home / ".sky" / "catalogs" / "v8" / "aws"]
    loaded = sys.modules.get("sky.catalog.common")
    if loaded is not None:  # sky fixed its catalog directory from HOME when first imported
        catalogs.append(Path(loaded._ABSOLUTE_VERSIONED_CATALOG_DIR) / "aws")
    for catalog in catalogs:
        catalog.mkdir(parents=True, exist_ok=True)
        (catalog / "vms.csv").write_text(AWS_CATALOG)
    saved = {name: os.environ.get(name) for name in ("HOME", "SKYPILOT_DISABLE_USAGE_COLLECTION")}
    os.environ["HOME"] = str(home)
    os.environ["SKYPILOT_DISABLE_USAGE_COLLECTION"] = "1"
    try:
        yield home
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def recording_sky(
    directory: Path, s3_env: Mapping[str, str], monkeypatch: Any, **extra_env: str
) -> Iterator[RecordingSky]:
    """A :class:`RecordingSky` whose driver (this process) and nodes reach the same local S3.

    ``s3_env`` is the moto server's environment (``tests.local_s3.local_s3``); node logs go
    to ``directory/node-logs``; every node process is killed on exit.
    """
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    logs = directory / "node-logs"
    logs.mkdir()
    sdk = RecordingSky(logs, extra_env={**s3_env, **extra_env})
    try:
        yield sdk
    finally:
        sdk.kill_everything()
