"""How SEER ranks trials at a rung's end, and how it picks the best finalist.

A trial's *rung score* is the value it reported at the rung's end (the first step at or past
the rung's cumulative epochs) and the mean of the values it reported *over the rung* (every
step after the previous rung's end, up to the rung's end).

**Promotion** (:func:`rank_key`, used by :meth:`~optuna_seer.SeerPruner.decide_rung`) compares
the rung-end value, as successive halving does: the curves are still rising, and the latest
value is the best guess of where each one is going (a mean over the rung would favour fast
starters over late bloomers). Validation metrics on a finite validation set tie often (an
accuracy on ``n`` examples takes only ``n + 1`` values), and a tie broken by trial number is a
coin toss, so ties go to the higher mean over the rung: more validation evidence about the
same configuration, from epochs the rung already paid for. Only then does the lower trial
number win.

**Selection** (:func:`selection_key`, :func:`best_finalist`, what an
:class:`~optuna_seer.ElasticTuner` reports as its best trial) compares the mean over the
last rung first, then the last value. Training is over, and every finalist trained the same
epochs of the last rung; by then the curves are nearly flat, so each epoch's validation
value is one more noisy measurement of the same converged quality, and the mean over the
rung is the lower-variance estimate of it. Picking the highest single last value instead
picks, among a few close finalists, the one whose last evaluation happened to be lucky (the
winner's curse), whose model then does worse on unseen data. On the recorded benchmark
curves (``benchmarks/rung_rules.py``, ``docs/benchmarks.md``), of two of the top 10 or 20
configurations the last-rung mean picks the one with the better final test accuracy far more
often than the last value on two data sets (about 0.8 against 0.4-0.6) and, like the last
value, no better than a coin toss on the third (36 validation examples).

Ties left after both (a small validation set puts several finalists at exactly 1.0, epoch
after epoch) go to a finer-grained second metric when the training script reports one, such
as the validation loss (:mod:`optuna_seer.integration.tie_break`): on the benchmark's ``wine``
curves (36
validation examples) this lifts the selected configuration's test accuracy from 0.981-0.984
to 0.987-0.990 over 200 seeds, and changes nothing where the validation set separates the
finalists by itself (``benchmarks/rung_rules.py``). Only then does the lower trial number win.

**Promotion by the tie-break metric** (opt-in: :func:`tie_break_rank_key` and
:func:`promotion_rank`, ``SeerPruner(promote_by="tie_break")``) ranks by the second metric
the workers report with each value (``SeerCallback(tie_break="val_loss")``) at the rung's end,
before the rung-end value. Early in training a validation accuracy on a small validation set
is a coarse measurement (after one epoch many configurations tie, and one example more or
less reorders them), while the loss is continuous and moves with the whole output
distribution; the final selection still ranks by the monitored value, which is what the
user asked to maximise. On the benchmark's harder curves this lifts the selected model's test
accuracy by 0.001-0.012 over 200 seeds and moves the committed curves' cells by -0.0003
to +0.0023 (``benchmarks/rung_rules.py``); whole tuners over 30 seeds: +0.0056 on the harder
curves, -0.0006 (within noise) on the committed ones (``docs/benchmarks.md``). A trial
that reported no tie-break value at its rung end ranks after those that did.

**Curve-aware promotion** (opt-in: :func:`curve_rank_key`, ``SeerPruner(curve_prior=...)``)
ranks by the final value a :class:`~optuna_seer.planning.learning_curves.CurvePrior` predicts
from the trial's curve so far, with its uncertainty, instead of the rung-end value. On the
benchmark curves it does not beat the rule above (``benchmarks/rung_rules.py``), so it is not
the default.

In a one-rung plan there was no promotion: the values over the rung are the whole learning
curves, from the first epoch, and their mean says how fast a configuration learned as much
as where it ended. There the selection is the promotion rule (the last value first).

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
import math
import statistics

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optuna_seer.integration.keys import RungRank
from optuna_seer.integration.tie_break import tie_break_key
from optuna_seer.planning.learning_curves import CurvePrior
from optuna_seer.planning.plan import Plan

PROMOTE_BY = ("value", "tie_break")
"""What SEER's rung decisions rank by first: the monitored value (the default) or the
tie-break metric workers report with it (see the module docstring)."""

RankKey = tuple[float, ...]
SelectionKey = tuple[float, float, float, int]


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
    _, value, mean = _scored(trial, since_step, rung_end)
    return value, mean


def rung_mean(trial: FrozenTrial, since_step: int, rung_end: int) -> float:
    """The mean of ``trial``'s values over the rung, as :func:`rung_score` takes it: what
    breaks ties in the rung-end value."""
    _check(since_step, rung_end)
    return _scored(trial, since_step, rung_end)[2]


def _scored(trial: FrozenTrial, since_step: int, rung_end: int) -> tuple[int, float, float]:
    """(the step ``trial`` is scored at, its value there, the mean over the rung)."""
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
    return end, value, statistics.fmean(v for v in values if math.isfinite(v))


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


def curve_rank_key(
    trial: FrozenTrial,
    since_step: int,
    rung_end: int,
    direction: StudyDirection,
    prior: CurvePrior,
    max_epochs: int,
) -> RankKey:
    """Curve-aware promotion key, best first: the final value ``prior`` predicts from the
    trial's curve up to the rung's end (:meth:`CurvePrior.score`: the predicted mean, moved
    by the prior's ``optimism`` × its uncertainty), then the rung-end value, then the trial
    number. Opt-in (``SeerPruner(curve_prior=...)``); ``since_step`` is only checked.

    Example:
        >>> import optuna
        >>> from optuna_seer.planning.learning_curves import CurvePrior
        >>> prior = CurvePrior([[0.2, 0.5, 0.9], [0.6, 0.65, 0.7]])
        >>> bloomer = optuna.trial.create_trial(value=0.25, intermediate_values={1: 0.25})
        >>> plateau = optuna.trial.create_trial(value=0.55, intermediate_values={1: 0.55})
        >>> bloomer.number, plateau.number = 0, 1
        >>> ranked = sorted([plateau, bloomer], key=lambda t: curve_rank_key(
        ...     t, 0, 1, StudyDirection.MAXIMIZE, prior, max_epochs=3))
        >>> [t.number for t in ranked]  # rank_key would put the plateau first
        [0, 1]
    """
    if direction not in (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE):
        raise ValueError(f"direction={direction!r} must be MAXIMIZE or MINIMIZE.")
    _check(since_step, rung_end)
    end, value, _ = _scored(trial, since_step, rung_end)
    steps = [s for s in sorted(trial.intermediate_values) if 1 <= s <= min(end, max_epochs)]
    values = [trial.intermediate_values[s] for s in steps]
    kept = [(s, v) for s, v in zip(steps, values) if math.isfinite(v)]
    maximize = direction == StudyDirection.MAXIMIZE
    score = prior.score([s for s, _ in kept], [v for _, v in kept], max_epochs, maximize=maximize)
    sign = -1.0 if maximize else 1.0
    return sign * score, sign * value, trial.number


def tie_break_rank_key(
    trial: FrozenTrial, since_step: int, rung_end: int, direction: StudyDirection
) -> RankKey:
    """Promotion key by the tie-break metric, best first: its value at the step the trial is
    scored at (``inf``, last, when it reported none there), then :func:`rank_key`'s fields.

    Example:
        >>> import optuna
        >>> from optuna_seer.integration.keys import TRIAL_TIE_BREAK
        >>> def trial(number, acc, loss):
        ...     tie = {"name": "val_loss", "mode": "min", "step": 1, "value": loss}
        ...     t = optuna.trial.create_trial(
        ...         value=acc, intermediate_values={1: acc}, system_attrs={TRIAL_TIE_BREAK: tie})
        ...     t.number = number
        ...     return t
        >>> lucky, sound = trial(0, 0.70, 0.90), trial(1, 0.68, 0.55)
        >>> ranked = sorted([lucky, sound], key=lambda t: tie_break_rank_key(
        ...     t, 0, 1, StudyDirection.MAXIMIZE))
        >>> [t.number for t in ranked]  # the lower loss first, though its accuracy is lower
        [1, 0]
    """
    if direction not in (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE):
        raise ValueError(f"direction={direction!r} must be MAXIMIZE or MINIMIZE.")
    _check(since_step, rung_end)
    step, value, mean = _scored(trial, since_step, rung_end)
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    return tie_break_key(trial, step), sign * value, sign * mean, trial.number


def promotion_rank(
    trial: FrozenTrial, step: int, value: float, mean: float, maximize: bool, promote_by: str
) -> RungRank:
    """The asynchronous pruner's :data:`~optuna_seer.integration.keys.RungRank` of ``trial``
    scored at ``step`` with ``value`` and the rung's ``mean``, in the study's direction
    (compare with ``>`` to maximise): ``(value, mean)``, or with ``promote_by="tie_break"``
    the tie-break metric there (worst when none was reported), then the value.

    Raises:
        ValueError: ``promote_by`` is not one of :data:`PROMOTE_BY`.
    """
    if promote_by == "value":
        return value, mean
    if promote_by != "tie_break":
        raise ValueError(f"promote_by={promote_by!r} is not a promotion rule; valid: {PROMOTE_BY}")
    key = tie_break_key(trial, step)  # lower is better; inf when none
    return (-key if maximize else key), value


def selection_key(
    trial: FrozenTrial, since_step: int, max_epochs: int, direction: StudyDirection
) -> SelectionKey:
    """Sort key of a finalist, best first: the mean over the last rung, then the last value,
    then the tie-break metric at that step (:mod:`optuna_seer.integration.tie_break`; ``inf`` when
    the
    trial reported none), then the trial number (see the module docstring for why).

    ``since_step`` is the last promoting rung's end; 0 (a one-rung plan) puts the last value
    before the mean, as :func:`rank_key` does.

    Example:
        >>> import optuna
        >>> steady = optuna.trial.create_trial(value=0.9, intermediate_values={2: 0.9, 3: 0.9})
        >>> lucky = optuna.trial.create_trial(value=0.95, intermediate_values={2: 0.8, 3: 0.95})
        >>> steady.number, lucky.number = 0, 1
        >>> selection_key(lucky, 1, 3, StudyDirection.MAXIMIZE)  # mean over steps 2-3 first
        (-0.875, -0.95, inf, 1)
        >>> selection_key(steady, 1, 3, StudyDirection.MAXIMIZE) < _  # steady is ranked first
        True
    """
    if direction not in (StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE):
        raise ValueError(f"direction={direction!r} must be MAXIMIZE or MINIMIZE.")
    _check(since_step, max_epochs)
    step, value, mean = _scored(trial, since_step, max_epochs)
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    tie = tie_break_key(trial, step)
    if since_step == 0:
        return sign * value, sign * mean, tie, trial.number
    return sign * mean, sign * value, tie, trial.number


def rank_trials(
    trials: Iterable[FrozenTrial], since_step: int, rung_end: int, direction: StudyDirection
) -> list[FrozenTrial]:
    """``trials`` best first by :func:`rank_key` (see the module docstring for the rule)."""
    return sorted(trials, key=lambda t: rank_key(t, since_step, rung_end, direction))


def best_finalist(
    trials: Iterable[FrozenTrial], since_step: int, max_epochs: int, direction: StudyDirection
) -> FrozenTrial | None:
    """The best of ``trials`` by :func:`selection_key`, or ``None`` when none reported a value.

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
    scored = [t for t in trials if t.intermediate_values]
    if not scored:
        return None
    return min(scored, key=lambda t: selection_key(t, since_step, max_epochs, direction))


@dataclass(frozen=True)
class Promotion:
    """The rule SEER's rung decisions rank trials by (see the module docstring).

    Args:
        by: ``"value"`` (the rung-end value, the default) or ``"tie_break"`` (the tie-break
            metric at the rung end first), in both the synchronous and asynchronous modes.
        curve_prior: Synchronous decisions rank by this prior's prediction of the final value
            instead (``by`` must then be ``"value"``).

    Raises:
        ValueError: An unknown ``by``, or both rules at once.
        TypeError: ``curve_prior`` is not a :class:`CurvePrior`.
    """

    by: str = "value"
    curve_prior: CurvePrior | None = None

    def __post_init__(self) -> None:
        if self.by not in PROMOTE_BY:
            raise ValueError(f"promote_by={self.by!r} is not a promotion rule; valid: {PROMOTE_BY}")
        if self.curve_prior is not None and not isinstance(self.curve_prior, CurvePrior):
            raise TypeError(f"curve_prior={self.curve_prior!r:.60} must be a CurvePrior or None.")
        if self.by != "value" and self.curve_prior is not None:
            raise ValueError(
                f"promote_by={self.by!r} and curve_prior=... are two promotion rules; pass one."
            )

    def key_for(self, plan: Plan) -> Callable[[FrozenTrial, int, int, StudyDirection], RankKey]:
        """The synchronous decision's sort key (best first) for ``plan``'s trials."""
        prior = self.curve_prior
        if self.by == "tie_break":
            return tie_break_rank_key
        if prior is None:
            return rank_key

        def predicted(
            trial: FrozenTrial, since: int, rung_end: int, direction: StudyDirection
        ) -> RankKey:
            return curve_rank_key(trial, since, rung_end, direction, prior, plan.max_epochs)

        return predicted

    def rank(
        self, trial: FrozenTrial, step: int, value: float, mean: float, maximize: bool
    ) -> RungRank:
        """The asynchronous pruner's rank of ``trial`` at a rung end (:func:`promotion_rank`)."""
        return promotion_rank(trial, step, value, mean, maximize, self.by)
