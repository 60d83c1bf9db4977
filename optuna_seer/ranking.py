"""How SEER ranks trials at a rung's end, and picks the best finalist: one rule for both.

A trial's *rung score* is the value it reported at the rung's end (the first step at or past
the rung's cumulative epochs); that is what successive halving compares. Validation metrics
on a finite validation set tie often (an accuracy on ``n`` examples takes only ``n + 1``
values), and a tie broken by trial number is a coin toss. So ties go to the trial whose
values *over the rung* (every step after the previous rung's end, up to the rung's end) have
the higher mean: more validation evidence about the same configuration, from the epochs the
rung paid for, and no information the rung did not already produce. Only if that ties too
does the lower trial number win.

The same key ranks the finalists (the last rung), so the trial an
:class:`~optuna_seer.ElasticTuner` reports as best is the one a further rung would promote.

Example:
    >>> from optuna.study import StudyDirection
    >>> import optuna
    >>> a = optuna.trial.create_trial(value=0.9, intermediate_values={1: 0.5, 2: 0.8, 3: 0.9})
    >>> b = optuna.trial.create_trial(value=0.9, intermediate_values={1: 0.5, 2: 0.6, 3: 0.9})
    >>> a.number, b.number = 1, 0
    >>> ranked = rank_trials([b, a], since_step=1, rung_end=3, direction=StudyDirection.MAXIMIZE)
    >>> [t.number for t in ranked]  # both reached 0.9; trial 1 got there earlier
    [1, 0]
"""

from __future__ import annotations

from collections.abc import Iterable
import math
import statistics

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

RankKey = tuple[float, float, int]


def _check(since_step: int, rung_end: int) -> None:
    for name, value in (("since_step", since_step), ("rung_end", rung_end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}={value!r} must be an int (a cumulative epoch count).")
    if not 0 <= since_step < rung_end:
        raise ValueError(
            f"since_step={since_step} and rung_end={rung_end}: need 0 <= since_step < rung_end "
            "(the previous rung's end, 0 for the first rung, and this rung's end)."
        )


def rung_score(trial: FrozenTrial, since_step: int, rung_end: int) -> tuple[float, float]:
    """(value at the rung's end, mean of the values reported over the rung) of ``trial``.

    The rung's end is the first reported step at or past ``rung_end``; a trial stopped
    before it (a deadline cut the rung short) is scored at its last reported step. The mean
    covers the steps after ``since_step`` up to that step (only the last step when the trial
    reported nothing after ``since_step``).

    Raises:
        ValueError: ``trial`` reported nothing, or a value at the rung's end that is not
            finite; or the steps are not ``0 <= since_step < rung_end``.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(value=0.9, intermediate_values={1: 0.5, 2: 0.7, 4: 0.9})
        >>> rung_score(t, since_step=1, rung_end=3)
        (0.9, 0.8)
    """
    _check(since_step, rung_end)
    reported = sorted(trial.intermediate_values)
    if not reported:
        raise ValueError(f"trial {trial.number} reported no value; it cannot be ranked.")
    steps = [s for s in reported if s > since_step] or reported[-1:]
    at_end = [s for s in steps if s >= rung_end]
    end = at_end[0] if at_end else steps[-1]
    value = trial.intermediate_values[end]
    if not math.isfinite(value):
        raise ValueError(
            f"trial {trial.number} reported {value!r} at step {end}; SEER ranks finite values only."
        )
    # A non-finite value inside the rung (a metric undefined for one epoch) is left out.
    values = [trial.intermediate_values[s] for s in steps if s <= end]
    return value, statistics.fmean(v for v in values if math.isfinite(v))


def rank_key(
    trial: FrozenTrial, since_step: int, rung_end: int, direction: StudyDirection
) -> RankKey:
    """Sort key, best first: rung-end value, then the rung's mean value, then trial number.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(value=0.9, intermediate_values={1: 0.7, 2: 0.9})
        >>> t.number = 7
        >>> rank_key(t, 0, 2, StudyDirection.MAXIMIZE)
        (-0.9, -0.8, 7)
    """
    if direction not in (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE):
        raise ValueError(f"direction={direction!r} must be MAXIMIZE or MINIMIZE.")
    value, mean = rung_score(trial, since_step, rung_end)
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    return sign * value, sign * mean, trial.number


def rank_trials(
    trials: Iterable[FrozenTrial], since_step: int, rung_end: int, direction: StudyDirection
) -> list[FrozenTrial]:
    """``trials`` best first by :func:`rank_key` (see the module docstring for the rule)."""
    return sorted(trials, key=lambda t: rank_key(t, since_step, rung_end, direction))


def best_finalist(
    trials: Iterable[FrozenTrial], since_step: int, max_epochs: int, direction: StudyDirection
) -> FrozenTrial | None:
    """The best of ``trials`` by the last rung's rule, or ``None`` when none reported a value.

    ``since_step`` is the last promoting rung's end (0 for a one-rung plan).

    Example:
        >>> import optuna
        >>> a = optuna.trial.create_trial(value=1.0, intermediate_values={4: 0.9, 9: 1.0})
        >>> b = optuna.trial.create_trial(value=1.0, intermediate_values={4: 1.0, 9: 1.0})
        >>> a.number, b.number = 0, 1
        >>> best_finalist([a, b], 3, 9, StudyDirection.MAXIMIZE).number
        1
    """
    _check(since_step, max_epochs)
    ranked = rank_trials(
        (t for t in trials if t.intermediate_values), since_step, max_epochs, direction
    )
    return ranked[0] if ranked else None
