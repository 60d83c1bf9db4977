"""What the cloud adds to a plan: provisioning delays, billing, data movement, spot risk.

:class:`CloudModel` is what :mod:`~optuna_seer.planning.simulator` prices a plan against.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.provisioning import ProvisioningModel


@dataclass(frozen=True)
class CloudModel:
    """What the cloud adds to a plan: provisioning delays, billing, data movement, spot risk.

    Args:
        queue_seconds: Mean wait for capacity before a new cluster's instances start (unbilled).
        boot_seconds: Mean instance start-up until it can run trials (billed).
        provisioning_cv: Relative spread (std/mean) of both delays.
        billing: A :class:`BillingRule` or its spec (``"exact"``, ``"per-second"``, …).
        transfer_dollars_per_gb: Paid per GB of checkpoint moved to a relaunched trial.
        storage_dollars_per_gb_month: Paid per GB-month of stored checkpoints.
        spot_interruptions_per_node_hour: Rate at which a spot node is reclaimed.
        spot_rates: ``(instance_type, interruptions per node-hour)`` pairs: a spot instance of
            that type is reclaimed at that rate instead of ``spot_interruptions_per_node_hour``.
        checkpoint_interval_epochs: Epochs between a trial's checkpoints; a preemption loses
            half an interval on average. ``0``: checkpoints only at rung ends, so it loses half
            of the launch's epochs.
        provisioning: A measured (or any) :class:`ProvisioningModel`; when given it replaces
            ``queue_seconds``/``boot_seconds``/``provisioning_cv`` (which then read as its
            means).
        node_leases: Bill per node (:mod:`~optuna_seer.planning.node_leases`: a cluster keeps
            its nodes across stages of one instance type, each node billed its whole lease
            rounded once) instead of per cluster (a resize releases the cluster whole).
            ``None``: per node when the billing rounds to more than a minute (per hour).
        spare_nodes: With per-node leases, a shrink keeps the nodes it gives up working
            until their paid time ends (:mod:`~optuna_seer.planning.spare_nodes`) instead
            of releasing them at once.

    Example:
        >>> cloud = CloudModel(queue_seconds=60, boot_seconds=120, billing="per-second")
        >>> cloud.billing.minimum_s
        60.0
    """

    queue_seconds: float = 0.0
    boot_seconds: float = 0.0
    provisioning_cv: float = 0.0
    billing: BillingRule | str = "exact"
    transfer_dollars_per_gb: float = 0.0
    storage_dollars_per_gb_month: float = 0.0
    spot_interruptions_per_node_hour: float = 0.0
    spot_rates: tuple[tuple[str, float], ...] = ()
    checkpoint_interval_epochs: int = 1
    provisioning: ProvisioningModel | None = None
    node_leases: bool | None = None
    spare_nodes: bool = True

    def __post_init__(self) -> None:
        if self.node_leases is not None and not isinstance(self.node_leases, bool):
            raise TypeError(f"node_leases={self.node_leases!r} must be True, False or None.")
        if not isinstance(self.spare_nodes, bool):
            raise TypeError(f"spare_nodes={self.spare_nodes!r} must be True or False.")
        interval = self.checkpoint_interval_epochs
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
            raise ValueError(
                f"checkpoint_interval_epochs={interval!r} must be a whole number >= 0 (0: only "
                "at rung ends)."
            )
        rates = tuple(self.spot_rates)
        for pair in rates:
            if (
                not isinstance(pair, tuple)
                or len(pair) != 2
                or not isinstance(pair[1], (int, float))
                or isinstance(pair[1], bool)
                or not (math.isfinite(pair[1]) and pair[1] >= 0)
            ):
                raise ValueError(
                    f"spot_rates entry {pair!r:.60} must be (instance_type, interruptions per "
                    "node-hour >= 0)."
                )
        object.__setattr__(self, "spot_rates", rates)
        if self.provisioning is not None:
            if not isinstance(self.provisioning, ProvisioningModel):
                raise TypeError(
                    f"provisioning={self.provisioning!r:.60} must be a ProvisioningModel."
                )
            object.__setattr__(self, "queue_seconds", self.provisioning.mean_queue_s)
            object.__setattr__(self, "boot_seconds", self.provisioning.mean_boot_s)
        for name in (
            "queue_seconds",
            "boot_seconds",
            "provisioning_cv",
            "transfer_dollars_per_gb",
            "storage_dollars_per_gb_month",
            "spot_interruptions_per_node_hour",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}={value!r} must be a number.")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}={value!r} must be >= 0 and finite.")
        object.__setattr__(self, "billing", BillingRule.parse(self.billing))

    def spot_rate(self, instance_type: str) -> float:
        """Interruptions per node-hour of a spot instance of ``instance_type``."""
        for name, rate in self.spot_rates:
            if name == instance_type:
                return float(rate)
        return self.spot_interruptions_per_node_hour

    def lost_epochs(self, launch_epochs: int) -> float:
        """Epochs a preemption loses on average, of a launch training ``launch_epochs``."""
        interval = self.checkpoint_interval_epochs or launch_epochs
        return 0.5 * min(interval, launch_epochs)

    @property
    def provisioning_model(self) -> ProvisioningModel:
        """Where a new cluster's delays are drawn from."""
        if self.provisioning is not None:
            return self.provisioning
        return ProvisioningModel(self.queue_seconds, self.boot_seconds, self.provisioning_cv)

    @property
    def billing_rule(self) -> BillingRule:
        assert isinstance(self.billing, BillingRule)
        return self.billing

    @property
    def per_node_leases(self) -> bool:
        """Whether leases are billed per node (``node_leases``, or coarse billing)."""
        if self.node_leases is not None:
            return self.node_leases
        rule = self.billing_rule
        return max(rule.increment_s, rule.minimum_s) > 60.0

    @property
    def uses_spares(self) -> bool:
        """Whether shrinks keep spare nodes (per-node leases and ``spare_nodes``)."""
        return self.per_node_leases and self.spare_nodes

    @classmethod
    def from_limits(cls, limits: ClusterLimits) -> CloudModel:
        """The cloud :func:`~optuna_seer.planning.cost_model.schedule` assumes: a fixed, billed
        delay."""
        return cls(boot_seconds=limits.provisioning_seconds)
