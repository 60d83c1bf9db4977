"""Spare nodes: nodes a shrink gives up, kept working until their paid time ends.

Under coarse billing (per hour) a node's hour is paid once started. When a stage shrinks
the cluster, the nodes it no longer needs are paid up to the end of their current paid hour
whether they are released now or then. So instead of releasing them at the stage's start
(the node-lease model without spares), a shrink keeps them as *spares* until just before
that paid time ends: a spare runs the stage's trials (any later stage's too) as long as a
launch is expected to end before its paid time does, and a later stage that grows the
cluster takes spares back before it provisions new nodes (no queue, no boot). A spare is
released at its paid time's end (:data:`RELEASE_BEFORE_S` before it), or when the cluster
changes instance type, or at the end of the job; so it never costs more than the shrink
that made it. The static cluster never shrinks: spares only help plans that do.

Both the simulator (:mod:`~optuna_seer.planning.node_leases`) and the executor
(``StagedCluster``) use the same rules: :func:`launch_estimate` (a launch's mean time with a
straggler margin) decides whether a launch fits in a spare's paid time; the simulator
counts waves with :func:`spare_waves`. Pure: standard library and numpy only.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from optuna_seer.planning.billing import BillingRule
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.stage_plan import Stage

Array = npt.NDArray[np.float64]

__all__ = [
    "MARGIN_SIGMAS",
    "RELEASE_BEFORE_S",
    "launch_estimate",
    "paid_until",
    "spare_slots",
    "spare_waves",
]

MARGIN_SIGMAS = 2.0
"""A launch fits a spare if its mean time plus this many standard deviations (of a trial's
mean epoch time) ends before the spare's paid time does."""
RELEASE_BEFORE_S = 1.0
"""A spare is released this many seconds before its paid time ends."""


def launch_estimate(profile: Profile, stage: Stage, epochs: int) -> float:
    """Seconds one launch of ``stage`` (``epochs`` epochs) is allowed on a spare: start-up
    plus epochs at the profile's mean, slowed by its contention at the stage's trials at
    once, plus :data:`MARGIN_SIGMAS` standard deviations of the epochs' straggler spread.

    Example:
        >>> from optuna_seer.planning.prices import PriceQuote
        >>> q = PriceQuote("gpu1", "V100", 1, 3.6)
        >>> prof = Profile(epoch_seconds=600, scaling="linear", epoch_cv=0.0, startup_seconds=60)
        >>> launch_estimate(prof, Stage(9, 3, 1, q, 3), 2)
        1260.0
    """
    k = stage.gpus_per_trial
    epochs = max(epochs, 1)
    work = epochs * profile.epoch_seconds_on(k)
    margin = MARGIN_SIGMAS * profile.cv_on(k) / math.sqrt(epochs)
    contention = profile.contention_on(stage.concurrent_trials)
    return (profile.startup_on(k) + work * (1.0 + margin)) * contention


def paid_until(started_at: float, now: float, billing: BillingRule) -> float:
    """When a node whose lease started at ``started_at`` should be released, at the latest,
    to pay no more than it has paid by ``now``.

    Example:
        >>> paid_until(100.0, 1900.0, BillingRule.parse("per-hour"))
        3699.0
    """
    held = max(now - started_at, 0.0)
    return started_at + billing.billed_seconds(held) - RELEASE_BEFORE_S


def spare_slots(count: Array, gpus_per_node: int, gpus_per_trial: int) -> Array:
    """Trials at once that ``count`` spare nodes hold (a trial wider than a node needs
    that many whole spares).

    Example:
        >>> spare_slots(np.array([3.0, 5.0]), 4, 2).tolist()
        [6.0, 10.0]
        >>> spare_slots(np.array([5.0]), 1, 2).tolist()
        [2.0]
    """
    if gpus_per_trial <= gpus_per_node:
        return np.asarray(count * (gpus_per_node // gpus_per_trial), dtype=float)
    return np.floor(count / (gpus_per_trial // gpus_per_node))


def spare_waves(n_trials: int, concurrent: int, slots: Array, runs: Array, max_extra: int) -> Array:
    """Waves a stage of ``n_trials`` takes with ``concurrent`` trials at once on its own
    nodes plus spares: column ``j`` of ``slots``/``runs`` (samples × groups) holds trials at
    once on a group of spares and how many launches in a row fit its paid time. At most
    ``max_extra`` trials at once run on spares (the backend's slots).

    Example:
        >>> # 27 trials, 14 at once, 13 spares that fit one launch: one wave instead of two
        >>> spare_waves(27, 14, np.array([[13.0]]), np.array([[1.0]]), 13).tolist()
        [1.0]
    """
    samples = slots.shape[0]
    done = np.zeros(samples)
    waves = np.zeros(samples)
    for wave in range(math.ceil(n_trials / concurrent)):
        extra = np.minimum((slots * (runs > wave)).sum(axis=1), max_extra)
        running = done < n_trials
        waves = waves + running
        done = done + running * (concurrent + extra)
    return waves
