"""What RubberBand plans for: the job, the problem (profile, cloud, deadline), the result.

The search itself is :mod:`optuna_seer.planning.rubberband`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

from optuna_seer.planning.budget import MAX_SECONDS, check_price_per_hour
from optuna_seer.planning.checks import number
from optuna_seer.planning.plan import check_halving, format_seconds
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.seer import (
    check_job_scale,
    rung_resources,
)
from optuna_seer.planning.simulator import CloudModel, PlanEvaluator, PlanStats
from optuna_seer.planning.stage_plan import (
    MAX_GPUS,
    MAX_TRIALS,
    ElasticPlan,
)


@dataclass(frozen=True)
class SuccessiveHalvingJob:
    """A successive-halving job: trials and cumulative epochs per rung.

    Example:
        >>> job = SuccessiveHalvingJob.geometric(81, 3, 27)
        >>> job.n_trials, job.resources
        ((81, 27, 9, 3), (1, 3, 9, 27))
    """

    n_trials: tuple[int, ...]
    resources: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.n_trials or len(self.n_trials) != len(self.resources):
            raise ValueError(
                f"n_trials={self.n_trials!r} and resources={self.resources!r} must be non-empty "
                "and of equal length (one entry per rung)."
            )
        for name, values in (("n_trials", self.n_trials), ("resources", self.resources)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"{name}={values!r:.80} must be whole numbers >= 1.")
        if self.n_trials[0] > MAX_TRIALS:
            raise ValueError(
                f"n_trials={self.n_trials[0]} configurations must be at most {MAX_TRIALS:,}."
            )
        check_halving(self.n_trials, self.resources)

    @classmethod
    def geometric(
        cls, n_configs: int, reduction_factor: int, max_epochs: int, min_resource: int = 1
    ) -> SuccessiveHalvingJob:
        """``n_configs`` configurations, keeping ``1/η`` per rung, the finalists to ``max_epochs``
        (as many rungs as fit between ``min_resource`` and ``max_epochs``)."""
        for name, value, low in (
            ("n_configs", n_configs, 1),
            ("reduction_factor", reduction_factor, 2),
            ("max_epochs", max_epochs, 1),
            ("min_resource", min_resource, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be a whole number >= {low}.")
        rungs = 1
        while (
            reduction_factor**rungs <= n_configs
            and rung_resources(max_epochs, reduction_factor, rungs + 1, min_resource) is not None
        ):
            rungs += 1
        resources = rung_resources(max_epochs, reduction_factor, rungs, min_resource)
        if resources is None:
            raise ValueError(f"min_resource={min_resource} exceeds max_epochs={max_epochs}.")
        trials = tuple(math.ceil(n_configs / reduction_factor**r) for r in range(rungs))
        return cls(trials, resources)


@dataclass(frozen=True)
class PlanningProblem:
    """Everything RubberBand plans against.

    Args:
        job: Trials and epochs per rung.
        profile: The trial's timings (epoch time, scaling, spread, start-up).
        instances: Instance types (with prices) the plan may use; one accelerator model.
        deadline_s: The completion-time target, seconds.
        cloud: Provisioning delays, billing and data costs.
        max_gpus: Quota: most GPUs provisioned at once.
        quantile: ``P(JCT <= deadline)`` the plan must reach (0.95: the p95 meets it).
        samples: Monte Carlo samples per evaluation.
        seed: Random seed (same seed, same plan).
        min_marginal_speedup: GPU counts whose extra GPUs add less than this fraction of one
            GPU's throughput are never considered.
        max_dearer_share: The plan replaces the best static cluster only if it is dearer
            than it in at most this share of the simulated samples (paired: the same random
            draws); ``None``: ``1 − quantile``, so at p95 the plan is never dearer; ``1.0``:
            the lower mean cost alone decides.
    """

    job: SuccessiveHalvingJob
    profile: Profile
    instances: tuple[PriceQuote, ...]
    deadline_s: float
    cloud: CloudModel = field(default_factory=CloudModel)
    max_gpus: int = 64
    quantile: float = 0.95
    samples: int = 400
    seed: int = 0
    min_marginal_speedup: float = 0.05
    max_dearer_share: float | None = None

    def __post_init__(self) -> None:
        share = self.max_dearer_share
        if share is not None and (
            isinstance(share, bool)
            or not isinstance(share, (int, float))
            or not 0.0 <= share <= 1.0
        ):
            raise ValueError(f"max_dearer_share={share!r} must be in [0, 1], or None.")
        if not self.instances:
            raise ValueError("instances is empty; give at least one PriceQuote.")
        number(self.deadline_s, "deadline_s", positive=True)
        if self.deadline_s > MAX_SECONDS:
            raise ValueError(
                f"deadline_s={self.deadline_s!r} must be at most {MAX_SECONDS:.0e} s "
                "(about 317,000 years)."
            )
        for quote in self.instances:
            # Free instances leave the cost nothing to minimise; huge prices overflow it.
            check_price_per_hour(
                quote.dollars_per_hour, f"dollars_per_hour of {quote.instance_type}"
            )
        if isinstance(self.max_gpus, bool) or not isinstance(self.max_gpus, int):
            raise TypeError(f"max_gpus={self.max_gpus!r} must be an int.")
        if not 1 <= self.max_gpus <= MAX_GPUS:
            raise ValueError(f"max_gpus={self.max_gpus} must be from 1 to {MAX_GPUS:,}.")
        small = [q.instance_type for q in self.instances if q.gpus > self.max_gpus]
        if len(small) == len(self.instances):
            raise ValueError(
                f"max_gpus={self.max_gpus} is below the GPUs of every instance type ({small})."
            )
        if not (0.0 < self.quantile <= 1.0):
            raise ValueError(f"quantile={self.quantile!r} must lie in (0, 1].")
        if not (0.0 < self.min_marginal_speedup <= 1.0):
            raise ValueError(
                f"min_marginal_speedup={self.min_marginal_speedup!r} must be in (0, 1]."
            )
        check_job_scale(
            self.profile.startup_on(1),
            self.profile.epoch_seconds_on(1),
            self.job.resources[-1],
        )

    @property
    def dearer_share(self) -> float:
        """The most samples (a share) in which the plan may cost more than the static one."""
        if self.max_dearer_share is None:
            return max(0.0, 1.0 - self.quantile)
        return float(self.max_dearer_share)

    def evaluator(self) -> PlanEvaluator:
        return PlanEvaluator(self.profile, self.cloud, self.samples, self.seed, self.quantile)


@dataclass(frozen=True)
class RubberBandResult:
    """The chosen plan, its simulation, and the static baseline it was compared with."""

    plan: ElasticPlan
    stats: PlanStats
    static_plan: ElasticPlan | None
    static_stats: PlanStats | None
    deadline_s: float
    quantile: float
    evaluations: int

    def summary(self) -> str:
        lines = [
            f"RubberBand plan: cost ${self.stats.cost:,.2f} (mean), "
            f"p{round(self.quantile * 100)} time {format_seconds(self.stats.jct_quantile)} "
            f"of {format_seconds(self.deadline_s)} deadline"
        ]
        if self.static_stats is not None:
            ratio = (
                f"{self.static_stats.cost / self.stats.cost:.2f}× the plan"
                if self.stats.cost > 0
                else "the plan costs nothing"
            )
            lines.append(f"best static cluster: ${self.static_stats.cost:,.2f} ({ratio})")
        return "\n".join(lines)
