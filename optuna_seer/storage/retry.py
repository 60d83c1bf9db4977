"""Retry a call that failed for a transient reason: exponential backoff with full jitter.

A storage or S3 server that is down for a while (restarting, throttling, a network blip)
should cost a pause, not a study. :func:`call_with_retries` runs ``call`` again after
``uniform(0, min(max_s, base_s * 2**attempt))`` seconds (full jitter, so many workers that
failed together do not retry together) while ``transient(error)`` says the error may pass,
and raises :class:`StorageUnavailableError`, naming what failed, how often and for how long,
once ``attempts`` are spent. Errors that are not transient propagate at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
import random
import time
from typing import TypeVar

T = TypeVar("T")


class StorageUnavailableError(RuntimeError):
    """A storage or object store kept failing with transient errors until retries ran out."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Attributes:
        attempts: Calls in all (the first one included), >= 1.
        base_s: Upper bound of the first pause; it doubles per attempt.
        max_s: Upper bound of any one pause.

    Example:
        >>> RetryPolicy(attempts=3, base_s=0.1).pause(2, random.Random(0)) <= 0.4
        True
    """

    attempts: int = 8
    base_s: float = 0.5
    max_s: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts={self.attempts!r} must be a whole number >= 1.")
        if self.attempts < 1:
            raise ValueError(f"attempts={self.attempts!r} must be >= 1.")
        for name, value in (("base_s", self.base_s), ("max_s", self.max_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}={value!r} must be a number of seconds.")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be finite and >= 0.")

    def pause(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based): full jitter."""
        return rng.uniform(0.0, min(self.max_s, self.base_s * 2.0**attempt))


def call_with_retries(
    call: Callable[[], T],
    *,
    what: str,
    transient: Callable[[BaseException], bool],
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """``call()``, retried while it raises errors ``transient`` accepts.

    Args:
        call: The operation; it must be safe to repeat (idempotent).
        what: What it does, for the error message (no secrets: pass redacted URLs).
        transient: Whether an error may pass if retried.
        policy: Attempts and pauses; ``RetryPolicy()`` by default.
        sleep: How to wait (tests may pass a recorder).
        rng: Source of the jitter.

    Raises:
        StorageUnavailableError: Every attempt failed with a transient error.

    Example:
        >>> tries = []
        >>> def flaky() -> str:
        ...     tries.append(1)
        ...     if len(tries) < 3:
        ...         raise ConnectionError("down")
        ...     return "ok"
        >>> call_with_retries(flaky, what="read", transient=lambda e: isinstance(
        ...     e, ConnectionError), sleep=lambda s: None)
        'ok'
    """
    policy = policy or RetryPolicy()
    rng = rng or random.Random()
    began = time.monotonic()
    for attempt in range(policy.attempts):
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            if attempt == policy.attempts - 1:
                raise StorageUnavailableError(
                    f"{what} failed {policy.attempts} times over "
                    f"{time.monotonic() - began:.1f} s; last error: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            sleep(policy.pause(attempt, rng))
    raise AssertionError("unreachable")  # pragma: no cover


_TRANSIENT_STORAGE_WORDS = (
    "locked",
    "busy",
    "could not connect",
    "connection refused",
    "connection reset",
    "server closed",
    "gone away",
    "timed out",
    "timeout",
)


def is_transient_storage_error(error: BaseException) -> bool:
    """Whether an Optuna storage error may pass if retried: a locked SQLite file, an RDB
    server restarting or unreachable (SQLAlchemy ``OperationalError``, possibly wrapped in
    Optuna's ``StorageInternalError``).

    Example:
        >>> is_transient_storage_error(KeyError("no such trial"))
        False
    """
    try:
        from sqlalchemy.exc import DisconnectionError, OperationalError
    except ImportError:  # pragma: no cover - optuna's RDB storage needs SQLAlchemy
        return False
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, DisconnectionError):
            return True
        if isinstance(seen, OperationalError):
            message = str(seen).lower()
            return any(word in message for word in _TRANSIENT_STORAGE_WORDS)
        seen = seen.__cause__ or seen.__context__
    return False
