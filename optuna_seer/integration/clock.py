"""One clock for a study: the storage's, reached from each process through an estimated offset.

The deadline and the ledger compare moments written by different processes (the study's
start, each trial's placement and charges, heartbeats, a dead driver's launches in flight). A
process whose clock is off would misread them all: a driver resumed 300 s behind charges the
dead driver's launches nothing and believes it has 300 s more; a worker 120 s behind makes
every other process over-charge its trials. So every moment SEER stores is in **study time**:
the clock of the study's storage, the one thing every process shares.

Each process estimates ``offset = storage clock - local clock`` as NTP does, from one round
trip (``local before``, ``storage now``, ``local after``: the offset is the storage reading
minus the midpoint, with an error of at most half the round trip), and reads study time as
``local clock + offset``. The storage's clock is read where the storage has one:

* an RDB storage: the database's own clock (``julianday('now')`` on SQLite,
  ``clock_timestamp()`` on PostgreSQL, ``NOW(6)`` on MySQL), the same clock Optuna's RDB
  heartbeats use;
* a journal file: the file system's clock, by touching the journal file and reading back its
  modification time (an NFS server stamps it with its own clock);
* anything else (in-memory, gRPC proxy): the local clock (offset 0).

Offsets under :data:`SNAP_SECONDS` are taken as 0 (clock noise, not skew), so clocks that
agree give exactly what the local clock gives. An offset beyond :data:`MAX_SKEW_SECONDS`
means the "local clock" is a simulated one (a replay starting at 0): it is its own study
time (offset 0). The wall clock's offset is measured again every :data:`REFRESH_SECONDS`
(on ``time.monotonic``, which no clock step moves); a simulated clock's once.

A process keeps one :class:`StudyClock` per storage and clock (:func:`clock_of`): the driver's
run journal, its pruner and its sampler reading the same clock (a backend's ``now``) share
one measured offset, so whatever one of them writes the others read at the same moment. (Two
estimates of a simulated clock taken at different moments would differ by however far it
ran in between: a resumed driver 250 s ahead then charged every trial its offset again at
each rung end.)

:func:`wall_time` is the one place the package reads the wall clock (``LocalBackend.now``,
the pruner's and sampler's default clock, heartbeats); :func:`set_time_source` replaces it,
which is how the fault tests put a process minutes off without touching the system clock.
"""

from __future__ import annotations

from collections.abc import Callable
import math
import os
import threading
import time
from typing import Any
import weakref

import optuna

from optuna_seer._logging import get_logger
from optuna_seer._optuna import journal_file_of, storage_of, unwrap_storage

SNAP_SECONDS = 1.0
"""Offsets smaller than this are clock noise: study time is then the local clock itself."""
MAX_SKEW_SECONDS = 86_400.0
"""An offset beyond this is no skew but a simulated clock, which is its own study time."""
REFRESH_SECONDS = 300.0
"""How often (monotonic seconds) a process measures its wall clock's offset again."""

Clock = Callable[[], float]
_logger = get_logger(__name__)
_source: Clock = time.time
_lock = threading.Lock()


def wall_time() -> float:
    """Seconds since the epoch on this process's wall clock (see :func:`set_time_source`)."""
    return _source()


def set_time_source(source: Clock | None) -> None:
    """Read the wall clock from ``source`` from now on (``None``: ``time.time`` again).

    For simulations and fault tests: ``set_time_source(lambda: time.time() - 300)`` puts this
    process 300 s behind, as a badly synchronised machine would be.
    """
    global _source
    if source is not None and not callable(source):
        raise TypeError(f"source={source!r} must be a callable returning seconds, or None.")
    _source = time.time if source is None else source
    with _lock:
        _clocks.clear()


def is_wall_clock(clock: Clock) -> bool:
    """Whether ``clock`` is the wall clock (``time.time`` or :func:`wall_time`)."""
    return clock is time.time or clock is wall_time


def storage_time_reader(storage: optuna.storages.BaseStorage) -> Clock | None:
    """A function reading the storage's own clock, or ``None`` if it has none we can read."""
    inner = unwrap_storage(storage)
    if isinstance(inner, optuna.storages.RDBStorage):
        return _rdb_reader(inner)
    if isinstance(inner, optuna.storages.JournalStorage):
        path = journal_file_of(inner)
        return None if path is None else _file_reader(path)
    return None


