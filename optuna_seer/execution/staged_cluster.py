"""StagedCluster: a backend whose capacity follows a RubberBand plan's clusters, stage by stage.

An :class:`~optuna_seer.planning.stage_plan.ElasticPlan` gives every stage (rung) its own
cluster: an instance type (GPUs per node, $/h) and a node count. :class:`StagedCluster`
wraps the backend the launches really run on (``LocalBackend`` slots, a ``ReplayBackend``)
and makes it behave like that sequence of clusters:

* **Resizing.** The first launch of rung ``r`` switches to stage ``r``'s cluster. Unless it
  is the previous stage's cluster (same instance type and node count: one lease goes on),
  the old cluster is released and a new one is provisioned: the stage's launches wait the
  provisioning delay (queueing, then boot; drawn from ``delays``), on the backend's clock.
* **Packing.** Launches wait in arrival order and start as soon as the placement controller
  (:func:`~optuna_seer.planning.placement.place`) finds them room on the cluster's nodes: a
  trial of ``k <= G`` GPUs on one node beside others (best fit), a larger one on
  ``k / G`` whole free nodes. So the cluster runs exactly the trials at once the plan
  counted, slot by slot rather than in waves.
* **Spares.** With per-node leases and ``launch_seconds``, a shrink keeps the nodes it gives
  up, paid to the end of their hour anyway, as spares: they take the queued launches that
  fit before then, a grow takes them back first, and they are released just before their
  paid time ends (:mod:`~optuna_seer.planning.spare_nodes`).
* **Spot preemptions (simulated).** Given ``preemption_rate`` (reclaims per node-hour of a
  spot instance type), each node of a spot cluster is reclaimed at seeded Poisson times:
  the launches on it fail (the backend's ``fail_launch``: a ``ReplayBackend``; on a real
  cloud preemptions are real, not simulated), and the node comes back after a new
  provisioning delay. The executor retries the failed trials from their last checkpoint.
* **Billing.** Every cluster is a :class:`Lease` from its request to its release; a lease
  bills ``nodes × $/h`` for its boot and the time it was held (queueing is free), rounded by
  the :class:`~optuna_seer.planning.billing.BillingRule`. :meth:`StagedCluster.bill` is what
  the cloud would charge, the measured figure the simulator's cost predicts.

Its ``slots`` are the most GPUs any stage places at once (constant, so a resumed run sees
the slot count it started with); the stage's own capacity is enforced by the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
import itertools
import math

import numpy as np

from optuna_seer._logging import get_logger
from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState, LaunchStatus
from optuna_seer.execution.leases import Lease, Node, NodeSet, ProvisioningDelay, no_delay
from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.placement import ClusterShape, OpenCluster, place, split_across_nodes
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.stage_plan import ElasticPlan, Stage, nodes_for

__all__ = ["Lease", "ProvisioningDelay", "StagedCluster", "no_delay"]

_logger = get_logger(__name__)


@dataclass
class _Launch:
    spec: LaunchSpec
    stage: int
    inner: str | None = None
    nodes: tuple[Node, ...] = ()
    status: LaunchStatus | None = None  # set once it ended without ever starting
    freed: bool = False
    backend: Backend | None = None  # what it runs on, once started


class StagedCluster(Backend):
    """``backend`` resized to each stage's cluster of ``plan`` (see the module docstring).

    Args:
        backend: Runs the launches; its slots must hold every stage's placed trials. Or a
            factory, ``backend(instance) -> Backend``, called whenever a stage changes the
            instance type (the previous type's backend is released then): for a backend that
            runs one instance type, such as ``SkyPilotBackend``. Its backends share a clock.
        plan: The stages and their clusters.
        delays: Provisioning delay of each new cluster (default: none, as for local slots).
        billing: How the cloud rounds each lease (``"per-second"``, ``"per-hour"``, …).
        preemption_rate: Reclaims per node-hour of an instance (``None``: no simulated
            preemptions); the backend must have ``fail_launch(handle, reason)``.
        seed: Seeds the simulated preemptions.
        node_leases: Keep nodes across stages of one instance type (shrink or grow the
            cluster in place, each node its own lease: :mod:`~optuna_seer.execution.leases`)
            instead of releasing the cluster whole at every resize.
        launch_seconds: With ``node_leases``, ``launch_seconds(stage)``: the seconds a
            launch of that stage is allowed on a spare
            (:func:`~optuna_seer.planning.spare_nodes.launch_estimate`). Given, a shrink
            keeps the nodes it gives up as spares until their paid time ends: they take the
            queued launches that fit before then, a grow takes them back first
            (:mod:`~optuna_seer.planning.spare_nodes`). ``None``: released at once.

    Example:
        >>> q = PriceQuote("local-slot", "cpu", 1, 3.0)
        >>> from optuna_seer.planning.stage_plan import Stage
        >>> plan = ElasticPlan((Stage(4, 1, 1, q, 4), Stage(2, 3, 1, q, 2)))
        >>> [StagedCluster.capacity(s) for s in plan.stages]
        [4, 2]
    """

    def __init__(
        self,
        backend: Backend | Callable[[PriceQuote], Backend],
        plan: ElasticPlan,
        *,
        delays: ProvisioningDelay = no_delay,
        billing: BillingRule | str = "exact",
        preemption_rate: Callable[[PriceQuote], float] | None = None,
        seed: int = 0,
        node_leases: bool = False,
        launch_seconds: Callable[[int], float] | None = None,
    ) -> None:
        if not isinstance(plan, ElasticPlan):
            raise TypeError(f"plan={plan!r} must be an ElasticPlan.")
        self._factory: Callable[[PriceQuote], Backend] | None = None
        if not isinstance(backend, Backend):
            if not callable(backend):
                raise TypeError(
                    f"backend={backend!r} must be an optuna_seer Backend or a factory "
                    "callable(instance) -> Backend."
                )
            self._factory = backend
            backend = self._made_for(plan.stages[0].instance, plan)
        self._retired: list[Backend] = []
        if not callable(delays):
            raise TypeError(f"delays={delays!r} must be callable(n, stage) -> (queue_s, boot_s).")
        self._inner = backend
        self._plan = plan
        self._delays = delays
        self.billing = BillingRule.parse(billing)
        if preemption_rate is not None and not callable(getattr(backend, "fail_launch", None)):
            raise ValueError(
                f"simulated preemptions need a backend with fail_launch (a ReplayBackend), not "
                f"{type(backend).__name__}; on a cloud, preemptions happen by themselves."
            )
        self._rate = preemption_rate
        self._seed = seed
        self.preemptions = 0
        self._slots = max(self.capacity(s) for s in plan.stages)
        if self._factory is None and self._slots > backend.slots:
            widest = max(plan.stages, key=self.capacity)
            raise ValueError(
                f"stage {plan.stages.index(widest)} runs {widest.concurrent_trials} trials of "
                f"{widest.gpus_per_trial} worker(s) at once ({self._slots} workers) but the "
                f"backend has {backend.slots} slots; plan with max_gpus <= {backend.slots}."
            )
        self._stage = -1
        self._cluster: Stage | None = None
        self._held = NodeSet()
        self._provisioned = 0
        self.node_leases = node_leases
        self._launch_seconds = launch_seconds
        self._launches: dict[str, _Launch] = {}
        self._queue: deque[str] = deque()
        self._handles = itertools.count()
        self.notes: list[str] = []

    def _made_for(self, instance: PriceQuote, plan: ElasticPlan) -> Backend:
        """The factory's backend for ``instance``, checked to hold its stages' trials."""
        assert self._factory is not None
        made = self._factory(instance)
        if not isinstance(made, Backend):
            raise TypeError(f"the backend factory returned {made!r}, not a Backend.")
        need = max(self.capacity(s) for s in plan.stages if s.instance == instance)
        if need > made.slots:
            raise ValueError(
                f"the backend for {instance.instance_type} has {made.slots} slots but a stage "
                f"on it runs {need} workers at once."
            )
        return made

    @staticmethod
    def capacity(stage: Stage) -> int:
        """Workers the stage's trials use at once when placed on its cluster."""
        return stage.concurrent_trials * stage.gpus_per_trial

    # -- what happened ---------------------------------------------------------------------

    @property
    def plan(self) -> ElasticPlan:
        return self._plan

    @property
    def leases(self) -> tuple[Lease, ...]:
        """Every cluster provisioned so far, in order (the current one with no release)."""
        return tuple(self._held.leases)

    def bill(self) -> float:
        """Dollars the cloud charges for the leases released so far (all, after
        :meth:`release`)."""
        return sum(lease.dollars(self.billing) for lease in self._held.leases)

    # -- Backend ---------------------------------------------------------------------------

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def launches_end_with_driver(self) -> bool:
        return self._inner.launches_end_with_driver

    def now(self) -> float:
        return self._inner.now()

    def start(self, spec: LaunchSpec) -> str:
        stage = min(spec.rung, len(self._plan.stages) - 1)
        if stage != self._stage:
            self._enter(stage)
        self._fit(spec.workers)
        handle = f"staged-{next(self._handles)}"
        self._launches[handle] = _Launch(spec, stage)
        self._queue.append(handle)
        self._pump()
        return handle

    def poll(self, handle: str) -> LaunchStatus:
        launch = self._launch(handle)
        if launch.status is not None:
            return launch.status
        if launch.inner is None:
            return LaunchStatus(LaunchState.RUNNING, started_at=self.now())
        assert launch.backend is not None
        status = launch.backend.poll(launch.inner)
        if status.done and not launch.freed:
            self._free_nodes(launch)
            self._pump()
        return status

    def stop(self, handle: str) -> None:
        launch = self._launch(handle)
        if launch.status is not None:
            return
        if launch.inner is None:
            now = self.now()
            self._queue.remove(handle)
            launch.status = LaunchStatus(LaunchState.STOPPED, now, now, "stopped before it started")
            return
        assert launch.backend is not None
        launch.backend.stop(launch.inner)
        self.poll(handle)

    def release(self) -> None:
        for handle, launch in self._launches.items():
            if launch.status is None and (launch.inner is None or not launch.freed):
                self.stop(handle)
        for retired in self._retired:
            retired.release()
        self._inner.release()
        self._close_lease()

    def wait(self, handles: Sequence[str], timeout_s: float) -> list[str]:
        """Wait on the backend for one of ``handles`` to end, starting queued launches as the
        cluster comes up and room frees; the provisioning delay passes on the backend's clock.

        Raises:
            RuntimeError: ``timeout_s`` is infinite and nothing can ever end ``handles``.
        """
        if math.isnan(timeout_s) or timeout_s < 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be >= 0.")
        until = self.now() + timeout_s
        while True:
            self._reclaim_due()
            self._expire_spares()
            self._pump()
            done = [h for h in handles if self.poll(h).done]
            now = self.now()
            if done or now >= until:
                return done
            running = [
                launch.inner
                for launch in self._launches.values()
                if launch.inner is not None and not launch.freed and launch.backend is self._inner
            ]
            nodes = self._held.nodes
            step = min([until, *(n.reclaim_at for n in nodes)]) - now
            spares = [n.spare_until for n in nodes if n.spare and n.spare_until > now]
            if spares:
                step = min(step, min(spares) - now)
            coming = [n.ready_at for n in nodes if n.ready_at > now] if self._queue else []
            if coming:
                step = min(step, min(coming) - now)
            elif not running and math.isinf(step):
                raise RuntimeError(
                    f"wait({list(handles)!r}, timeout_s=inf): nothing runs on the cluster "
                    "that could end them."
                )
            self._inner.wait(running, step)

    # -- internals -------------------------------------------------------------------------

    def _launch(self, handle: str) -> _Launch:
        try:
            return self._launches[handle]
        except KeyError:
            raise ValueError(f"unknown launch handle {handle!r}.") from None

    def _reclaim_at(self, node: int, after: float, stage: Stage) -> float:
        """When spot node ``node`` (up from ``after``) is next reclaimed (``inf``: never)."""
        rate = 0.0 if self._rate is None else float(self._rate(stage.instance))
        if rate <= 0:
            return math.inf
        rng = np.random.default_rng([self._seed, 13, self._provisioned, node, self.preemptions])
        return after + float(rng.exponential(3600.0 / rate))

    def _reclaim_due(self) -> None:
        """Reclaim the spot nodes whose time has come: fail their launches, replace them."""
        now = self.now()
        stage = self._cluster
        for number, node in enumerate(self._held.nodes):
            if node.reclaim_at > now or stage is None:
                continue
            self.preemptions += 1
            for launch in self._launches.values():
                if (
                    launch.inner is not None
                    and not launch.freed
                    and any(node is used for used in launch.nodes)
                ):
                    self._inner.fail_launch(  # type: ignore[attr-defined]
                        launch.inner, f"spot node {number} reclaimed (simulated)"
                    )
            queue_s, boot_s = self._delays(1000 + self.preemptions, stage)
            node.ready_at = now + queue_s + boot_s
            node.reclaim_at = self._reclaim_at(number, node.ready_at, stage)

    def _enter(self, index: int) -> None:
        """Switch to stage ``index``'s cluster: keep the lease if it is the same cluster; with
        ``node_leases``, keep the nodes of the same instance type (shrink or grow in place);
        else release the cluster and provision the new one."""
        stage = self._plan.stages[index]
        self._stage = index
        current = self._cluster
        self._expire_spares()
        if current is not None and self._held.nodes:
            if current.cluster == stage.cluster and not any(n.spare for n in self._held.nodes):
                self._held.join(index)
                return
            if self.node_leases and current.instance == stage.instance:
                self._resize_in_place(index, stage)
                return
        self._close_lease()
        if self._factory is not None and current and current.instance != stage.instance:
            self._inner.release()  # its launches ended with the previous stage
            self._retired.append(self._inner)
            self._inner = self._made_for(stage.instance, self._plan)
        self._provision(index, stage)

    def _resize_in_place(self, index: int, stage: Stage) -> None:
        """Shrink (release the idle nodes cheapest to let go) or grow (provision the missing
        nodes only) the cluster held now to stage ``index``'s node count."""
        held = len(self._held.cluster)
        gpus = stage.instance.gpus
        spares = self._launch_seconds is not None
        if stage.nodes < held:
            released = self._held.shrink(stage.nodes, self.now(), self.billing, gpus, spares)
            if released < held - stage.nodes:
                self.notes.append(
                    f"stage {index}: {held - stage.nodes - released} node(s) still busy, kept"
                )
        self._cluster = stage
        self._held.join(index)
        if stage.nodes > held:
            missing = stage.nodes - held - self._held.take_back(stage.nodes - held, self.now())
            if missing:
                self._add_nodes(index, stage, missing)
        _logger.info(
            "stage %d: %d → %d × %s in place",
            index,
            held,
            len(self._held.nodes),
            stage.instance.instance_type,
        )

    def _provision(self, index: int, stage: Stage) -> None:
        self._cluster = stage
        self._add_nodes(index, stage, stage.nodes)

    def _add_nodes(self, index: int, stage: Stage, count: int) -> None:
        """Provision ``count`` nodes of ``stage``'s instance type: one new lease."""
        queue_s, boot_s = self._delays(self._provisioned, stage)
        for name, value in (("queue_s", queue_s), ("boot_s", boot_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"provisioning delay {name}={value!r} must be finite and >= 0.")
        self._provisioned += 1
        lease = Lease(index, stage.instance, count, self.now(), queue_s, boot_s, None, (index,))
        first = len(self._held.nodes)
        for number, node in enumerate(self._held.add(lease, stage.instance.gpus), first):
            node.reclaim_at = self._reclaim_at(number, node.ready_at, stage)
        _logger.info(
            "stage %d: %d × %s provisioned (queue %.0f s, boot %.0f s)",
            index,
            count,
            stage.instance.instance_type,
            queue_s,
            boot_s,
        )

    def _close_lease(self) -> None:
        self._held.release_all(self.now())

    def _fit(self, workers: int) -> None:
        """Widen the current cluster when a launch can never fit on it (a re-plan gave the
        trials more workers than the stage's cluster holds)."""
        stage = self._cluster
        assert stage is not None
        per_node = stage.instance.gpus
        if workers <= per_node or (workers % per_node == 0 and workers // per_node <= stage.nodes):
            return
        if workers > per_node and workers % per_node:
            raise ValueError(
                f"a launch of {workers} workers spans nodes of {per_node} GPUs "
                f"({stage.instance.instance_type}); it needs a multiple of {per_node}."
            )
        nodes = nodes_for(1, workers, per_node)
        wider = Stage(stage.n_trials, stage.resource, workers, stage.instance, nodes)
        self.notes.append(
            f"stage {self._stage}: a launch of {workers} workers does not fit {stage.nodes} × "
            f"{stage.instance.instance_type}; provisioning {nodes} nodes instead"
        )
        self._close_lease()
        self._provision(self._stage, wider)

    def _pump(self) -> None:
        """Start queued launches, in order, that the placement controller finds room for."""
        if not self._queue or not self._held.nodes:
            return
        stage = self._cluster
        assert stage is not None
        per_node = stage.instance.gpus
        for handle in list(self._queue):
            launch = self._launches[handle]
            nodes = self._place(launch.spec.workers, per_node)
            if nodes is None:
                continue
            self._queue.remove(handle)
            launch.nodes = nodes
            used = launch.spec.workers // len(nodes)
            for node in nodes:
                node.free -= used
            try:
                launch.inner = self._inner.start(launch.spec)
                launch.backend = self._inner
            except BaseException:
                self._free_nodes(launch)
                raise

    def _place(self, workers: int, per_node: int) -> tuple[Node, ...] | None:
        """The nodes a trial of ``workers`` runs on now, or ``None`` if there is no room."""
        now = self.now()
        allowed = math.inf
        if self._launch_seconds is not None:
            allowed = now + self._launch_seconds(self._stage)
        # The cluster's own nodes first, then the spares whose paid time the launch fits.
        up = [
            node
            for node in sorted(self._held.nodes, key=lambda n: n.spare)
            if now >= node.ready_at and (not node.spare or allowed <= node.spare_until)
        ]
        if workers > per_node:
            count, _ = split_across_nodes(workers, per_node)
            idle = [node for node in up if node.free == per_node]
            return tuple(idle[:count]) if len(idle) >= count else None
        shape = ClusterShape(1, per_node)
        nodes = [
            OpenCluster(str(i), shape, node.free) for i, node in enumerate(up) if node.free > 0
        ]
        placed = place({"trial": workers}, per_node, open_clusters=nodes)
        if placed.new_clusters:
            return None
        return (up[int(placed.slots["trial"].cluster)],)

    def _expire_spares(self) -> None:
        """Release the idle spares whose paid time has ended."""
        if self._cluster is not None:
            self._held.expire(self.now(), self._cluster.instance.gpus)

    def _free_nodes(self, launch: _Launch) -> None:
        if launch.freed:
            return
        launch.freed = True
        if not launch.nodes:
            return
        used = launch.spec.workers // len(launch.nodes)
        for node in launch.nodes:
            if self._held.holds(node):  # else it was released since
                node.free += used
