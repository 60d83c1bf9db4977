"""Run trials on SkyPilot clusters: the cluster manager behind the ``Backend`` interface.

``SkyPilotBackend`` implements :class:`~optuna_seer.backends.base.Backend`, so the executor
that drives local processes drives clouds unchanged:

* ``start(spec)`` queues the launch; the queue is placed at the next ``poll``/``wait``, so
  the placement controller (:func:`optuna_seer.planning.placement.place`) sees a rung's
  whole demand (``n`` trials × ``k`` GPUs) and packs it onto the fewest nodes, within
  ``max_gpus``.
* **Resizing.** A cluster whose shape fits is reused; a new shape with the GPUs per node of
  an idle cluster resizes it (``sky launch --resize``); other idle clusters go down and
  other shapes are launched, provisioned then set up, both timed
  (:mod:`~optuna_seer.backends.skypilot.launching`). Each trial runs on its cluster with
  ``sky exec``.
* Every cluster is launched with autodown, so a driver that dies stops paying after
  ``autostop_minutes``; ``release()`` tears down every cluster (Ctrl-C, exceptions and the
  deadline all end there) and checks with ``sky status`` that none is left.

Beside it: the tasks, node environment, secrets and the nodes' wheel in
:mod:`~optuna_seer.backends.skypilot.tasks` and :mod:`~optuna_seer.backends.skypilot.packages`;
each trial's slot and SkyPilot job in :mod:`~optuna_seer.backends.skypilot.jobs`;
the study URL nodes open in :mod:`~optuna_seer.backends.skypilot.proxy`; prices in
:mod:`optuna_seer.pricing`; the bill beside SkyPilot's cost report in
:mod:`~optuna_seer.backends.skypilot.bill`; failure messages (a log tail and the ``sky logs``
command) in :mod:`~optuna_seer.backends.skypilot.failures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
import itertools
import os
import secrets
import time
from types import TracebackType
from typing import Any, Literal

from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState, LaunchStatus
from optuna_seer.backends.skypilot import jobs
from optuna_seer.backends.skypilot.bill import BILLING_MINIMUM_S, Bill, SkyPilotCosts, reconcile
from optuna_seer.backends.skypilot.clusters import (
    ClusterCost,
    ClusterRecord,
    LaunchRecord,
    checked_node_sizes,
    cluster_cost,
    cluster_is_up,
    clusters_still_up,
)
from optuna_seer.backends.skypilot.launching import (
    Target,
    bring_up,
    place_within_quota,
    record_bringups,
    resize_candidates,
)
from optuna_seer.backends.skypilot.proxy import NodeStorage
from optuna_seer.backends.skypilot.tasks import DEFAULT_TEMPLATE, TEMPLATES_DIR, TaskBuilder
from optuna_seer.planning.placement import ClusterShape, TrialSlot, split_across_nodes
from optuna_seer.pricing.clusters import ClusterPricer

__all__ = ["DEFAULT_TEMPLATE", "TEMPLATES_DIR", "Bill", "ClusterCost", "SkyPilotBackend"]


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
        checkpoints: ``s3://bucket/prefix`` (or ``gs://``, or another fsspec store every
            node reaches) for trials whose ``checkpoint_uri`` is local.
        storage: Study URL the nodes use. ``None``: the executor's URL if a node can open it
            (RDB, ``grpc://``), else a gRPC proxy this backend serves on ``proxy_port``,
            advertised as ``proxy_host`` (default ``$SEER_ADVERTISE_HOST``).
        max_gpus: Most GPUs provisioned at once (your quota); ``slots`` reports it.
        node_sizes: Smaller GPU counts a node may have (default: only the full node).
        autostop_minutes: Idle minutes before SkyPilot tears a cluster down by itself.
        workdir: Directory synced to the nodes (default: the current directory).
        template: The trial YAML (default: ``launchers/trial.yaml``, shipped in the package;
            copy it from :data:`TEMPLATES_DIR` to change ``setup`` or ``envs``).
        price_per_gpu_hour: Price used where SkyPilot's catalog has none (before the
            shipped table, which is used only with a warning naming its date).
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
        for name, value in (("max_gpus", max_gpus), ("autostop_minutes", autostop_minutes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be an int >= 1.")
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s={poll_interval_s!r} must be > 0.")
        if not batch_window_s >= 0:
            raise ValueError(f"batch_window_s={batch_window_s!r} must be >= 0.")
        if isinstance(preemption_retries, bool) or preemption_retries < 0:
            raise ValueError(f"preemption_retries={preemption_retries!r} must be an int >= 0.")
        self._storage = NodeStorage(storage, proxy_host, proxy_port)
        self._tasks = TaskBuilder(
            resources=resources,
            clouds=clouds,
            use_spot=use_spot,
            on_demand_fallback=on_demand_fallback,
            candidate_order=candidate_order,
            script=script,
            checkpoints=checkpoints,
            workdir=workdir,
            template=template,
            storage_for_nodes=self._storage.url_for,
        )
        self._pricer = ClusterPricer(
            self._tasks.accelerator,
            self._tasks.clouds,
            use_spot=use_spot,
            price_per_gpu_hour=price_per_gpu_hour,
        )
        if sdk is None:
            import sky

            sdk = sky
        self._sdk = sdk
        self.accelerator, self.gpus_per_node = self._tasks.accelerator, self._tasks.gpus_per_node
        self.node_sizes = checked_node_sizes(node_sizes, self.gpus_per_node, max_gpus, resources)
        self.max_gpus = max_gpus
        self.autostop_minutes = autostop_minutes
        self.poll_interval_s = poll_interval_s
        self.batch_window_s = batch_window_s
        self.preemption_retries = preemption_retries
        self.cluster_prefix = f"{cluster_prefix}-{secrets.token_hex(3)}"

        self._clusters: dict[str, ClusterRecord] = {}
        self._retired: list[ClusterRecord] = []
        self._launches: dict[str, LaunchRecord] = {}
        self._pending: list[str] = []
        self._counter = itertools.count()
        self._sky_costs = SkyPilotCosts(sdk)

    # ----------------------------------------------------------------- SkyPilot objects
    def candidates(self) -> list[dict[str, Any]]:
        """Resource candidates (cloud × spot tier) as SkyPilot YAML fields."""
        return self._tasks.candidates()

    def node_resources_config(self, shape: ClusterShape) -> dict[str, Any]:
        """The ``resources:`` YAML of a cluster of ``shape`` (with its candidates)."""
        return self._tasks.node_resources_config(shape)

    def node_resources(self, shape: ClusterShape) -> Any:
        """Real ``sky.Resources`` candidates: a set (one, or ``any_of``) or a list (``ordered``)."""
        return self._tasks.node_resources(shape)

    def cluster_task(self, shape: ClusterShape) -> Any:
        """The task ``sky launch`` gets to provision and set up a cluster (no ``run``)."""
        return self._tasks.cluster_task(shape)

    def trial_task(self, spec: LaunchSpec, slot: TrialSlot) -> Any:
        """The task ``sky exec`` runs for one trial on its slot."""
        return self._tasks.trial_task(spec, slot)

    def node_env(self, spec: LaunchSpec) -> dict[str, str]:
        """The variables a trial's nodes get: the ``SEER_*`` contract plus the script."""
        return self._tasks.node_env(spec)

    # ----------------------------------------------------------------------- pricing
    def hourly_price(self, shape: ClusterShape) -> tuple[float | None, str]:
        """Dollars per hour for a cluster of ``shape``, and where the price came from."""
        return self._pricer.hourly_price(shape)

    def cost_report(self) -> list[ClusterCost]:
        """Every cluster this backend launched, with time up and dollars: whole nodes from the
        launch request to ``sky down``, each node billed at least a minute."""
        now = self.now()
        clusters = [*self._retired, *self._clusters.values()]
        return [cluster_cost(c, now, BILLING_MINIMUM_S) for c in clusters]

    @property
    def spent_dollars(self) -> float:
        """Dollars of every cluster with a known price, so far (this backend's estimate)."""
        return sum(c.dollars for c in self.cost_report() if c.dollars is not None)

    def bill(self) -> Bill:
        """This run's bill by this backend's accounting and by SkyPilot's cost report
        (``sky.cost_report``), asked now; :attr:`Bill.dollars` is the larger."""
        costs = self.cost_report()
        self._sky_costs.ask([c.name for c in costs])
        return reconcile(costs, self._sky_costs.costs, self._sky_costs.note)

    def billed_dollars(self) -> float:
        """:meth:`bill`'s dollars for the budget guard, asking SkyPilot at most once a minute
        (its last answer stands in between)."""
        costs = self.cost_report()
        self._sky_costs.latest([c.name for c in costs])
        return reconcile(costs, self._sky_costs.costs, self._sky_costs.note).dollars

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
        self._tasks.train_script(spec)  # fail now, not at placement, on a program nodes lack,
        self._tasks.remote_spec(spec)  # or on unreachable storage/URIs
        handle = f"trial-{spec.trial_number}-rung-{spec.rung}-{next(self._counter)}"
        self._launches[handle] = LaunchRecord(spec, self.now(), queued_at=time.monotonic())
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
            jobs.cancel(self._sdk, launch.slot.cluster, launch.job_id)
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
        leftover = clusters_still_up(self._sdk, [c.name for c in self._retired])
        self._storage.close()
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
    def _launch(self, handle: str) -> LaunchRecord:
        try:
            return self._launches[handle]
        except KeyError:
            raise ValueError(f"unknown launch handle {handle!r}") from None

    def _refresh(self, handle: str, launch: LaunchRecord) -> LaunchStatus:
        if launch.status is not None:
            return launch.status
        if launch.slot is None or launch.job_id is None:
            return launch.current(LaunchState.RUNNING, "queued")
        cluster = launch.slot.cluster
        try:
            statuses = self._sdk.get(self._sdk.job_status(cluster, job_ids=[launch.job_id]))
        except Exception as exc:  # the cluster is gone (spot preemption) or the API hiccuped
            if cluster_is_up(self._sdk, cluster):
                return launch.current(LaunchState.RUNNING, f"status unavailable: {exc}")
            self._lost_cluster(cluster, f"cluster {cluster} is gone (spot preemption?): {exc}")
            return self._refresh(handle, launch)
        state, message = jobs.outcome(self._sdk, launch, statuses)
        if state is LaunchState.RUNNING:
            return launch.current(state, message)
        return self._finish(handle, launch, state, message)

    def _lost_cluster(self, name: str, reason: str) -> None:
        """A cluster vanished: relaunch its trials from their checkpoints, or fail them."""
        cluster = self._clusters[name]
        for handle in sorted(cluster.trials):
            launch = self._launches[handle]
            jobs.release_slot(cluster, handle, launch)
            if launch.status is not None:
                continue
            if launch.preemptions < self.preemption_retries:
                jobs.requeue(launch)
                self._pending.append(handle)
            else:
                self._finish(handle, launch, LaunchState.FAILED, reason)
        self._down(name)

    def _finish(
        self, handle: str, launch: LaunchRecord, state: LaunchState, message: str
    ) -> LaunchStatus:
        launch.status = launch.current(state, message, self.now())
        if launch.slot is not None and launch.slot.cluster in self._clusters:
            jobs.release_slot(self._clusters[launch.slot.cluster], handle, launch)
        return launch.status

    def _burst_settled(self) -> bool:
        """True when no launch was started within the batch window."""
        newest = max((self._launches[h].queued_at for h in self._pending), default=0.0)
        return time.monotonic() - newest >= self.batch_window_s

    def _place_pending(self) -> None:
        batch, placement = place_within_quota(
            self._pending,
            {h: self._launches[h].spec.workers for h in self._pending},
            self._clusters,
            gpus_per_node=self.gpus_per_node,
            node_sizes=self.node_sizes,
            max_gpus=self.max_gpus,
        )
        if not batch or placement is None:
            return
        used = {slot.cluster for slot in placement.slots.values()}
        spare = {
            c.name: c.shape
            for c in self._clusters.values()
            if c.idle and c.name not in used and c.launch_error is None
        }
        resize = resize_candidates(placement.new_clusters, spare)
        for name in set(spare) - set(resize.values()):
            self._down(name)  # this shape is no longer needed, and no new one has its nodes
        placed_at = time.monotonic()
        names = self._launch_clusters(placement.new_clusters, resize)
        for handle in batch:
            self._pending.remove(handle)
            launch, slot = self._launches[handle], placement.slots[handle]
            name = names.get(slot.cluster, slot.cluster)
            brought_up = self._clusters[name] if slot.cluster in names else None
            launch.placed(replace(slot, cluster=name), brought_up, placed_at)
            self._submit(handle, launch)
        for name in names.values():
            if self._clusters[name].launch_error is not None:
                self._down(name)  # whatever part of it came up (its trials failed above)

    def _launch_clusters(
        self, shapes: Mapping[str, ClusterShape], resize: Mapping[str, str]
    ) -> dict[str, str]:
        """Launch every new cluster (or resize the idle one ``resize`` names for it) in
        parallel; placeholder → real cluster name."""
        names: dict[str, str] = {}
        targets: list[Target] = []
        for placeholder, shape in shapes.items():
            existing = resize.get(placeholder)
            if existing is not None:
                self._clusters[existing].resize(shape, self.now())
                names[placeholder] = existing
                targets.append(Target(existing, shape, resize=True))
                continue
            name = f"{self.cluster_prefix}-{next(self._counter)}"
            names[placeholder] = name
            price, source = self.hourly_price(shape)
            # Recorded before the request, so release() tears it down whatever happens next.
            self._clusters[name] = ClusterRecord(name, shape, shape.gpus, self.now(), price, source)
            targets.append(Target(name, shape))
        outcomes = bring_up(
            self._sdk,
            targets,
            boot_task=self._tasks.boot_task,
            cluster_task=self.cluster_task,
            autostop_minutes=self.autostop_minutes,
        )
        record_bringups(self._clusters, outcomes, resize.values())
        return names

    def _submit(self, handle: str, launch: LaunchRecord) -> None:
        assert launch.slot is not None
        cluster = self._clusters[launch.slot.cluster]
        error = jobs.submit(self._sdk, cluster, handle, launch, self.trial_task)
        if error is not None:
            self._finish(handle, launch, LaunchState.FAILED, error)

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