def _rdb_reader(storage: optuna.storages.RDBStorage) -> Clock | None:
    import sqlalchemy

    engine = storage.engine
    queries = {
        "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
        "postgresql": "SELECT EXTRACT(EPOCH FROM clock_timestamp())",
        "mysql": "SELECT UNIX_TIMESTAMP(NOW(6))",
    }
    query = queries.get(engine.dialect.name)
    if query is None:
        return None
    statement = sqlalchemy.text(query)

    def read() -> float:
        with engine.connect() as connection:
            return float(connection.execute(statement).scalar_one())

    return read


def _file_reader(path: str) -> Clock:
    def read() -> float:
        os.utime(path)  # stamped by the file system's clock (an NFS server's own)
        return os.stat(path).st_mtime

    return read


def measure_offset(local: Clock, reader: Clock) -> float:
    """``reader``'s clock minus ``local``'s, from one round trip (NTP's estimate)."""
    before = local()
    remote = reader()
    after = local()
    return remote - (before + after) / 2


def usable_offset(offset: float) -> float:
    """``offset`` as study time uses it: 0 under :data:`SNAP_SECONDS` (noise) and beyond
    :data:`MAX_SKEW_SECONDS` (a simulated clock, its own study time).

    Example:
        >>> usable_offset(0.2), usable_offset(-300.0), usable_offset(1.7e9)
        (0.0, -300.0, 0.0)
    """
    if not math.isfinite(offset) or abs(offset) < SNAP_SECONDS or abs(offset) > MAX_SKEW_SECONDS:
        return 0.0
    return offset


class StudyClock:
    """Study time for one process and one storage: ``local() + offset`` (see the module).

    Args:
        storage: The study's storage, whose clock is the authority.
        local: This process's clock; the wall clock by default (measured again every
            :data:`REFRESH_SECONDS`), or a simulated one (measured once).
    """

    def __init__(self, storage: optuna.storages.BaseStorage, local: Clock | None = None) -> None:
        self._local: Clock = wall_time if local is None or local is time.time else local
        self._reader = storage_time_reader(storage)
        self._refresh = REFRESH_SECONDS if is_wall_clock(self._local) else math.inf
        self._offset: float | None = None
        self._measured_at = -math.inf
        self._lock = threading.Lock()

    def offset(self) -> float:
        """Study time minus this process's clock (0 when they agree within a second)."""
        with self._lock:
            if self._offset is None or time.monotonic() - self._measured_at >= self._refresh:
                self._offset = self._measure()
                self._measured_at = time.monotonic()
            return self._offset

    def _measure(self) -> float:
        if self._reader is None:
            return 0.0
        try:
            raw = measure_offset(self._local, self._reader)
        except Exception as exc:  # an unreadable clock must not stop the study
            _logger.warning("cannot read the storage's clock (%s); using this process's", exc)
            return 0.0 if self._offset is None else self._offset
        offset = usable_offset(raw)
        if offset:
            _logger.warning(
                "this process's clock is %+.1f s off the study storage's; SEER uses the "
                "storage's time for the deadline and the ledger",
                -offset,
            )
        return offset

    def now(self) -> float:
        """The study's time now."""
        return self._local() + self.offset()

    def to_study(self, local_time: float) -> float:
        """A moment on this process's clock, in study time."""
        return local_time + self.offset()

    def to_local(self, study_time: float) -> float:
        """A moment in study time, on this process's clock."""
        return study_time - self.offset()


_clocks: weakref.WeakKeyDictionary[Any, dict[Any, StudyClock]] = weakref.WeakKeyDictionary()


def clock_of(storage: optuna.storages.BaseStorage, local: Clock | None = None) -> StudyClock:
    """This process's :class:`StudyClock` for ``storage`` and ``local`` (one per pair)."""
    key: Any = wall_time if local is None or local is time.time else local
    with _lock:
        per_storage = _clocks.setdefault(storage, {})
        clock = per_storage.get(key)
        if clock is None:
            clock = per_storage[key] = StudyClock(storage, key)
        return clock


def study_time(study: optuna.Study, local: Clock | None = None) -> float:
    """The study's time now, read through ``local`` (the wall clock by default) and shifted
    onto the storage's clock by this process's one offset for that clock (:func:`clock_of`).

    A simulated clock (a backend's ``now``) gets the same shift its driver's run journal
    uses, measured once: a replay minutes off the storage is shifted like a skewed wall
    clock, one from 0 (more than a day off) is its own study time.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> abs(study_time(study) - time.time()) < 1.0
        True
        >>> study_time(study, lambda: 5.0)  # a simulated clock from 0: its own study time
        5.0
    """
    return clock_of(storage_of(study), local).now()
