"""Run trials on SkyPilot clusters: a cluster manager plus the placement controller.

``SkyPilotBackend`` implements :class:`~optuna_seer.backends.base.Backend`, so the executor
that drives local processes drives clouds unchanged. How it maps the backend calls:

* ``start(spec)`` queues the launch. The queue is *placed* at the next ``poll``/``wait``: the
  executor starts a whole rung and then waits, so the placement controller
  (:func:`optuna_seer.planning.placement.place`) sees the rung's whole demand (``n`` trials × ``k``
  GPUs) and packs it onto the fewest nodes.
* **Resizing.** SkyPilot cannot grow a cluster, so a cluster is only reused when its shape
  fits: a single node with enough free GPUs for small trials, or an idle cluster with the
  same node count for a multi-node trial. Clusters that are idle at a placement and not
  reused are torn down (``sky down``); new shapes are launched (``sky launch`` of the trial
  template with its ``run`` removed, so the cluster is provisioned and set up once), and each
  trial is submitted to its cluster with ``sky exec`` (``num_nodes`` and GPUs per node of its
  slot; SkyPilot's job queue runs several small trials side by side on one node).
* Every cluster is launched with autodown (``idle_minutes_to_autostop`` + ``down=True``), so
  a driver that dies without cleaning up still stops paying after ``autostop_minutes``.
* ``release()`` tears down every cluster this backend launched (Ctrl-C, exceptions and the
  deadline all end there) and checks with ``sky status`` that none is left.
* Multi-cloud: ``clouds=[...]`` and ``use_spot`` become SkyPilot resource candidates
  (``any_of``: SkyPilot picks the cheapest and fails over; ``ordered``: in the listed order);
  spot comes before on-demand when ``on_demand_fallback`` is set.
* Costs: per-node hourly prices from SkyPilot's catalog (``sky.catalog``) when it has them,
  else ``price_per_gpu_hour``; :meth:`SkyPilotBackend.cost_report` says which was used.

Nodes see the study through ``storage`` (an RDB or ``grpc://`` URL), or, when the executor's
storage is a local SQLite file, through a gRPC proxy this backend starts on the driver
(:class:`optuna_seer.storage.proxy.StorageProxy`). Checkpoints live under ``checkpoints``
(``s3://bucket/prefix``). The study URL (it may hold an RDB password) and any variable named
like a credential reach the nodes as SkyPilot ``secrets`` (redacted in every task YAML
SkyPilot keeps or shows), not ``envs``: see :func:`is_secret_env`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import contextlib
import copy
from dataclasses import dataclass, field, replace
import importlib.resources
import itertools
import math
import os
from pathlib import Path
import secrets
import shlex
import time
from types import TracebackType
from typing import Any, Literal

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState, LaunchStatus
from optuna_seer.backends.launch_env import launch_env
from optuna_seer.planning.placement import (
    ClusterShape,
    OpenCluster,
    TrialSlot,
    place,
    split_across_nodes,
)
from optuna_seer.storage.proxy import StorageProxy
from optuna_seer.worker.context import ENV_RESUME_FROM, ENV_STORAGE, ENV_TRAIN_SCRIPT

# The SkyPilot YAMLs ship inside the package (installed users get them too).
TEMPLATES_DIR = Path(str(importlib.resources.files("optuna_seer").joinpath("templates")))
DEFAULT_TEMPLATE = TEMPLATES_DIR / "trial.yaml"
ENV_ADVERTISE_HOST = "SEER_ADVERTISE_HOST"
# Storage URLs a cloud node can open; anything else lives on the driver's disk.
REMOTE_STORAGE_SCHEMES = ("grpc://", "postgresql", "mysql", "oracle", "mssql")
# Node variables that hold credentials: passed as SkyPilot ``secrets``, not ``envs``. The
# study URL (an RDB password), and any variable whose name says it is one (a launch's extra
# env, e.g. AWS_SECRET_ACCESS_KEY or HF_TOKEN).
SECRET_ENVS = (ENV_STORAGE,)
SECRET_NAME_PARTS = ("SECRET", "PASSWORD", "TOKEN", "CREDENTIAL", "ACCESS_KEY", "API_KEY")
_RUNNING_JOB_STATES = {"INIT", "PENDING", "SETTING_UP", "RUNNING"}
_STOPPED_JOB_STATES = {"CANCELLED"}


@dataclass
class _Cluster:
    name: str
    shape: ClusterShape
    free_gpus: int
    launched_at: float
    hourly_price: float | None
    price_source: str
    downed_at: float | None = None
    launch_error: str | None = None
    trials: set[str] = field(default_factory=set)

    @property
    def idle(self) -> bool:
        return self.free_gpus == self.shape.gpus


@dataclass
class _Launch:
    spec: LaunchSpec
    started_at: float
    queued_at: float = 0.0
    slot: TrialSlot | None = None
    job_id: int | None = None
    preemptions: int = 0
    status: LaunchStatus | None = None  # set once final


@dataclass(frozen=True)
class ClusterCost:
    """One cluster's bill: how long it was up and what it cost."""

    name: str
    nodes: int
    gpus_per_node: int
    seconds: float
    hourly_price: float | None
    dollars: float | None
    price_source: str


