"""A resource plan for a successive-halving job: per stage, GPUs per trial and cluster shape.

An :class:`ElasticPlan` says, for every rung (a *stage*), what it trains (the
:class:`~optuna_seer.planning.plan.RungShape` a :class:`Stage` extends, the type SEER's
:class:`~optuna_seer.planning.plan.Rung` extends too) and the cluster it runs on (an instance
type and a number of nodes). Consecutive stages with
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

from optuna_seer.planning.budget import check_price_per_hour
from optuna_seer.planning.checks import whole
from optuna_seer.planning.plan import Plan, RungShape, check_halving, format_seconds, format_table
from optuna_seer.planning.prices import PriceQuote

MAX_TRIALS = 100_000
"""The most trials one stage (or rung) of a plan may hold: the simulator draws every one."""
MAX_GPUS = 100_000
"""The most GPUs (or slots) a plan may provision at once, and the most per trial."""


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
class Stage(RungShape):
    """One rung's :class:`RungShape` (trials, epochs, GPUs per trial) on its cluster.

    Attributes:
        instance: The instance type (and its price) of the stage's cluster.
        nodes: Instances in the stage's cluster.
    """

    instance: PriceQuote
    nodes: int

    def __post_init__(self) -> None:
        super().__post_init__()
        whole(self.nodes, "nodes", owner="Stage")
        if not isinstance(self.instance, PriceQuote):
            raise TypeError(f"stage instance={self.instance!r} must be a PriceQuote.")
        check_price_per_hour(
            self.instance.dollars_per_hour,
            f"dollars_per_hour of {self.instance.instance_type}",
            allow_zero=True,
        )
        if self.n_trials > MAX_TRIALS:
            raise ValueError(f"Stage.n_trials={self.n_trials} must be at most {MAX_TRIALS:,}.")
        for name, value in (("gpus_per_trial", self.gpus_per_trial), ("GPUs", self.gpus)):
            if value > MAX_GPUS:
                raise ValueError(
                    f"a stage's {name}={value} (nodes={self.nodes} × {self.instance.gpus}) must "
                    f"be at most {MAX_GPUS:,}."
                )
        if self.concurrent_trials < 1:
            raise ValueError(
                f"a stage of {self.nodes} × {self.instance.instance_type} "
                f"({self.instance.gpus} GPUs each) cannot place a trial of "
                f"{self.gpus_per_trial} GPUs; use a count <= {self.instance.gpus} or a multiple "
                f"of it with enough nodes."
            )

    @classmethod
    def placed(cls, rung: RungShape, instance: PriceQuote, nodes: int) -> Stage:
        """``rung``'s trials on ``nodes`` × ``instance`` (a SEER :class:`Rung` included)."""
        return cls(rung.n_trials, rung.resource, rung.gpus_per_trial, instance, nodes)

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


def _whole_number(value: object, name: str) -> int:
    """A JSON whole number (``3`` or ``3.0``) as an ``int``; anything else is refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r:.40} must be a whole number")
    return value


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
        if not self.stages or not all(isinstance(s, Stage) for s in self.stages):
            raise ValueError(
                f"an ElasticPlan needs one or more Stage objects, got {self.stages!r}."
            )
        check_halving([s.n_trials for s in self.stages], [s.resource for s in self.stages], "stage")

    @property
    def max_gpus(self) -> int:
        return max(s.gpus for s in self.stages)

    def rung_shapes(self) -> tuple[RungShape, ...]:
        """What each stage trains, without its cluster."""
        return tuple(s.shape for s in self.stages)

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
        """A SEER plan's rungs on the fewest ``instance`` nodes that run each rung's trials
        as SEER schedules them (for simulating it)."""
        return cls(
            tuple(
                Stage.placed(
                    r, instance, nodes_for(r.concurrent_trials, r.gpus_per_trial, instance.gpus)
                )
                for r in plan.rungs
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [s.to_dict() for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ElasticPlan:
        """The plan :meth:`to_dict` wrote.

        Raises:
            ValueError: Not such a dict, or a value is invalid; the message names it.
        """
        if not isinstance(data, dict) or not isinstance(data.get("stages"), list):
            raise ValueError(
                f"not an ElasticPlan dict: {data!r:.80}; it needs 'stages': a list of stages."
            )
        stages = []
        for index, raw in enumerate(data["stages"]):
            try:
                if not isinstance(raw, dict) or not isinstance(raw.get("instance"), dict):
                    raise TypeError(f"{raw!r:.80} is not a dict with an 'instance' dict")
                stages.append(
                    Stage(
                        n_trials=_whole_number(raw["n_trials"], "n_trials"),
                        resource=_whole_number(raw["resource"], "resource"),
                        gpus_per_trial=_whole_number(raw["gpus_per_trial"], "gpus_per_trial"),
                        instance=PriceQuote.from_dict(raw["instance"]),
                        nodes=_whole_number(raw["nodes"], "nodes"),
                    )
                )
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"not an ElasticPlan dict: stage {index}: {exc}") from None
        try:
            return cls(tuple(stages))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not an ElasticPlan dict: {exc}") from None

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
        return format_table(columns, rows)
