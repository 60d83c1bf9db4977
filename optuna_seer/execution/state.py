"""What one ElasticTuner run knows while it runs: its trials, launches, retries and notes.

The tuner, the rung runner and the resume all read and update one :class:`RunState`; the
run journal keeps what of it must survive the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
from typing import Any

from optuna_seer.execution.results import LaunchRecord, RungRecord


@dataclass
class RunState:
    """The mutable state of a run, by trial number.

    Attributes:
        t0: When the study's clock started (backend clock).
        ids: Each trial's storage id.
        params: Each trial's parameters.
        states: Each trial's state name as the tuner told Optuna (``"RUNNING"`` in play).
        resume: Each trial's last good checkpoint (``None``: from scratch).
        launches: Every finished launch, in start order.
        retries: Launches retried, by ``(trial, rung)``.
        fallbacks: Launches that resumed from an earlier checkpoint than they were given.
        notes: What the run said, in order.
        records_done: The rungs a resumed run had already finished.
        done_in_rung: Trials that already ran the rung a resumed run starts in.
        charged_gpu_s: Worker-seconds charged to the ledger so far.
        beat_at: When the driver last recorded a heartbeat.
        best_value: The best value a finished launch reported so far (for progress).
    """

    t0: float = 0.0
    ids: dict[int, int] = field(default_factory=dict)
    params: dict[int, dict[str, Any]] = field(default_factory=dict)
    states: dict[int, str] = field(default_factory=dict)
    resume: dict[int, str | None] = field(default_factory=dict)
    launches: list[LaunchRecord] = field(default_factory=list)
    retries: dict[tuple[int, int], int] = field(default_factory=dict)
    fallbacks: int = 0
    notes: list[str] = field(default_factory=list)
    records_done: list[RungRecord] = field(default_factory=list)
    done_in_rung: set[int] = field(default_factory=set)
    charged_gpu_s: float = 0.0
    beat_at: float = -math.inf
    best_value: float | None = None

    @property
    def retried(self) -> int:
        """Launches retried in all."""
        return sum(self.retries.values())

    def launches_of(self, number: int, rung: int | None = None) -> list[LaunchRecord]:
        """Trial ``number``'s finished launches (in ``rung`` only, if given)."""
        return [
            r
            for r in self.launches
            if r.trial_number == number and (rung is None or r.rung == rung)
        ]

    def with_launches(self, record: RungRecord) -> RungRecord:
        """``record`` (as stored, without launches) with its rung's finished launches."""
        index = record.planned.index
        return replace(record, launches=tuple(r for r in self.launches if r.rung == index))