class SkyPilotBackend(Backend):
    """Launch, reuse, resize and tear down SkyPilot clusters for the trials of each rung.

    Args:
        script: What the nodes run when a launch names no ``entrypoint`` (the executor always
            does: its ``train=``, which must then lie under ``workdir``): a training script
            relative to ``workdir`` (following the ``SEER_*`` contract of
            :mod:`optuna_seer.worker.context`), or any ``torchrun`` target such as
            ``"-m package.module arg"``. Give it only when driving the backend yourself.
        resources: The largest node: ``"A100:8"``, or a SkyPilot resources mapping with
            ``accelerators`` (e.g. ``{"accelerators": "A100:8", "disk_size": 256}``); do not
            put ``infra``/``use_spot``/``any_of``/``ordered`` in it (use the arguments).
        clouds: Infra strings SkyPilot may use (``"aws"``, ``"gcp"``, ``"aws/us-east-1"``);
            empty: any enabled cloud.
        use_spot: Prefer spot instances.
        on_demand_fallback: With ``use_spot``, fall back to on-demand instances.
        candidate_order: ``"cost"`` (``any_of``: cheapest first) or ``"listed"``
            (``ordered``: clouds in the order given, spot tier first).
        checkpoints: ``s3://bucket/prefix`` for trials whose ``checkpoint_uri`` is local.
        storage: Study URL the nodes use. ``None``: the executor's URL if a node can open it
            (RDB, ``grpc://``), else a gRPC proxy this backend serves on ``proxy_port``,
            advertised as ``proxy_host`` (default ``$SEER_ADVERTISE_HOST``).
        max_gpus: Most GPUs provisioned at once (your quota); ``slots`` reports it.
        node_sizes: Smaller GPU counts a node may have (default: only the full node).
        autostop_minutes: Idle minutes before SkyPilot tears a cluster down by itself.
        workdir: Directory synced to the nodes (default: the current directory).
        template: The trial YAML (default: the packaged ``optuna_seer/templates/trial.yaml``;
            copy it from :data:`TEMPLATES_DIR` to change ``setup`` or ``envs``).
        price_per_gpu_hour: Price used where SkyPilot's catalog has none.
        poll_interval_s: Seconds between job status queries in :meth:`wait`.
        batch_window_s: Launches started within this many seconds of each other are placed
            together (a rung's trials are started in a burst, then polled).
        preemption_retries: Times a trial whose cluster vanished (spot preemption) is
            relaunched from its resume checkpoint before it is reported ``FAILED``.
        cluster_prefix: Prefix of cluster names (a random suffix keeps runs apart).
        sdk: The SkyPilot client (default: the ``sky`` module); tests pass a fake.

    Example:
        >>> backend = SkyPilotBackend(  # doctest: +SKIP
        ...     resources="A100:8",
        ...     clouds=["aws", "gcp"],
        ...     use_spot=True,
        ...     checkpoints="s3://my-bucket/seer",
        ...     storage="postgresql://user:pass@db.example.com/optuna",
        ...     max_gpus=32,
        ... )
        >>> with backend:  # doctest: +SKIP
        ...     ...  # hand it to the executor; leaving the block tears every cluster down
    """

    def __init__(
        self,
        *,
        script: str | None = None,
        checkpoints: str | None = None,
        resources: str | Mapping[str, Any] = "A100:8",
        clouds: Sequence[str] = (),
        use_spot: bool = False,
        on_demand_fallback: bool = True,
        candidate_order: Literal["cost", "listed"] = "cost",
        storage: str | None = None,
        proxy_host: str | None = None,
        proxy_port: int = 13000,
        max_gpus: int = 64,
        node_sizes: Sequence[int] | None = None,
        autostop_minutes: int = 10,
        workdir: str | os.PathLike[str] | None = None,
        template: str | os.PathLike[str] | None = None,
        price_per_gpu_hour: float | None = None,
        poll_interval_s: float = 10.0,
        batch_window_s: float = 1.0,
        preemption_retries: int = 2,
        cluster_prefix: str = "seer",
        sdk: Any = None,
    ) -> None:
        import sky
        import yaml

        if script is not None and (not isinstance(script, str) or not script):
            raise ValueError(
                f"script={script!r} must name the training script to run, or be left out "
                "(the executor's train= is run)."
            )
        if checkpoints is not None and not checkpoints.startswith("s3://"):
            raise ValueError(
                f"checkpoints={checkpoints!r} must be an s3://bucket/prefix every node can reach."
            )
        if isinstance(clouds, str):
            raise TypeError(f"clouds={clouds!r} must be a list of infra strings, e.g. ['aws'].")
        if candidate_order not in ("cost", "listed"):
            raise ValueError(f"candidate_order={candidate_order!r} must be 'cost' or 'listed'.")
        for name, value in (("max_gpus", max_gpus), ("autostop_minutes", autostop_minutes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an int >= 1.")
        if isinstance(proxy_port, bool) or not isinstance(proxy_port, int):
            raise TypeError(f"proxy_port={proxy_port!r} must be an int.")
        if not 1 <= proxy_port <= 65535:
            raise ValueError(f"proxy_port={proxy_port} must be in 1..65535.")
        if price_per_gpu_hour is not None and not (
            math.isfinite(price_per_gpu_hour) and price_per_gpu_hour >= 0
        ):
            raise ValueError(f"price_per_gpu_hour={price_per_gpu_hour!r} must be >= 0.")
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s={poll_interval_s!r} must be > 0.")
        if not batch_window_s >= 0:
            raise ValueError(f"batch_window_s={batch_window_s!r} must be >= 0.")
        if isinstance(preemption_retries, bool) or preemption_retries < 0:
            raise ValueError(f"preemption_retries={preemption_retries!r} must be an int >= 0.")

        self._sky = sky
        self._sdk = sky if sdk is None else sdk
        base = {"accelerators": resources} if isinstance(resources, str) else dict(resources)
        for key in ("infra", "cloud", "use_spot", "any_of", "ordered"):
            if key in base:
                raise ValueError(
                    f"resources has {key!r}: pass clouds=[...] and use_spot=... instead, "
                    "the backend builds SkyPilot's candidates from them."
                )
        self.accelerator, self.gpus_per_node = _parse_accelerators(base.get("accelerators"))
        self._base_resources = base
        self.clouds = tuple(clouds)
        self.use_spot = use_spot
        self.on_demand_fallback = on_demand_fallback
        self.candidate_order = candidate_order
        sizes = set(node_sizes or ()) | {self.gpus_per_node}
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int):
                raise TypeError(f"node size {size!r} must be an int.")
            if not 1 <= size <= self.gpus_per_node:
                raise ValueError(
                    f"node size {size} must be in 1..{self.gpus_per_node} (GPUs of {resources!r})."
                )
        self.node_sizes = tuple(sorted(sizes))
        # Validate what SkyPilot will be given, now, with SkyPilot itself.
        self.node_resources(ClusterShape(1, self.gpus_per_node))
        if min(self.node_sizes) > max_gpus:
            raise ValueError(
                f"max_gpus={max_gpus} is smaller than the smallest node ({min(self.node_sizes)})."
            )

        template_path = Path(template) if template is not None else DEFAULT_TEMPLATE
        if not template_path.is_file():
            raise ValueError(
                f"trial template {template_path} not found: pass template= the path of a "
                f"SkyPilot task YAML (e.g. a copy of {DEFAULT_TEMPLATE})."
            )
        self._template = _load_template(template_path, yaml)
        self.checkpoints = checkpoints.rstrip("/") if checkpoints else None
        self.storage = storage
        self.proxy_host = proxy_host
        self.proxy_port = proxy_port
        self.max_gpus = max_gpus
        self.autostop_minutes = autostop_minutes
        self.workdir = str(Path(workdir) if workdir is not None else Path.cwd())
        self.script = script
        self.price_per_gpu_hour = price_per_gpu_hour
        self.poll_interval_s = poll_interval_s
        self.batch_window_s = batch_window_s
        self.preemption_retries = preemption_retries
        self.cluster_prefix = f"{cluster_prefix}-{secrets.token_hex(3)}"

        self._clusters: dict[str, _Cluster] = {}
        self._retired: list[_Cluster] = []
        self._launches: dict[str, _Launch] = {}
        self._pending: list[str] = []
        self._counter = itertools.count()
        self._prices: dict[int, tuple[float | None, str]] = {}
        self._proxy: StorageProxy | None = None
        self._node_storage: dict[str, str] = {}
        self.cluster_task(ClusterShape(1, self.gpus_per_node))  # SkyPilot validates the template

    # ----------------------------------------------------------------- SkyPilot objects
    def candidates(self) -> list[dict[str, Any]]:
        """Resource candidates (cloud × spot tier) as SkyPilot YAML fields."""
        tiers = [True, False] if self.use_spot and self.on_demand_fallback else [self.use_spot]
        clouds: list[str | None] = list(self.clouds) or [None]
        found: list[dict[str, Any]] = []
        for spot in tiers:
            for cloud in clouds:
                candidate: dict[str, Any] = {"use_spot": spot}
                if cloud is not None:
                    candidate["infra"] = cloud
                found.append(candidate)
        return found

    def node_resources_config(self, shape: ClusterShape) -> dict[str, Any]:
        """The ``resources:`` YAML of a cluster of ``shape`` (with its candidates)."""
        config = dict(self._base_resources)
        config["accelerators"] = f"{self.accelerator}:{shape.gpus_per_node}"
        candidates = self.candidates()
        if len(candidates) == 1:
            config.update(candidates[0])
        else:
            config["any_of" if self.candidate_order == "cost" else "ordered"] = candidates
        return config

    def node_resources(self, shape: ClusterShape) -> Any:
        """Real ``sky.Resources`` candidates: a set (one, or ``any_of``) or a list (``ordered``)."""
        return self._sky.Resources.from_yaml_config(self.node_resources_config(shape))

    def cluster_task(self, shape: ClusterShape) -> Any:
        """The task ``sky launch`` gets to provision and set up a cluster (no ``run``)."""
        config = copy.deepcopy(self._template)
        config.pop("run", None)
        config["name"] = "seer-provision"
        config["num_nodes"] = shape.nodes
        config["resources"] = self.node_resources_config(shape)
        config["workdir"] = self.workdir
        return self._sky.Task.from_yaml_config(config)

    def trial_task(self, spec: LaunchSpec, slot: TrialSlot) -> Any:
        """The task ``sky exec`` runs for one trial on its slot."""
        config = copy.deepcopy(self._template)
        config["name"] = f"seer-trial-{spec.trial_number}-rung-{spec.rung}"
        config["num_nodes"] = slot.nodes
        config["resources"] = {"accelerators": f"{self.accelerator}:{slot.gpus_per_node}"}
        config["workdir"] = self.workdir
        env = {**(config.get("envs") or {}), **self.node_env(spec)}
        # The study URL may hold an RDB password: it goes to the nodes as a SkyPilot secret
        # (set in their environment like an env var, but redacted in every YAML SkyPilot
        # keeps or shows: its cluster table, the dashboard, `sky status`), never in envs.
        secret_envs = {name: env.pop(name) for name in list(env) if is_secret_env(name)}
        config["envs"] = env
        config["secrets"] = {**_inline_secrets(config.get("secrets")), **secret_envs}
        return self._sky.Task.from_yaml_config(config)

    def node_env(self, spec: LaunchSpec) -> dict[str, str]:
        """The variables a trial's nodes get: the ``SEER_*`` contract plus the script."""
        remote = self._remote_spec(spec)
        env = launch_env(remote)
        env.setdefault(ENV_RESUME_FROM, "")
        env[ENV_TRAIN_SCRIPT] = self._train_script(spec)
        env.update({str(k): str(v) for k, v in spec.env.items()})
        return env

    def _train_script(self, spec: LaunchSpec) -> str:
        """``SEER_TRAIN_SCRIPT`` for ``spec``: its entrypoint as the nodes see it, or ``script``."""
        if spec.entrypoint and self.script is not None:
            raise ValueError(
                f"trial {spec.trial_number} names its program (entrypoint={spec.entrypoint!r}, "
                f"the executor's train=) and SkyPilotBackend has script={self.script!r}: leave "
                "script out, the nodes run the executor's train=."
            )
        if spec.entrypoint:
            return node_train_script(spec.entrypoint, self.workdir)
        if self.script is None:
            raise ValueError(
                f"trial {spec.trial_number} names no program (LaunchSpec.entrypoint is empty) "
                "and SkyPilotBackend has no script=: give one of them."
            )
        return self.script

    def _remote_spec(self, spec: LaunchSpec) -> LaunchSpec:
        checkpoint_uri, resume_from = spec.checkpoint_uri, spec.resume_from
        if not checkpoint_uri.startswith("s3://"):
            if self.checkpoints is None:
                raise ValueError(
                    f"checkpoint_uri={checkpoint_uri!r} is on the driver's disk, which cloud "
                    "nodes cannot read: pass checkpoints='s3://bucket/prefix' to SkyPilotBackend."
                )
            checkpoint_uri = f"{self.checkpoints}/{spec.study_name}/trial-{spec.trial_number}"
            if resume_from is not None and not resume_from.startswith("s3://"):
                resume_from = f"{checkpoint_uri}/{Path(resume_from).name}"
        return replace(
            spec,
            storage=self._storage_for_nodes(spec.storage),
            checkpoint_uri=checkpoint_uri,
            resume_from=resume_from,
        )

    def _storage_for_nodes(self, storage: str) -> str:
        if self.storage is not None:
            return self.storage
        if storage.startswith(REMOTE_STORAGE_SCHEMES):
            return storage
        if storage in self._node_storage:
            return self._node_storage[storage]
        host = self.proxy_host or os.environ.get(ENV_ADVERTISE_HOST)
        if not host:
            raise ValueError(
                "the study storage is on the driver's disk and cloud nodes cannot open it: pass "
                "storage='postgresql://…' (an RDB every node reaches), storage='grpc://host:port' "
                f"(a proxy you run), or proxy_host= / ${ENV_ADVERTISE_HOST} (the driver's address"
                " the nodes can reach) so this backend serves it through Optuna's gRPC proxy."
            )
        self._proxy = StorageProxy(
            storage, host="0.0.0.0", port=self.proxy_port, advertise_host=host
        ).start()
        self._node_storage[storage] = self._proxy.url
        return self._proxy.url

    # ----------------------------------------------------------------------- pricing
    def hourly_price(self, shape: ClusterShape) -> tuple[float | None, str]:
        """Dollars per hour for a cluster of ``shape``, and where the price came from."""
        per_node, source = self._node_price(shape.gpus_per_node)
        return (None if per_node is None else per_node * shape.nodes), source

    def _node_price(self, gpus: int) -> tuple[float | None, str]:
        if gpus in self._prices:
            return self._prices[gpus]
        catalog = self._sky.catalog
        first_tier = self.use_spot
        quotes: list[tuple[float, str]] = []
        for candidate in self.candidates():
            if candidate["use_spot"] != first_tier:
                continue
            cloud = candidate.get("infra", "").split("/")[0] or None
            try:
                types, _ = catalog.get_instance_type_for_accelerator(
                    self.accelerator, gpus, use_spot=first_tier, clouds=cloud
                )
                if types:
                    price = catalog.get_hourly_cost(
                        types[0], use_spot=first_tier, region=None, zone=None, clouds=cloud
                    )
                    quotes.append((float(price), f"skypilot catalog: {cloud} {types[0]}"))
            except Exception:  # offline catalogs raise many kinds
                continue
        if quotes:
            price, source = min(quotes)
            if first_tier:
                source += " (spot)"
            result: tuple[float | None, str] = (price, source)
        elif self.price_per_gpu_hour is not None:
            result = (
                self.price_per_gpu_hour * gpus,
                f"configured ${self.price_per_gpu_hour}/GPU-hour (no SkyPilot catalog price)",
            )
        else:
            result = (None, "unknown: no SkyPilot catalog price and no price_per_gpu_hour")
        self._prices[gpus] = result
        return result

    def cost_report(self) -> list[ClusterCost]:
        """Every cluster this backend launched, with time up and dollars."""
        now = self.now()
        report = []
        for cluster in [*self._retired, *self._clusters.values()]:
            seconds = (cluster.downed_at or now) - cluster.launched_at
            price = cluster.hourly_price
            report.append(
                ClusterCost(
                    name=cluster.name,
                    nodes=cluster.shape.nodes,
                    gpus_per_node=cluster.shape.gpus_per_node,
                    seconds=seconds,
                    hourly_price=price,
                    dollars=None if price is None else price * seconds / 3600.0,
                    price_source=cluster.price_source,
                )
            )
        return report

    @property
    def spent_dollars(self) -> float:
        """Dollars of every cluster with a known price, so far."""
        return sum(c.dollars for c in self.cost_report() if c.dollars is not None)

    # ------------------------------------------------------------------ Backend API
    @property
    def slots(self) -> int:
        return self.max_gpus

    @property
    def clusters(self) -> dict[str, ClusterShape]:
        """Clusters up now (name → shape)."""
        return {name: c.shape for name, c in self._clusters.items()}

    def start(self, spec: LaunchSpec) -> str:
        nodes, per_node = split_across_nodes(spec.workers, self.gpus_per_node)
        smallest = min(s for s in self.node_sizes if s >= per_node)
        if nodes * smallest > self.max_gpus:
            raise ValueError(
                f"trial {spec.trial_number} needs {spec.workers} GPUs ({nodes} node(s) of "
                f"{smallest}) but max_gpus={self.max_gpus}."
            )
        self._train_script(spec)  # fail now, not at placement, on a program nodes lack,
        self._remote_spec(spec)  # or on unreachable storage/URIs
        handle = f"trial-{spec.trial_number}-rung-{spec.rung}-{next(self._counter)}"
        self._launches[handle] = _Launch(spec, self.now(), queued_at=time.monotonic())
        self._pending.append(handle)
        return handle

    def poll(self, handle: str) -> LaunchStatus:
        launch = self._launch(handle)
        if self._burst_settled():
            self._place_pending()
        return self._refresh(handle, launch)

    def stop(self, handle: str) -> None:
        launch = self._launch(handle)
        if launch.status is not None:
            return
        if handle in self._pending:
            self._pending.remove(handle)
        elif launch.slot is not None and launch.job_id is not None:
            # A cluster that is gone has nothing left to cancel.
            with contextlib.suppress(Exception):
                self._sdk.get(self._sdk.cancel(launch.slot.cluster, job_ids=[launch.job_id]))
        self._finish(handle, launch, LaunchState.STOPPED, "stopped")

    def release(self) -> None:
        for handle in list(self._pending):
            self._finish(handle, self._launches[handle], LaunchState.STOPPED, "released")
        self._pending.clear()
        for handle, launch in self._launches.items():
            if launch.status is None:
                self._finish(handle, launch, LaunchState.STOPPED, "released")
        failures: dict[str, str] = {}
        for name in list(self._clusters):
            error = self._down(name)
            if error is not None:
                error = self._down(name)
            if error is not None:
                failures[name] = error
        leftover = self._still_up([c.name for c in self._retired])
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
            self._node_storage.clear()
        if failures or leftover:
            names = sorted(set(failures) | set(leftover))
            raise RuntimeError(
                f"could not tear down SkyPilot clusters {names} ({failures}); run "
                f"`sky down {' '.join(names)}` (they also autodown after "
                f"{self.autostop_minutes} idle minutes)."
            )

    def now(self) -> float:
        return time.time()

    def wait(self, handles: Sequence[str], timeout_s: float) -> list[str]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            if self._pending and not self._burst_settled():
                time.sleep(self.batch_window_s)
            self._place_pending()
            done = [h for h in handles if self._refresh(h, self._launch(h)).done]
            remaining = deadline - time.monotonic()
            if done or remaining <= 0:
                return done
            time.sleep(min(self.poll_interval_s, remaining))

    def __enter__(self) -> SkyPilotBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    # --------------------------------------------------------------- cluster manager
    def _launch(self, handle: str) -> _Launch:
        try:
            return self._launches[handle]
        except KeyError:
            raise ValueError(f"unknown launch handle {handle!r}") from None

    def _refresh(self, handle: str, launch: _Launch) -> LaunchStatus:
        if launch.status is not None:
            return launch.status
        if launch.slot is None or launch.job_id is None:
            return LaunchStatus(LaunchState.RUNNING, launch.started_at, message="queued")
        cluster = launch.slot.cluster
        try:
            statuses = self._sdk.get(self._sdk.job_status(cluster, job_ids=[launch.job_id]))
        except Exception as exc:  # the cluster is gone (spot preemption) or the API hiccuped
            if self._cluster_up(cluster):
                return LaunchStatus(
                    LaunchState.RUNNING, launch.started_at, message=f"status unavailable: {exc}"
                )
            self._lost_cluster(cluster, f"cluster {cluster} is gone (spot preemption?): {exc}")
            return self._refresh(handle, launch)
        state = statuses.get(launch.job_id)
        name = str(getattr(state, "value", state))
        if name in _RUNNING_JOB_STATES:
            return LaunchStatus(LaunchState.RUNNING, launch.started_at, message=name.lower())
        if name == "SUCCEEDED":
            return self._finish(handle, launch, LaunchState.SUCCEEDED, "succeeded")
        if name in _STOPPED_JOB_STATES:
            return self._finish(handle, launch, LaunchState.STOPPED, "cancelled")
        return self._finish(handle, launch, LaunchState.FAILED, f"job {launch.job_id}: {name}")

    def _lost_cluster(self, name: str, reason: str) -> None:
        """A cluster vanished: relaunch its trials from their checkpoints, or fail them."""
        cluster = self._clusters[name]
        for handle in sorted(cluster.trials):
            launch = self._launches[handle]
            cluster.trials.discard(handle)
            cluster.free_gpus += launch.slot.workers if launch.slot is not None else 0
            if launch.status is not None:
                continue
            if launch.preemptions < self.preemption_retries:
                launch.preemptions += 1
                launch.slot, launch.job_id = None, None
                launch.queued_at = time.monotonic()
                self._pending.append(handle)
            else:
                self._finish(handle, launch, LaunchState.FAILED, reason)
        self._down(name)

    def _cluster_up(self, name: str) -> bool:
        try:
            records = self._sdk.get(self._sdk.status(cluster_names=[name]))
        except Exception:  # no answer: assume it is still there, ask again next poll
            return True
        for record in records:
            status = _field(record, "status")
            if _field(record, "name") == name:
                return str(getattr(status, "value", status)) == "UP"
        return False

    def _finish(
        self, handle: str, launch: _Launch, state: LaunchState, message: str
    ) -> LaunchStatus:
        launch.status = LaunchStatus(state, launch.started_at, self.now(), message)
        if launch.slot is not None and launch.slot.cluster in self._clusters:
            cluster = self._clusters[launch.slot.cluster]
            if handle in cluster.trials:
                cluster.trials.discard(handle)
                cluster.free_gpus += launch.slot.workers
        return launch.status

    def _burst_settled(self) -> bool:
        """True when no launch was started within the batch window."""
        newest = max((self._launches[h].queued_at for h in self._pending), default=0.0)
        return time.monotonic() - newest >= self.batch_window_s

    def _place_pending(self) -> None:
        if not self._pending:
            return
        placement = None
        batch = list(self._pending)
        while batch:
            open_clusters = [
                OpenCluster(c.name, c.shape, c.free_gpus) for c in self._clusters.values()
            ]
            demands = {h: self._launches[h].spec.workers for h in batch}
            placement = place(
                demands,
                self.gpus_per_node,
                open_clusters=open_clusters,
                node_sizes=self.node_sizes,
            )
            used = {slot.cluster for slot in placement.slots.values()}
            kept = sum(
                c.shape.gpus for c in self._clusters.values() if not c.idle or c.name in used
            )
            if kept + placement.new_gpus <= self.max_gpus:
                break
            batch.pop()  # the quota is full: the last-started launch waits for capacity
        if not batch or placement is None:
            return
        used = {slot.cluster for slot in placement.slots.values()}
        for cluster in list(self._clusters.values()):
            if cluster.idle and cluster.name not in used:
                self._down(cluster.name)  # resize: this shape is no longer needed
        names = self._launch_clusters(placement.new_clusters)
        for handle in batch:
            self._pending.remove(handle)
            launch = self._launches[handle]
            slot = placement.slots[handle]
            launch.slot = replace(slot, cluster=names.get(slot.cluster, slot.cluster))
            self._submit(handle, launch)
        for name in names.values():
            if self._clusters[name].launch_error is not None:
                self._down(name)  # whatever part of it came up (its trials failed above)

    def _launch_clusters(self, shapes: Mapping[str, ClusterShape]) -> dict[str, str]:
        """Launch every new cluster in parallel; placeholder name → real cluster name."""
        names: dict[str, str] = {}
        requests: dict[str, Any] = {}
        for placeholder, shape in shapes.items():
            name = f"{self.cluster_prefix}-{next(self._counter)}"
            names[placeholder] = name
            price, source = self.hourly_price(shape)
            # Recorded before the request, so release() tears it down whatever happens next.
            self._clusters[name] = _Cluster(name, shape, shape.gpus, self.now(), price, source)
            requests[name] = self._sdk.launch(
                self.cluster_task(shape),
                cluster_name=name,
                idle_minutes_to_autostop=self.autostop_minutes,
                down=True,
            )
        for name, request in requests.items():
            cluster = self._clusters[name]
            try:
                _, handle = self._sdk.get(request)
            except Exception as exc:  # no capacity, quota, credentials …
                cluster.launch_error = f"launch of {name} failed: {exc}"
                cluster.hourly_price, cluster.price_source = 0.0, "launch failed: not billed"
                continue
            launched: Any = getattr(handle, "launched_resources", None)
            try:
                hourly = float(launched.get_cost(3600)) * cluster.shape.nodes
                cluster.hourly_price = hourly
                cluster.price_source = f"skypilot: {launched}"
            except Exception:  # no handle, or no catalog price
                pass
        return names

    def _submit(self, handle: str, launch: _Launch) -> None:
        assert launch.slot is not None
        cluster = self._clusters[launch.slot.cluster]
        cluster.free_gpus -= launch.slot.workers
        cluster.trials.add(handle)
        if cluster.launch_error is not None:
            self._finish(handle, launch, LaunchState.FAILED, cluster.launch_error)
            return
        try:
            job_id, _ = self._sdk.get(
                self._sdk.exec(self.trial_task(launch.spec, launch.slot), cluster_name=cluster.name)
            )
        except Exception as exc:
            self._finish(handle, launch, LaunchState.FAILED, f"sky exec on {cluster.name}: {exc}")
            return
        launch.job_id = int(job_id)

    def _down(self, name: str) -> str | None:
        """``sky down`` one cluster; the error text, or ``None`` once it is gone."""
        cluster = self._clusters.get(name)
        try:
            self._sdk.get(self._sdk.down(name))
        except Exception as exc:
            if type(exc).__name__ != "ClusterDoesNotExist":
                return f"{type(exc).__name__}: {exc}"
        if cluster is not None:
            for handle in list(cluster.trials):
                launch = self._launches[handle]
                if launch.status is None:
                    self._finish(handle, launch, LaunchState.STOPPED, f"{name} torn down")
            cluster.downed_at = self.now()
            self._retired.append(cluster)
            del self._clusters[name]
        return None

    def _still_up(self, names: Sequence[str]) -> list[str]:
        if not names:
            return []
        try:
            records = self._sdk.get(self._sdk.status(cluster_names=list(names)))
        except Exception:  # status unavailable: trust the downs
            return []
        return sorted(str(_field(r, "name")) for r in records)


def node_train_script(entrypoint: str, workdir: str | os.PathLike[str]) -> str:
    """The ``SEER_TRAIN_SCRIPT`` that runs an executor entrypoint on a node.

    Nodes get ``workdir`` (synced to their working directory), so a ``.py`` target on the
    driver's disk becomes its path relative to ``workdir``; ``module:function`` targets are
    imported as they are. Either runs through ``python -m optuna_seer.worker.entrypoint`` under
    ``torchrun`` (see :mod:`optuna_seer.worker.node_entrypoint`).

    Raises:
        ValueError: The file is outside ``workdir``, so the nodes would not have it.

    Example:
        >>> node_train_script("/home/me/proj/train.py:fit", "/home/me/proj")
        '-m optuna_seer.worker.entrypoint train.py:fit'
        >>> node_train_script("mypkg.train:fit", "/home/me/proj")
        '-m optuna_seer.worker.entrypoint mypkg.train:fit'
    """
    location, colon, function = entrypoint.rpartition(":")
    if not colon or not location.endswith(".py"):
        location, function = entrypoint, ""
    target = entrypoint
    if location.endswith(".py") and Path(location).is_absolute():
        root = Path(workdir).resolve()
        try:
            relative = Path(location).resolve().relative_to(root)
        except ValueError:
            raise ValueError(
                f"train target {entrypoint!r} is outside workdir={str(workdir)!r}, which is all "
                "the nodes get: move it under workdir, or pass workdir= a directory holding it."
            ) from None
        target = relative.as_posix() + (f":{function}" if function else "")
    return f"-m optuna_seer.worker.entrypoint {shlex.quote(target)}"


def is_secret_env(name: str) -> bool:
    """Whether a node variable goes to SkyPilot as a secret (redacted) rather than an env.

    Example:
        >>> is_secret_env("SEER_STORAGE"), is_secret_env("AWS_SECRET_ACCESS_KEY")
        (True, True)
        >>> is_secret_env("SEER_TRIAL")
        False
    """
    upper = name.upper()
    return name in SECRET_ENVS or any(part in upper for part in SECRET_NAME_PARTS)


def _field(record: Any, name: str) -> Any:
    """A field of a ``sky.status`` record (a response object, or a dict)."""
    return record[name] if isinstance(record, Mapping) else getattr(record, name, None)


def _load_template(path: Path, yaml: Any) -> dict[str, Any]:
    """The trial template at ``path`` as a mapping, checked where this backend edits it."""
    try:
        template = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"trial template {path} is not readable YAML: {exc}") from None
    if not isinstance(template, dict):
        raise ValueError(
            f"trial template {path} holds {type(template).__name__} {template!r:.60}, not a "
            "SkyPilot task mapping (name:, resources:, envs:, setup:, run:)."
        )
    if not isinstance(template.get("run"), str) or not template["run"].strip():
        raise ValueError(
            f"trial template {path} has no run: command (got {template.get('run')!r}); give "
            "the command every node runs, e.g. run: python -m optuna_seer.worker.node_entrypoint."
        )
    for section in ("envs", "secrets"):
        value = template.get(section)
        if value is not None and not isinstance(value, dict):
            raise ValueError(
                f"trial template {path} has {section}: {value!r:.60}; give a mapping "
                "NAME: value (or leave it out)."
            )
    return template


def _inline_secrets(value: object) -> dict[str, str | None]:
    """The ``secrets:`` mapping of a template (absent: none; a null value is a SkyPilot
    managed-secret reference, kept as it is)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"the trial template's secrets: is {value!r}; give a mapping NAME: value (SkyPilot "
            "inline secrets), e.g. secrets: {SEER_STORAGE: grpc://127.0.0.1:13000}."
        )
    return {str(k): None if v is None else str(v) for k, v in value.items()}


def _parse_accelerators(value: object) -> tuple[str, int]:
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"resources needs accelerators like 'A100:8' (name:GPUs per node), got {value!r}."
        )
    name, _, count = value.partition(":")
    try:
        gpus = int(count) if count else 1
    except ValueError:
        raise ValueError(f"accelerators={value!r}: the count after ':' must be an int.") from None
    if not name or gpus < 1:
        raise ValueError(f"accelerators={value!r} must be NAME:COUNT with COUNT >= 1.")
    return name, gpus
