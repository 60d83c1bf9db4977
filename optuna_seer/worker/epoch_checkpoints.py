"""Checkpoints inside a rung: every N epochs or M minutes, and on SIGTERM, so a preempted
trial loses at most the epoch it was in.

A launch trains one trial from its resume point to the end of a rung and stores
``rung-<r>.ckpt`` there. Between those, :class:`EpochCheckpoints` stores
``rung-<r>-epoch-<e>.ckpt`` in the trial's checkpoint store (sealed like every checkpoint:
:mod:`optuna_seer.worker.checkpoints`) when the schedule says so, and keeps only the newest:

* **every N epochs** (``SEER_CHECKPOINT_EVERY_EPOCHS``, default 1: every epoch) and/or
  **every M minutes** (``SEER_CHECKPOINT_EVERY_MINUTES``) since the last stored checkpoint;
  set them in a backend's ``env=`` (``LocalBackend(slots, env=checkpoint_every_env(...))``),
  a ``LaunchSpec.env``, the driver's environment, or pass a :class:`CheckpointSchedule` to
  ``SeerCallback``;
* **on SIGTERM** (a spot node's preemption notice, a launch stopped by the executor): the
  newest epoch-end state not stored yet is stored before the process exits
  (:meth:`EpochCheckpoints.flush`).

A launch of rung ``r`` (a retry after a preemption, or after the driver restarted) resumes
from the newest such checkpoint of rung ``r`` when there is one (it is always ahead of the
rung-end checkpoint the executor names): :func:`newest_epoch_checkpoint`. Once the rung-end
checkpoint is stored, the rung's epoch checkpoints are deleted.

Example:
    >>> schedule = CheckpointSchedule(every_epochs=2)
    >>> schedule.due(epochs=1, seconds=600.0), schedule.due(epochs=2, seconds=1.0)
    (False, True)
    >>> epoch_checkpoint_name(3, 17)
    'rung-3-epoch-17.ckpt'
    >>> newest_epoch_checkpoint(["rung-2.ckpt", "rung-3-epoch-9.ckpt", "rung-3-epoch-12.ckpt"], 3)
    ('rung-3-epoch-12.ckpt', 12)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
import contextlib
from dataclasses import dataclass
import math
import os
from pathlib import Path
import re
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING

from optuna_seer._logging import get_logger

if TYPE_CHECKING:
    from optuna_seer.worker.context import TrialContext

_logger = get_logger(__name__)

ENV_CHECKPOINT_EVERY_EPOCHS = "SEER_CHECKPOINT_EVERY_EPOCHS"
ENV_CHECKPOINT_EVERY_MINUTES = "SEER_CHECKPOINT_EVERY_MINUTES"
_EPOCH_CHECKPOINT = re.compile(r"rung-(\d+)-epoch-(\d+)\.ckpt")


def epoch_checkpoint_name(rung: int, epoch: int) -> str:
    """The name of the checkpoint stored in ``rung`` after cumulative epoch ``epoch``."""
    return f"rung-{rung}-epoch-{epoch}.ckpt"


def newest_epoch_checkpoint(names: list[str], rung: int) -> tuple[str, int] | None:
    """``(name, epoch)`` of the newest epoch checkpoint of ``rung`` among ``names``, if any."""
    found = [
        (int(m.group(2)), name)
        for name in names
        if (m := _EPOCH_CHECKPOINT.fullmatch(name)) and int(m.group(1)) == rung
    ]
    if not found:
        return None
    epoch, name = max(found)
    return name, epoch


def epoch_checkpoints_of(names: list[str], rung: int) -> list[str]:
    """Every epoch checkpoint of ``rung`` among ``names``."""
    return [
        name
        for name in names
        if (m := _EPOCH_CHECKPOINT.fullmatch(name)) and int(m.group(1)) == rung
    ]


@dataclass(frozen=True)
class CheckpointSchedule:
    """When a launch stores a checkpoint inside a rung: after ``every_epochs`` epochs or
    ``every_minutes`` minutes since the last one (either; ``None``: not by that measure).

    Raises:
        ValueError: A bound is not a positive number, or both are ``None``.
    """

    every_epochs: int | None = 1
    every_minutes: float | None = None

    def __post_init__(self) -> None:
        epochs, minutes = self.every_epochs, self.every_minutes
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)):
            raise ValueError(f"every_epochs={epochs!r} must be a whole number >= 1 or None.")
        if epochs is not None and epochs < 1:
            raise ValueError(f"every_epochs={epochs!r} must be a whole number >= 1 or None.")
        if minutes is not None and (
            isinstance(minutes, bool)
            or not isinstance(minutes, (int, float))
            or not math.isfinite(minutes)
            or minutes <= 0
        ):
            raise ValueError(f"every_minutes={minutes!r} must be a number of minutes > 0 or None.")
        if epochs is None and minutes is None:
            raise ValueError(
                "a CheckpointSchedule needs every_epochs or every_minutes (e.g. every_epochs=1)."
            )

    def due(self, epochs: int, seconds: float) -> bool:
        """Whether to store now, ``epochs`` epochs and ``seconds`` after the last checkpoint."""
        if self.every_epochs is not None and epochs >= self.every_epochs:
            return True
        return self.every_minutes is not None and seconds >= 60.0 * self.every_minutes

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CheckpointSchedule:
        """The schedule ``SEER_CHECKPOINT_EVERY_EPOCHS`` / ``_MINUTES`` ask for (default: every
        epoch; with only minutes set, by minutes only).

        Example:
            >>> CheckpointSchedule.from_env({"SEER_CHECKPOINT_EVERY_MINUTES": "5"})
            CheckpointSchedule(every_epochs=None, every_minutes=5.0)
        """
        env = os.environ if environ is None else environ
        raw_epochs = env.get(ENV_CHECKPOINT_EVERY_EPOCHS) or None
        raw_minutes = env.get(ENV_CHECKPOINT_EVERY_MINUTES) or None
        try:
            epochs = int(raw_epochs) if raw_epochs is not None else None
            minutes = float(raw_minutes) if raw_minutes is not None else None
        except ValueError:
            raise ValueError(
                f"{ENV_CHECKPOINT_EVERY_EPOCHS}={raw_epochs!r} must be a whole number and "
                f"{ENV_CHECKPOINT_EVERY_MINUTES}={raw_minutes!r} a number of minutes."
            ) from None
        if epochs is None and minutes is None:
            epochs = 1
        return cls(every_epochs=epochs, every_minutes=minutes)


def checkpoint_every_env(epochs: int | None = 1, minutes: float | None = None) -> dict[str, str]:
    """The launch environment that asks workers for ``CheckpointSchedule(epochs, minutes)``.

    Example:
        >>> checkpoint_every_env(epochs=None, minutes=10)
        {'SEER_CHECKPOINT_EVERY_MINUTES': '10'}
    """
    CheckpointSchedule(epochs, minutes)  # validates
    env: dict[str, str] = {}
    if epochs is not None:
        env[ENV_CHECKPOINT_EVERY_EPOCHS] = str(epochs)
    if minutes is not None:
        env[ENV_CHECKPOINT_EVERY_MINUTES] = f"{minutes:g}"
    return env


class EpochCheckpoints:
    """Store a launch's epoch-end checkpoints on a schedule; the newest unstored one on demand.

    Call :meth:`epoch_ended` on rank 0 with a local file holding the state after each epoch
    (it is stored when the schedule says so, else kept as pending), :meth:`flush` when the
    process must stop (SIGTERM) and :meth:`rung_stored` once the rung-end checkpoint is
    stored. Ranks other than 0 do nothing.

    Args:
        ctx: The launch's context (its store, rung and key).
        schedule: Default: :meth:`CheckpointSchedule.from_env`.
        clock: Seconds, monotonic (tests pass their own).
    """

    def __init__(
        self,
        ctx: TrialContext,
        schedule: CheckpointSchedule | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.schedule = schedule if schedule is not None else CheckpointSchedule.from_env()
        self._clock = clock
        self._last_epoch: int | None = None
        self._last_at = clock()
        self._pending: tuple[Path, int] | None = None
        self.stored: list[str] = []

    def start(self, epoch: int) -> None:
        """The launch begins at cumulative epoch ``epoch`` (its resume point): the clock starts."""
        self._last_epoch = epoch
        self._last_at = self._clock()

    def due(self, epoch: int) -> bool:
        """Whether the state after ``epoch`` is to be stored (every rank may ask: it agrees)."""
        if self._last_epoch is None:
            self._last_epoch = epoch - 1
        return self.schedule.due(epoch - self._last_epoch, self._clock() - self._last_at)

    def epoch_ended(self, epoch: int, local_path: str | Path, *, store: bool) -> str | None:
        """Rank 0: ``local_path`` holds the state after ``epoch``; store it if ``store`` (what
        :meth:`due` said), else keep it pending for :meth:`flush`. Returns the stored URI."""
        if not self.ctx.is_global_zero:
            return None
        self._pending = (Path(local_path), epoch)
        if not store:
            return None
        return self.flush()

    def flush(self) -> str | None:
        """Rank 0: store the pending epoch checkpoint, if any (on SIGTERM); its URI."""
        if not self.ctx.is_global_zero or self._pending is None:
            return None
        path, epoch = self._pending
        self._pending = None
        if not path.exists():
            return None
        uri = self.ctx.store_epoch_checkpoint(path, epoch)
        self._last_epoch = epoch
        self._last_at = self._clock()
        self.stored.append(uri)
        return uri

    def rung_stored(self) -> None:
        """Rank 0: the rung-end checkpoint is stored; the rung's epoch checkpoints go."""
        if self.ctx.is_global_zero:
            self._pending = None
            self.ctx.delete_epoch_checkpoints()


class SigtermFlag:
    """Set once this process gets SIGTERM (see :func:`catch_sigterm`)."""

    def __init__(self) -> None:
        self.received = False

    def __bool__(self) -> bool:
        return self.received


@contextlib.contextmanager
def catch_sigterm() -> Iterator[SigtermFlag]:
    """Turn SIGTERM into a flag a training loop checks (then it flushes and exits).

    A second SIGTERM, or one outside the main thread's reach, ends the process as usual. The
    previous handler comes back on exit.

    Example:
        >>> with catch_sigterm() as stop:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        ...     bool(stop)
        True
    """
    flag = SigtermFlag()
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.received:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        _logger.warning("SIGTERM: storing the newest epoch checkpoint, then stopping")
        flag.received = True

    signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
