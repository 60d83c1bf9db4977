"""The bill of a SkyPilot run, two ways: this backend's own node-level accounting and
SkyPilot's (``sky.cost_report``), reconciled.

The executor's ledger charges what trials used: launch seconds x GPUs x one price. A cloud
bills more: whole nodes from the launch request to ``sky down``, so the idle GPUs of a partly
used node, provisioning and setup, and each instance's billing minimum (60 s on AWS and GCP).
:func:`reconcile` puts both figures of every cluster this backend launched side by side:

* the **estimate**: node-seconds (with the minimum) x the price each cluster was launched at
  (:func:`~optuna_seer.backends.skypilot.clusters.cluster_cost`), split into GPU-hours trials
  held, idle GPU-hours and boot + setup seconds;
* **SkyPilot's** ``total_cost`` of the same clusters from its cost report (its catalog price x
  the usage intervals it recorded), when the API answers.

:attr:`Bill.dollars` is the larger, what the budget guard counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
import math
import time
from typing import Any

from optuna_seer.backends.skypilot.clusters import ClusterCost

BILLING_MINIMUM_S = 60.0
"""Seconds each instance is billed at least (AWS per-second Linux billing, GCP per-second
billing: both with a one-minute minimum)."""


@dataclass(frozen=True)
class Bill:
    """What this backend's clusters cost, by its own accounting and by SkyPilot's."""

    clusters: tuple[ClusterCost, ...]
    estimated_dollars: float
    skypilot_dollars: float | None
    skypilot_note: str
    busy_gpu_hours: float
    idle_gpu_hours: float
    setup_hours: float

    @property
    def dollars(self) -> float:
        """The larger of the two figures: what a budget must hold.

        Example:
            >>> Bill((), 2.0, 2.5, "", 0.0, 0.0, 0.0).dollars
            2.5
        """
        return max(self.estimated_dollars, self.skypilot_dollars or 0.0)

    def summary(self) -> str:
        """One line for a report.

        Example:
            >>> line = Bill((), 2.0, None, "no answer", 1.0, 0.5, 0.1).summary()
            >>> line[:60]
            'bill: $2.0000 estimated (node-level: 1.00 GPU-h used by tria'
            >>> line.split("; ")[-1]
            'SkyPilot cost report: n/a (no answer)'
        """
        sky = (
            f"${self.skypilot_dollars:,.4f}"
            if self.skypilot_dollars is not None
            else f"n/a ({self.skypilot_note})"
        )
        return (
            f"bill: ${self.estimated_dollars:,.4f} estimated (node-level: "
            f"{self.busy_gpu_hours:,.2f} GPU-h used by trials, {self.idle_gpu_hours:,.2f} GPU-h "
            f"idle, {self.setup_hours:,.2f} h boot + setup, {BILLING_MINIMUM_S:.0f} s minimum "
            f"per node); SkyPilot cost report: {sky}"
        )


def skypilot_costs(records: Iterable[Any], names: Sequence[str]) -> dict[str, float]:
    """``total_cost`` of each cluster in ``names`` from ``sky.cost_report`` records (dicts,
    or objects with those attributes); clusters SkyPilot reports without a cost are left out.

    Example:
        >>> skypilot_costs([{"name": "a", "total_cost": 1.5}, {"name": "b"}], ["a", "b"])
        {'a': 1.5}
    """
    wanted = set(names)
    found: dict[str, float] = {}
    for record in records:
        name = _field(record, "name")
        cost = _field(record, "total_cost")
        if name in wanted and isinstance(cost, int | float) and math.isfinite(cost):
            found[str(name)] = found.get(str(name), 0.0) + float(cost)
    return found


def reconcile(
    clusters: Sequence[ClusterCost], skypilot: Mapping[str, float] | None, note: str = ""
) -> Bill:
    """The :class:`Bill` of ``clusters`` (this backend's accounting) beside SkyPilot's
    ``total_cost`` per cluster (``None``: the cost report did not answer; ``note`` says why).

    Example:
        >>> cost = ClusterCost("c", 1, 8, 3600.0, 8.0, 8.0, "x", idle_gpu_seconds=7200.0)
        >>> bill = reconcile([cost], {"c": 8.5})
        >>> bill.dollars, bill.idle_gpu_hours, bill.busy_gpu_hours
        (8.5, 2.0, 6.0)
    """
    estimated = sum(c.dollars for c in clusters if c.dollars is not None)
    gpu_seconds = sum(c.seconds * c.nodes * c.gpus_per_node for c in clusters)
    idle = sum(c.idle_gpu_seconds for c in clusters)
    sky_total = None
    if skypilot is not None:
        sky_total = sum(skypilot.get(c.name, 0.0) for c in clusters)
        missing = [c.name for c in clusters if c.name not in skypilot]
        if missing:
            note = f"no cost reported yet for {', '.join(missing)}"
    return Bill(
        clusters=tuple(clusters),
        estimated_dollars=estimated,
        skypilot_dollars=sky_total,
        skypilot_note=note,
        busy_gpu_hours=max(gpu_seconds - idle, 0.0) / 3600.0,
        idle_gpu_hours=idle / 3600.0,
        setup_hours=sum(c.setup_seconds for c in clusters) / 3600.0,
    )


class SkyPilotCosts:
    """SkyPilot's ``total_cost`` of named clusters, asked through ``sdk.cost_report`` and
    kept: :meth:`latest` asks again only once ``refresh_s`` have passed (a budget guard reads
    it at every step of its loop)."""

    def __init__(self, sdk: Any, refresh_s: float = 60.0) -> None:
        self._sdk = sdk
        self.refresh_s = refresh_s
        self.costs: dict[str, float] | None = None
        self.note = "not asked yet"
        self._asked_at = -math.inf

    def ask(self, names: Sequence[str]) -> None:
        """Ask SkyPilot now (``costs`` is ``None`` and ``note`` says why if it cannot say)."""
        self._asked_at = time.monotonic()
        if not names:
            self.costs, self.note = {}, ""
            return
        try:
            records = self._sdk.get(self._sdk.cost_report())
        except Exception as exc:  # an older API server, no answer: the estimate stands
            self.costs, self.note = None, f"{type(exc).__name__}: {exc}"
            return
        self.costs, self.note = skypilot_costs(records, names), ""

    def latest(self, names: Sequence[str]) -> None:
        """Ask again if the last answer is older than ``refresh_s``."""
        if time.monotonic() - self._asked_at >= self.refresh_s:
            self.ask(names)


def _field(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)
