"""How long a new cluster takes: queueing (unbilled), then boot and setup (billed).

A :class:`ProvisioningModel` is either *parametric* (a mean queue and boot time with one
relative spread, log-normal: what the CLI's ``--queue``/``--boot``/``--provisioning-cv``
give) or *measured*: the ``(queue, boot + setup)`` pairs of real launches, resampled whole
(so a slow queue and a slow boot that came together stay together). The simulator draws a
new cluster's delay from it, the planner prices its boot with :attr:`mean_boot_s`, and a
replayed run draws each cluster's delay with :meth:`delay_for` (seeded).

Measured samples come from launch records with ``queue_s``, ``boot_s`` and ``setup_s``
(SkyPilot launches record them in the trial's launch records;
:func:`optuna_seer.execution.provisioning_samples.provisioning_samples` reads them back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import math
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

MAX_SAMPLES = 100_000
"""The most measured launches a model keeps."""


def lognormal(rng: np.random.Generator, mean: float, cv: float, size: int) -> Array:
    """``size`` log-normal draws with ``mean`` and relative spread ``cv`` (0: all ``mean``).

    Example:
        >>> lognormal(np.random.default_rng(0), 5.0, 0.0, 2).tolist()
        [5.0, 5.0]
    """
    if mean == 0:
        return np.zeros(size)
    if cv == 0:
        return np.full(size, float(mean))
    sigma2 = math.log1p(cv * cv)
    return np.asarray(
        rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size=size), dtype=float
    )


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}={value!r:.40} must be a number of seconds.")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} must be >= 0 and finite.")
    return float(value)


@dataclass(frozen=True)
class ProvisioningModel:
    """A new cluster's delay distribution: parametric, or measured ``samples``.

    Args:
        queue_s: Mean queueing seconds (parametric).
        boot_s: Mean boot + setup seconds (parametric).
        cv: Relative spread of both (parametric).
        samples: Measured ``(queue_s, boot_s + setup_s)`` pairs; when given, they are the
            distribution and the means above are theirs.

    Example:
        >>> m = ProvisioningModel.measured([{"queue_s": 10, "boot_s": 50, "setup_s": 20},
        ...                                 {"queue_s": 30, "boot_s": 70, "setup_s": 0}])
        >>> m.mean_queue_s, m.mean_boot_s
        (20.0, 70.0)
        >>> queue, boot = m.draw(np.random.default_rng(0), 4)
        >>> sorted(set(zip(queue.tolist(), boot.tolist()))) <= [(10.0, 70.0), (30.0, 70.0)]
        True
    """

    queue_s: float = 0.0
    boot_s: float = 0.0
    cv: float = 0.0
    samples: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        _seconds(self.queue_s, "queue_s")
        _seconds(self.boot_s, "boot_s")
        _seconds(self.cv, "cv")
        if len(self.samples) > MAX_SAMPLES:
            raise ValueError(f"{len(self.samples):,} samples: keep at most {MAX_SAMPLES:,}.")
        for index, pair in enumerate(self.samples):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise TypeError(f"sample {index}={pair!r:.60} must be (queue_s, boot_s).")
            _seconds(pair[0], f"sample {index} queue_s")
            _seconds(pair[1], f"sample {index} boot_s")

    @classmethod
    def measured(cls, records: Iterable[Mapping[str, Any]]) -> ProvisioningModel:
        """From launch records with ``queue_s``, ``boot_s`` and (optional) ``setup_s``.

        Raises:
            ValueError: No records, or one lacks ``queue_s``/``boot_s`` or holds a bad value.
        """
        pairs = []
        for index, record in enumerate(records):
            if not isinstance(record, Mapping) or "queue_s" not in record or "boot_s" not in record:
                raise ValueError(
                    f"launch record {index} ({record!r:.80}) needs queue_s and boot_s "
                    "(and may have setup_s), in seconds."
                )
            queue = _seconds(record["queue_s"], f"record {index} queue_s")
            boot = _seconds(record["boot_s"], f"record {index} boot_s")
            setup = _seconds(record.get("setup_s", 0.0), f"record {index} setup_s")
            pairs.append((queue, boot + setup))
        if not pairs:
            raise ValueError("no provisioning samples: measure some launches first.")
        return cls(
            queue_s=float(np.mean([q for q, _ in pairs])),
            boot_s=float(np.mean([b for _, b in pairs])),
            samples=tuple(pairs),
        )

    @property
    def mean_queue_s(self) -> float:
        return self.queue_s

    @property
    def mean_boot_s(self) -> float:
        return self.boot_s

    @property
    def is_measured(self) -> bool:
        return bool(self.samples)

    def draw(self, rng: np.random.Generator, size: int) -> tuple[Array, Array]:
        """``size`` (queue, boot) delays."""
        if self.samples:
            pairs = np.asarray(self.samples, dtype=float)
            rows = rng.integers(0, len(pairs), size=size)
            return pairs[rows, 0].copy(), pairs[rows, 1].copy()
        return (
            lognormal(rng, self.queue_s, self.cv, size),
            lognormal(rng, self.boot_s, self.cv, size),
        )

    def delay_for(self, seed: int, number: int) -> tuple[float, float]:
        """The ``number``-th cluster's (queue, boot) delay of a run seeded ``seed``.

        Example:
            >>> ProvisioningModel(60.0, 120.0).delay_for(0, 3)
            (60.0, 120.0)
        """
        queue, boot = self.draw(np.random.default_rng([seed, 7, number]), 1)
        return float(queue[0]), float(boot[0])

    def quantiles(self) -> dict[str, float]:
        """p50 and p95 of the total delay (queue + boot), from 4,000 seeded draws."""
        queue, boot = self.draw(np.random.default_rng(0), 4000)
        total = queue + boot
        return {
            "p50_s": float(np.quantile(total, 0.5)),
            "p95_s": float(np.quantile(total, 0.95)),
        }

    def describe(self) -> str:
        """One line: where the delays come from and their size."""
        q = self.quantiles()
        source = (
            f"{len(self.samples)} measured launches"
            if self.samples
            else f"log-normal, cv {self.cv:g}"
        )
        return (
            f"provisioning ({source}): queue {self.queue_s:.0f} s + boot {self.boot_s:.0f} s "
            f"mean, total p50 {q['p50_s']:.0f} s, p95 {q['p95_s']:.0f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue_s": self.queue_s,
            "boot_s": self.boot_s,
            "cv": self.cv,
            "samples": [list(pair) for pair in self.samples],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProvisioningModel:
        """What :meth:`to_dict` wrote (also a profile's ``provisioning`` entry).

        Raises:
            ValueError: Not such a dict; the message names what is wrong.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"provisioning={data!r:.60} must be a dict (queue_s, boot_s, …).")
        unknown = set(data) - {"queue_s", "boot_s", "cv", "samples"}
        if unknown:
            raise ValueError(
                f"provisioning has unknown keys {sorted(unknown)}; valid: queue_s, boot_s, cv, "
                "samples."
            )
        raw = data.get("samples", [])
        if not isinstance(raw, list):
            raise ValueError(f"provisioning samples={raw!r:.60} must be a list of pairs.")
        try:
            samples = tuple((float(q), float(b)) for q, b in raw)
        except (TypeError, ValueError):
            raise ValueError(
                f"provisioning samples={raw!r:.60} must be [queue_s, boot_s] pairs."
            ) from None
        if samples:
            return cls.measured({"queue_s": q, "boot_s": b} for q, b in samples)
        return cls(
            queue_s=_seconds(data.get("queue_s", 0.0), "queue_s"),
            boot_s=_seconds(data.get("boot_s", 0.0), "boot_s"),
            cv=_seconds(data.get("cv", 0.0), "cv"),
        )
