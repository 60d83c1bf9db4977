"""A resource plan for a successive-halving job: per stage, GPUs per trial and cluster shape.

Where a SEER :class:`~optuna_seer.planning.plan.Plan` says *what* to train (trials and epochs per
rung),
an :class:`ElasticPlan` says *on what*: for every rung (a *stage*), the GPUs each trial gets
and the cluster it runs on (an instance type and a number of nodes). Consecutive stages with
the same instance type and node count share one cluster (one lease, no new provisioning);
any change provisions a new cluster. RubberBand chooses these; the simulator prices them.

Placement packs a trial's workers onto as few nodes as possible: a trial of ``k <= g`` GPUs
lives on one ``g``-GPU node (``g // k`` trials per node); a larger trial takes ``k / g`` whole
nodes (so ``k`` must then be a multiple of ``g``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math
from typing import Any

from optuna_seer.planning.cost_model import RungShape
from optuna_seer.planning.plan import Plan, format_seconds
from optuna_seer.planning.prices import PriceQuote


def concurrent_trials(n_trials: int, gpus_per_trial: int, gpus_per_node: int, nodes: int) -> int:
    """Trials of ``gpus_per_trial`` GPUs that fit at once on ``nodes`` nodes (0 if none).

    Example:
        >>> concurrent_trials(10, 2, 8, 2), concurrent_trials(10, 16, 8, 3)
        (8, 1)
    """
    if gpus_per_trial <= gpus_per_node:
        fit = nodes * (gpus_per_node // gpus_per_trial)
    elif gpus_per_trial % gpus_per_node == 0:
        fit = nodes // (gpus_per_trial // gpus_per_node)
    else:
        fit = 0
    return min(n_trials, fit)


def nodes_for(concurrent: int, gpus_per_trial: int, gpus_per_node: int) -> int:
    """Fewest nodes that run ``concurrent`` trials of ``gpus_per_trial`` GPUs at once.

    Example:
        >>> nodes_for(5, 2, 8), nodes_for(2, 16, 8)
        (2, 4)
    """
    if gpus_per_trial <= gpus_per_node:
        return math.ceil(concurrent / (gpus_per_node // gpus_per_trial))
    if gpus_per_trial % gpus_per_node:
        raise ValueError(
            f"a trial of {gpus_per_trial} GPUs spans nodes of {gpus_per_node} GPUs, so it must "
            f"use a multiple of {gpus_per_node}."
        )
    return concurrent * (gpus_per_trial // gpus_per_node)


@dataclass(frozen=True)
class Stage:
    """One rung's trials, epochs and resources.

    Attributes:
        n_trials: Trials trained in this stage.
        resource: Cumulative epochs every trial has at the stage's end.
        gpus_per_trial: Data-parallel workers (GPUs) per trial.
        instance: The instance type (and its price) of the stage's cluster.
        nodes: Instances in the stage's cluster.
    """

    n_trials: int
    resource: int
    gpus_per_trial: int
    instance: PriceQuote
    nodes: int

    def __post_init__(self) -> None:
        for name in ("n_trials", "resource", "gpus_per_trial", "nodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"stage {name}={value!r} must be a whole number >= 1.")
        if not isinstance(self.instance, PriceQuote):
            raise TypeError(f"stage instance={self.instance!r} must be a PriceQuote.")
        if self.concurrent_trials < 1:
            raise ValueError(
                f"a stage of {self.nodes} × {self.instance.instance_type} "
                f"({self.instance.gpus} GPUs each) cannot place a trial of "
                f"{self.gpus_per_trial} GPUs; use a count <= {self.instance.gpus} or a multiple "
                f"of it with enough nodes."
            )

    @property
    def gpus(self) -> int:
        """GPUs provisioned (billed) during the stage."""
        return self.nodes * self.instance.gpus

    @property
    def concurrent_trials(self) -> int:
        return concurrent_trials(self.n_trials, self.gpus_per_trial, self.instance.gpus, self.nodes)

    @property
    def waves(self) -> int:
        return math.ceil(self.n_trials / self.concurrent_trials)

    @property
    def cluster(self) -> tuple[PriceQuote, int]:
        """What identifies the cluster: stages with equal clusters share one lease."""
        return (self.instance, self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_trials": self.n_trials,
            "resource": self.resource,
            "gpus_per_trial": self.gpus_per_trial,
            "instance": self.instance.to_dict(),
            "nodes": self.nodes,
        }


@dataclass(frozen=True)
class ElasticPlan:
    """Stages run back to back; survivors shrink and epochs grow from stage to stage.

    Example:
        >>> q = PriceQuote("gpu1", "V100", 1, 3.0)
        >>> plan = ElasticPlan((Stage(4, 1, 1, q, 4), Stage(2, 3, 2, q, 4)))
        >>> [s.concurrent_trials for s in plan.stages], plan.max_gpus
        ([4, 2], 4)
    """

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("an ElasticPlan needs at least one stage.")
        for index, (before, after) in enumerate(zip(self.stages, self.stages[1:]), start=1):
            if after.resource <= before.resource or after.n_trials > before.n_trials:
                raise ValueError(
                    f"stage {index} ({after.n_trials} trials to {after.resource} epochs) does "
                    f"not follow stage {index - 1} ({before.n_trials} trials to "
                    f"{before.resource} epochs): survivors must shrink and epochs grow."
                )

    @property
    def max_gpus(self) -> int:
        return max(s.gpus for s in self.stages)

    def rung_shapes(self) -> tuple[RungShape, ...]:
        return tuple(RungShape(s.n_trials, s.resource, s.gpus_per_trial) for s in self.stages)

    def replace_stage(self, index: int, stage: Stage) -> ElasticPlan:
        return ElasticPlan((*self.stages[:index], stage, *self.stages[index + 1 :]))

    @classmethod
    def uniform(
        cls,
        n_trials: Sequence[int],
        resources: Sequence[int],
        gpus_per_trial: Sequence[int],
        instance: PriceQuote,
        nodes: Sequence[int],
    ) -> ElasticPlan:
        """Stages on one instance type from parallel lists."""
        return cls(
            tuple(
                Stage(n, e, k, instance, m)
                for n, e, k, m in zip(n_trials, resources, gpus_per_trial, nodes)
            )
        )

    @classmethod
    def from_seer(cls, plan: Plan, instance: PriceQuote) -> ElasticPlan:
        """The resources a SEER plan uses, on ``instance`` nodes (for simulating it)."""
        return cls(
            tuple(
                Stage(
                    r.n_trials,
                    r.resource,
                    r.gpus_per_trial,
                    instance,
                    nodes_for(r.concurrent_trials, r.gpus_per_trial, instance.gpus),
                )
                for r in plan.rungs
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [s.to_dict() for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ElasticPlan:
        try:
            return cls(
                tuple(
                    Stage(
                        n_trials=int(s["n_trials"]),
                        resource=int(s["resource"]),
                        gpus_per_trial=int(s["gpus_per_trial"]),
                        instance=PriceQuote.from_dict(s["instance"]),
                        nodes=int(s["nodes"]),
                    )
                    for s in data["stages"]
                )
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an ElasticPlan dict ({exc}).") from None

    def table(self, starts: Sequence[float] = (), ends: Sequence[float] = ()) -> str:
        """The plan as a text table; ``starts``/``ends`` (seconds) add timing columns."""
        columns = ["stage", "trials", "epochs", "GPUs/trial", "at once", "waves", "cluster"]
        if starts:
            columns += ["start", "end"]
        rows = []
        for index, s in enumerate(self.stages):
            row = [
                str(index),
                str(s.n_trials),
                str(s.resource),
                str(s.gpus_per_trial),
                str(s.concurrent_trials),
                str(s.waves),
                f"{s.nodes}×{s.instance.instance_type} ({s.gpus} GPUs, {s.instance.market})",
            ]
            if starts:
                row += [format_seconds(starts[index]), format_seconds(ends[index])]
            rows.append(row)
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)
