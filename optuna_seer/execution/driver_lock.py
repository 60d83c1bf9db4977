"""One driver per study: a lease in the study's storage, renewed by a heartbeat.

"Run the same command again" is the documented recovery of a killed driver, so starting a
command twice by mistake must not give a study two drivers (each would relaunch the other's
trials, charge them twice, and crash on trials the other finished). Before it touches the
study, :meth:`DriverLock.acquire` takes the study's lease (``seer:driver_lease``: a holder id,
host, pid, the pid's start time and the last renewal, in study time on the wall clock, see
:mod:`optuna_seer.integration.clock`, even when the run itself is simulated), and a thread
renews it every ``interval_s``.

A second driver is refused with :class:`DriverLockedError`, naming the holder, while the
holder lives: on the same host while its pid runs (checked with the pid's start time, so a
reused pid does not count), elsewhere while its lease is younger than ``ttl_s``. Once the
holder is dead (its pid gone, or no renewal for ``ttl_s``) the next driver takes the lease
over, so running the same command again after a crash still resumes at once on the same
host, and within ``ttl_s`` from another.

Optuna's storage API has no compare-and-swap, so a claim is written, then read back after
``settle_s`` (longer than any claimant takes between reading the lease free and writing its
own): of drivers that start together, only the last writer finds its own claim and runs.
A driver that finds another holder in the lease when it renews (it was taken over because
it looked dead, e.g. stopped for longer than ``ttl_s``) says so in :attr:`DriverLock.lost`;
the tuner then stops before its next rung.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import os
import socket
import threading
import time
from typing import Any
import uuid

import optuna

from optuna_seer._logging import get_logger
from optuna_seer._optuna import unwrap_storage
from optuna_seer.execution.journal import RunJournal
from optuna_seer.execution.results import StudyMismatchError
from optuna_seer.integration.clock import clock_of
from optuna_seer.worker.driver_watch import process_start_ticks

_logger = get_logger(__name__)

LEASE_TTL_SECONDS = 30.0
"""A lease not renewed for this long (study time) belongs to a dead driver."""
RENEW_SECONDS = 5.0
"""How often the holder renews its lease."""
SETTLE_SECONDS = 0.5
"""How long a claim is left before it is read back (see the module)."""


class DriverLockedError(StudyMismatchError):
    """Another driver runs this study (or took it over from this one)."""


def _host() -> str:
    try:
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()[:8]  # noqa: SIM115
    except OSError:
        boot = "-"
    return f"{socket.gethostname()}/{boot}"


@dataclass(frozen=True)
class Lease:
    """Who holds a study's lease, as stored."""

    holder: str
    host: str
    pid: int
    pid_started: int | None
    renewed_at: float
    ttl_s: float

    @classmethod
    def from_dict(cls, stored: Any) -> Lease | None:
        if not isinstance(stored, dict) or "holder" not in stored:
            return None
        started = stored.get("pid_started")
        return cls(
            holder=str(stored["holder"]),
            host=str(stored["host"]),
            pid=int(stored["pid"]),
            pid_started=None if started is None else int(started),
            renewed_at=float(stored["renewed_at"]),
            ttl_s=float(stored["ttl_s"]),
        )

    def alive(self, now: float) -> bool:
        """Whether its driver may still run at study time ``now``."""
        if self.host == _host():
            started = process_start_ticks(self.pid)
            if started is not None or os.path.isdir("/proc"):
                return started is not None and started == self.pid_started
        return now - self.renewed_at <= self.ttl_s

    def describe(self, now: float) -> str:
        return (
            f"pid {self.pid} on {self.host.partition('/')[0]}, lease renewed "
            f"{max(now - self.renewed_at, 0.0):.0f} s ago"
        )


