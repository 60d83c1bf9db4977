"""SEER's progress in ``study.optimize``: a ``tqdm`` bar with dollars, time left, rung, best.

Optuna's own ``show_progress_bar`` counts trials against ``n_trials`` or ``timeout``; a SEER
study ends when its plan is placed, its budget spent or its deadline near, so this bar counts
configurations against the plan and says what decides the end::

    with SeerProgress(study) as progress:
        study.optimize(objective, n_jobs=4, callbacks=[progress])

It reads the study (its ledger and trial states) every ``refresh_seconds`` in a daemon
thread, and at once when a trial ends (as an Optuna callback), so a long rung does not leave
it stale. The bar is tqdm's; the figures go to the ``optuna.optuna_seer`` logger too (INFO,
at every trial end), which ``optuna.logging.set_verbosity`` governs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math
import threading
from types import TracebackType
from typing import Any, TextIO

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from optuna_seer._logging import get_logger
from optuna_seer._optuna import storage_of, study_id_of
from optuna_seer.integration.clock import study_time
from optuna_seer.integration.dashboard import rung_reached
from optuna_seer.integration.ledger import read_ledger
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.trial_gpus import implicit_placement, placement_of
from optuna_seer.planning.plan import Plan, format_seconds

_logger = get_logger(__name__)
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class Standing:
    """Where a SEER study stands: what the bar shows."""

    finished: int
    running: int
    placed: int
    deepest_rung: int
    spent_dollars: float
    left_s: float
    best: float | None

    def postfix(self, plan: Plan) -> str:
        """The bar's text after the count.

        Example:
            >>> from optuna_seer import Budget, Workload, plan_seer
            >>> plan = plan_seer(Budget(deadline="1h", dollars=10, price_per_gpu_hour=1.0),
            ...                  Workload(epoch_seconds=60, scaling="linear", max_epochs=9))
            >>> Standing(5, 2, 7, 1, 1.234, 1800.0, 0.93).postfix(plan)
            'rung 1/2, 2 running, $1.23 of $10.00, 0:30:00 left, best 0.93'
        """
        best = "-" if self.best is None else f"{self.best:.4g}"
        return (
            f"rung {self.deepest_rung}/{len(plan.rungs) - 1}, {self.running} running, "
            f"${self.spent_dollars:,.2f} of ${plan.budget_dollars:,.2f}, "
            f"{format_seconds(max(self.left_s, 0.0))} left, best {best}"
        )


def standing_of(study: optuna.Study, plan: Plan, now: float) -> Standing:
    """Read ``study`` once: its placed configurations by state, the deepest rung any reached,
    the ledger's dollars, time left to the deadline, and the best completed value."""
    trials = study.get_trials(deepcopy=False)
    ledger = read_ledger(study, plan, now, trials)
    implicit = implicit_placement(storage_of(study), study_id_of(study))
    deepest = finished = running = placed = 0
    for trial in trials:
        placement = placement_of(trial, implicit)
        if placement is None:  # not a configuration of the plan (e.g. refused beyond it)
            continue
        placed += 1
        finished += trial.state in _FINISHED
        running += trial.state == TrialState.RUNNING
        deepest = max(deepest, rung_reached(placement, trial.last_step))
    return Standing(
        finished=finished,
        running=running,
        placed=placed,
        deepest_rung=deepest,
        spent_dollars=ledger.spent_dollars,
        left_s=plan.deadline_s - ledger.elapsed_s,
        best=_best(trials, study.direction),
    )


def _best(trials: Sequence[FrozenTrial], direction: StudyDirection) -> float | None:
    values = [
        t.value
        for t in trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    if not values:
        return None
    return max(values) if direction == StudyDirection.MAXIMIZE else min(values)


class SeerProgress:
    """A ``tqdm`` bar for a SEER study run by ``study.optimize`` (see the module docstring).

    Args:
        study: The study, whose pruner is a :class:`~optuna_seer.SeerPruner`.
        refresh_seconds: How often the bar re-reads the study between trial ends (> 0).
        disable: Passed to ``tqdm`` (``None``: off where the output is not a terminal).
        file: Where the bar is drawn (tqdm's default, standard error, if ``None``).

    Raises:
        ValueError: ``study`` has no SeerPruner, or ``refresh_seconds`` is not positive.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        refresh_seconds: float = 2.0,
        disable: bool | None = None,
        file: TextIO | None = None,
    ) -> None:
        if not isinstance(study.pruner, SeerPruner):
            raise ValueError(
                f"SeerProgress shows a SEER study; study {study.study_name!r} has pruner "
                f"{type(study.pruner).__name__}: create it with pruner=SeerPruner(...)."
            )
        if (
            isinstance(refresh_seconds, bool)
            or not isinstance(refresh_seconds, (int, float))
            or not math.isfinite(refresh_seconds)
            or refresh_seconds <= 0
        ):
            raise ValueError(f"refresh_seconds={refresh_seconds!r} must be a number > 0.")
        self._study = study
        self._pruner: SeerPruner = study.pruner
        self._refresh_s = float(refresh_seconds)
        self._disable = disable
        self._file = file
        self._bar: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: Standing | None = None
        """What the bar showed last."""

    def __enter__(self) -> SeerProgress:
        plan = self._pruner.plan
        self._bar = tqdm(
            total=plan.n_configs, desc="SEER", unit="config", disable=self._disable, file=self._file
        )
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh_loop, name="seer-progress")
        self._thread.daemon = True
        self._thread.start()
        self.refresh()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.refresh()
        if self._bar is not None:
            self._bar.close()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: a trial ended; redraw now and log the standing."""
        standing = self.refresh()
        if standing is not None:
            _logger.info(
                "trial %d %s; %s",
                trial.number,
                trial.state.name,
                standing.postfix(self._pruner.plan),
            )

    def refresh(self) -> Standing | None:
        """Re-read the study and redraw; ``None`` if the read failed (logged, never raised:
        a progress bar must not end a study)."""
        plan = self._pruner.plan
        try:
            standing = standing_of(self._study, plan, study_time(self._study, self._pruner.clock))
        except Exception as error:
            _logger.debug("SEER progress not read: %r", error)
            return None
        with self._lock:
            self.last = standing
            bar = self._bar
            if bar is not None:
                bar.total = max(plan.n_configs, standing.placed)
                bar.n = standing.finished
                bar.set_postfix_str(standing.postfix(plan), refresh=False)
                bar.refresh()
        return standing

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self.refresh()
