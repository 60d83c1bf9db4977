"""A fake at the SkyPilot SDK boundary (no cloud is reachable here) and shared test helpers.

``RecordingSky`` stands in for the ``sky`` client module's cluster calls only (``launch``,
``exec``, ``job_status``, ``cancel``, ``down``, ``status``, ``get``). It records every call,
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
from typing import Any

import optuna_seer
from optuna_seer._ports import free_port

REPO_ROOT = Path(optuna_seer.__file__).resolve().parent.parent


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

    # -- request/response, like the real client's request ids
    def _request(self, result: Any) -> str:
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
        **kwargs: Any,
    ) -> str:
        assert isinstance(task, self._sky.Task), task
        assert not task.run, "the provisioning task must not run anything"
        resources = list(task.resources)
        per_node = {int(next(iter(r.accelerators.values()))) for r in resources}
        assert len(per_node) == 1, resources
        gpus = per_node.pop()
        self.calls.append(("launch", cluster_name, task.num_nodes, gpus))
        if cluster_name in self.clusters:
            raise AssertionError(f"{cluster_name} launched twice: SkyPilot cannot resize it")
        if len(self.ops("launch")) - 1 in self.fail_launches:
            return self._request(
                self._sky.exceptions.ResourcesUnavailableError("no capacity (fake)")
            )
        self.clusters[cluster_name] = FakeCluster(
            cluster_name,
            task.num_nodes,
            gpus,
            [gpus] * task.num_nodes,
            idle_minutes_to_autostop,
            down,
        )
        self.launched.append(cluster_name)
        self.peak_gpus = max(
            self.peak_gpus, sum(c.nodes * c.gpus_per_node for c in self.clusters.values())
        )
        self.autodown[cluster_name] = (idle_minutes_to_autostop, down)
        return self._request((None, None))

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
        for job in cluster.jobs.values():
            for process in job.processes:
                kill_group(process)
        return self._request(None)

    def status(self, cluster_names: Sequence[str] | None = None, **kwargs: Any) -> str:
        names = self.clusters if cluster_names is None else cluster_names
        up = self._sky.ClusterStatus.UP
        return self._request([{"name": n, "status": up} for n in names if n in self.clusters])

    def preempt(self, cluster_name: str) -> None:
        """The cloud takes the cluster's instances back (no ``down`` call is recorded)."""
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