class DriverLock:
    """The lease of one study for this driver process (see the module).

    Args:
        journal: The study's run journal (its reads and writes are retried, and it reads
            study time).
        ttl_s: After how long without renewal a lease is dead.
        interval_s: How often it is renewed (at most a third of ``ttl_s``).
        settle_s: How long a claim is left before it is read back; 0 for an in-memory
            storage (one process).
    """

    def __init__(
        self,
        journal: RunJournal,
        *,
        ttl_s: float = LEASE_TTL_SECONDS,
        interval_s: float = RENEW_SECONDS,
        settle_s: float | None = None,
    ) -> None:
        if not (ttl_s > 0 and 0 < interval_s <= ttl_s / 3):
            raise ValueError(
                f"ttl_s={ttl_s!r} and interval_s={interval_s!r}: both positive, the interval "
                "at most a third of the ttl."
            )
        self._journal = journal
        self._ttl_s = ttl_s
        self._interval_s = interval_s
        in_memory = isinstance(unwrap_storage(journal.storage), optuna.storages.InMemoryStorage)
        self._settle_s = (0.0 if in_memory else SETTLE_SECONDS) if settle_s is None else settle_s
        # Real time even when the run's clock is simulated: a lease is about live processes.
        self._now = clock_of(journal.storage).now
        self._id = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None
        """Why this driver lost the lease while running, else ``None``."""

    def _claim(self) -> dict[str, Any]:
        pid = os.getpid()
        return asdict(
            Lease(
                holder=self._id,
                host=_host(),
                pid=pid,
                pid_started=process_start_ticks(pid),
                renewed_at=self._now(),
                ttl_s=self._ttl_s,
            )
        )

    def _refuse(self, holder: Lease, now: float, what: str) -> DriverLockedError:
        name = self._journal.study.study_name
        return DriverLockedError(
            f"study {name!r} {what} another driver ({holder.describe(now)}); one study runs "
            "one driver at a time. Wait for it to finish or stop it; once its process is "
            f"gone (on another host: {holder.ttl_s:.0f} s after its last renewal) the same "
            "command takes the study over and continues it."
        )

    def acquire(self) -> None:
        """Take the study's lease, or raise :class:`DriverLockedError` naming its holder."""
        now = self._now()
        held = Lease.from_dict(self._journal.lease())
        if held is not None and held.holder != self._id and held.alive(now):
            raise self._refuse(held, now, "is being run by")
        if held is not None and held.holder != self._id:
            _logger.warning(
                "taking over study %r from a dead driver (%s)",
                self._journal.study.study_name,
                held.describe(now),
            )
        self._journal.set_lease(self._claim())
        if self._settle_s > 0:
            time.sleep(self._settle_s)
            won = Lease.from_dict(self._journal.lease())
            if won is None or won.holder != self._id:
                if won is None:
                    raise DriverLockedError(
                        f"study {self._journal.study.study_name!r}: the driver lease was "
                        "released while this driver claimed it; run the command again."
                    )
                raise self._refuse(won, self._now(), "was claimed at once by")
        self._thread = threading.Thread(target=self._renew, name="seer-driver-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                held = Lease.from_dict(self._journal.lease())
                if held is None or held.holder != self._id:
                    now = self._now()
                    self.lost = (
                        "the driver lease was released"
                        if held is None
                        else f"another driver took the study over ({held.describe(now)})"
                    )
                    _logger.error("%s; this driver stops before its next rung", self.lost)
                    return
                self._journal.set_lease(self._claim())
            except Exception as exc:  # the storage may be down for a while: retry next time
                _logger.warning("driver lease not renewed: %s", exc)

    def check(self) -> None:
        """Raise :class:`DriverLockedError` if this driver lost the lease."""
        if self.lost is not None:
            raise DriverLockedError(
                f"study {self._journal.study.study_name!r}: {self.lost}; this driver stopped."
            )

    def release(self) -> None:
        """Stop renewing and give the lease back (if it is still this driver's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._thread is None:
            return
        held = Lease.from_dict(self._journal.lease())
        if held is not None and held.holder == self._id:
            self._journal.set_lease(None)
