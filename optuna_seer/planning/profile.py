"""A trial's measured timings: epoch time per worker count, its spread, and start-up time.

A :class:`Profile` is what the planner and the simulator know about the user's training:

* ``epoch_seconds``: one epoch on one worker (GPU);
* ``scaling``: the speedup curve ``s(k)`` (:class:`~optuna_seer.planning.scaling.ScalingCurve`);
* ``epoch_cv``: the coefficient of variation of one epoch's time at ``k`` workers, which the
  simulator uses to sample stragglers;
* ``startup_seconds``: what (re)launching a trial costs (processes, rendezvous, checkpoint),
  a number or per worker count;
* ``checkpoint_gb``: the size of one trial's checkpoint (data-transfer and storage cost);
* ``contention``: how much slower a launch runs when ``n`` launches share the host at once
  (``{launches: slowdown}``; 1.0 on dedicated resources). On a few shared CPU cores two
  concurrent trials slow each other down, which launches measured one at a time do not see:
  :func:`measure_alone_and_together` measures it (alternating launches alone and together,
  so a shared host's drifting background load does not pass for contention).
  :meth:`Profile.workload` hands it to SEER's :class:`Workload`, so ``plan_seer`` and
  ``cost_model.schedule`` time the waves as the simulator does;
* ``provisioning`` (optional): the measured delays of bringing up a new cluster (queue,
  boot and setup of past launches, a
  :class:`~optuna_seer.planning.provisioning.ProvisioningModel`), which the commands pass to
  the simulator and the planner in place of the cloud model's constants.

``epoch_seconds``, ``scaling`` and ``contention`` are the
:class:`~optuna_seer.planning.workload.TrialTiming` that a :class:`Profile` and SEER's
:class:`Workload` both extend: one definition, checked once, copied whole between them.

Build one from measurements with :func:`fit_profile` (``optuna-seer profile`` measures a real
data-parallel run; :func:`measure_on_backend` measures the user's trial through any
:class:`~optuna_seer.backends.base.Backend`), or write the JSON by hand::

    {"epoch_seconds": 600, "scaling": "amdahl:0.95", "epoch_cv": 0.05,
     "startup_seconds": 45, "checkpoint_gb": 0.2}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
import statistics
from typing import Any

from optuna_seer.planning.checks import number, whole
from optuna_seer.planning.provisioning import ProvisioningModel
from optuna_seer.planning.scaling import ScalingCurve
from optuna_seer.planning.workload import TrialTiming, Workload

PROFILE_FORMAT = 1


@dataclass(frozen=True)
class Measurement:
    """Timings measured at one worker count.

    Attributes:
        workers: Data-parallel workers (GPUs) the trial ran on.
        epoch_seconds: Each measured epoch's wall time.
        startup_seconds: Each launch's time before its first epoch started.

    Example:
        >>> m = Measurement(2, (10.0, 11.0, 12.0), (3.0,))
        >>> m.mean_epoch_seconds, round(m.epoch_cv, 3)
        (11.0, 0.091)
    """

    workers: int
    epoch_seconds: tuple[float, ...]
    startup_seconds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        whole(self.workers, "workers")
        if not self.epoch_seconds:
            raise ValueError(f"the measurement at {self.workers} workers has no epoch times.")
        object.__setattr__(
            self,
            "epoch_seconds",
            tuple(number(t, "epoch_seconds", positive=True) for t in self.epoch_seconds),
        )
        object.__setattr__(
            self,
            "startup_seconds",
            tuple(number(t, "startup_seconds") for t in self.startup_seconds),
        )

    @property
    def mean_epoch_seconds(self) -> float:
        return statistics.fmean(self.epoch_seconds)

    @property
    def epoch_cv(self) -> float:
        """Sample standard deviation over mean (0 with a single epoch)."""
        if len(self.epoch_seconds) < 2:
            return 0.0
        return statistics.stdev(self.epoch_seconds) / self.mean_epoch_seconds


@dataclass(frozen=True)
class Profile(TrialTiming):
    """What the planner and simulator know about one trial's training: a :class:`TrialTiming`
    (``epoch_seconds`` on one worker, ``scaling``, keyword-only ``contention``) with spreads,
    start-up and checkpoint size.

    Args:
        epoch_cv: Relative spread (std/mean) of one epoch's time: a number for every worker
            count, or ``{workers: cv}`` (the nearest measured count at or below is used).
        startup_seconds: Seconds from launching a trial to its first epoch: a number, or
            ``{workers: seconds}`` (the nearest measured count at or below is used).
        checkpoint_gb: Size of one trial's checkpoint in GB.
        accelerator: The accelerator (GPU model) the profile was measured on.
        measurements: The raw measurements the profile was fitted from (empty if hand-written).
        source: Free text: how the profile was obtained.
        provisioning: Measured delays of a new cluster (``None``: not measured; the cloud
            model's constants apply).

    ``contention`` is the slowdown of every launch's start-up and epochs when several
    launches run at once on the same host; leave it at 1.0 when every launch has its own
    machine or cores.

    Example:
        >>> p = Profile(epoch_seconds=600, scaling="amdahl:0.95", epoch_cv=0.05)
        >>> round(p.epoch_seconds_on(4), 1), p.cv_on(4)
        (172.5, 0.05)
        >>> Profile(epoch_seconds=5, scaling="linear", contention={2: 1.4}).contention_on(3)
        1.4
    """

    epoch_cv: float | Mapping[int, float] = 0.0
    startup_seconds: float | Mapping[int, float] = 0.0
    checkpoint_gb: float = 0.0
    accelerator: str = ""
    measurements: tuple[Measurement, ...] = ()
    source: str = "hand-written"
    provisioning: ProvisioningModel | None = None
    _cv_table: tuple[tuple[int, float], ...] = field(default=(), init=False, repr=False)
    _startup_table: tuple[tuple[int, float], ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        number(self.checkpoint_gb, "checkpoint_gb")
        if self.provisioning is not None and not isinstance(self.provisioning, ProvisioningModel):
            raise TypeError(
                f"provisioning={self.provisioning!r:.60} must be a ProvisioningModel or None."
            )
        object.__setattr__(self, "_cv_table", _per_workers(self.epoch_cv, "epoch_cv"))
        object.__setattr__(
            self, "_startup_table", _per_workers(self.startup_seconds, "startup_seconds")
        )

    __hash__ = TrialTiming.__hash__

    def epoch_seconds_on(self, workers: int) -> float:
        """Mean seconds per epoch on ``workers`` workers: ``t1 / s(k)``, except past the
        curve's last useful count, where a measurement at exactly ``workers`` is used (a
        fitted table stops where more workers stop helping, so the planner never picks them;
        a plan that uses them anyway is predicted as measured, slower if it was).

        Example:
            >>> p = fit_profile([Measurement(1, (1.0,)), Measurement(2, (3.0,))])
            >>> p.curve.to_spec(), p.epoch_seconds_on(2)
            ({1: 1.0}, 3.0)
        """
        if workers > self.curve.max_useful_gpus:
            for measurement in self.measurements:
                if measurement.workers == workers:
                    return measurement.mean_epoch_seconds
        return super().epoch_seconds_on(workers)

    def cv_on(self, workers: int) -> float:
        """Relative spread of an epoch's time on ``workers`` workers."""
        return _lookup(self._cv_table, workers)

    def startup_on(self, workers: int) -> float:
        """Seconds from launching a trial on ``workers`` workers to its first epoch."""
        return _lookup(self._startup_table, workers)

    def workload(self, max_epochs: int, gpus_per_node: int = 8) -> Workload:
        """The deterministic :class:`Workload` for ``plan_seer``: this profile's
        :class:`TrialTiming` (contention included, so SEER times trials that share the host
        as measured) and its one-worker start-up (a :class:`Workload` has one start-up time).

        Example:
            >>> p = Profile(epoch_seconds=10, scaling="linear", contention={2: 1.5})
            >>> p.workload(max_epochs=3).contention_on(2)
            1.5
        """
        return Workload(
            **self.timing(),
            max_epochs=max_epochs,
            gpus_per_node=gpus_per_node,
            startup_seconds=self.startup_on(1),
        )

    @classmethod
    def from_workload(cls, workload: Workload, epoch_cv: float = 0.0) -> Profile:
        """A profile with ``workload``'s timing and start-up (and no checkpoint cost)."""
        return cls(
            **workload.timing(),
            epoch_cv=epoch_cv,
            startup_seconds=workload.startup_seconds,
            source="workload",
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``provisioning`` only when measured, so older readers still load a
        profile without it)."""
        spec = self.curve.to_spec()
        data: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "epoch_seconds": float(self.epoch_seconds),
            "scaling": {str(k): v for k, v in spec.items()} if isinstance(spec, dict) else spec,
            "epoch_cv": {str(k): cv for k, cv in self._cv_table},
            "startup_seconds": {str(k): t for k, t in self._startup_table},
            "checkpoint_gb": float(self.checkpoint_gb),
            "accelerator": self.accelerator,
            "source": self.source,
            "contention": {str(k): f for k, f in self.contention_by_launches.items()},
            "measurements": [
                {
                    "workers": m.workers,
                    "epoch_seconds": list(m.epoch_seconds),
                    "startup_seconds": list(m.startup_seconds),
                }
                for m in self.measurements
            ],
        }
        if self.provisioning is not None:
            data["provisioning"] = self.provisioning.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Validate and build a profile from its JSON form (hand-written ones included).

        Raises:
            ValueError: A required key is missing, an unknown key is present, or a value is
                invalid; the message names it.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a profile must be a JSON object, not {type(data).__name__}.")
        allowed = {
            "format",
            "epoch_seconds",
            "scaling",
            "epoch_cv",
            "startup_seconds",
            "checkpoint_gb",
            "accelerator",
            "source",
            "measurements",
            "contention",
            "provisioning",
        }
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"unknown profile key(s) {unknown}; valid keys: {', '.join(sorted(allowed))}."
            )
        if data.get("format", PROFILE_FORMAT) != PROFILE_FORMAT:
            raise ValueError(
                f"profile format {data['format']!r} is not supported (expected {PROFILE_FORMAT})."
            )
        for key in ("epoch_seconds", "scaling"):
            if key not in data:
                raise ValueError(f"the profile needs {key!r} (e.g. 600 and 'amdahl:0.95').")
        scaling = data["scaling"]
        if isinstance(scaling, Mapping):
            scaling = {_worker_key(k, "scaling"): v for k, v in scaling.items()}
        cv = data.get("epoch_cv", 0.0)
        if isinstance(cv, Mapping):
            cv = {_worker_key(k, "epoch_cv"): v for k, v in cv.items()}
        startup = data.get("startup_seconds", 0.0)
        if isinstance(startup, Mapping):
            startup = {_worker_key(k, "startup_seconds"): v for k, v in startup.items()}
        contention = data.get("contention", 1.0)
        if isinstance(contention, Mapping):
            contention = {_worker_key(k, "contention"): v for k, v in contention.items()}
        measurements = _measurements_from(data.get("measurements", []))
        provisioning = None
        if data.get("provisioning") is not None:
            try:
                provisioning = ProvisioningModel.from_dict(data["provisioning"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"the profile's {exc}") from None
        return cls(
            epoch_seconds=data["epoch_seconds"],
            scaling=scaling,
            epoch_cv=cv,
            startup_seconds=startup,
            checkpoint_gb=data.get("checkpoint_gb", 0.0),
            accelerator=str(data.get("accelerator", "")),
            measurements=measurements,
            source=str(data.get("source", "hand-written")),
            contention=contention,
            provisioning=provisioning,
        )


def _measurements_from(raw: Any) -> tuple[Measurement, ...]:
    """The ``measurements`` list of a profile's JSON form, checked entry by entry."""
    if not isinstance(raw, list):
        raise ValueError(
            f"measurements={raw!r:.60} must be a list of "
            '{"workers": k, "epoch_seconds": [...], "startup_seconds": [...]}.'
        )
    found = []
    for index, entry in enumerate(raw):
        where = f"measurements[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"{where}={entry!r:.60} must be an object with workers and epoch_seconds."
            )
        for key in ("workers", "epoch_seconds"):
            if key not in entry:
                raise ValueError(f"{where} lacks {key!r}; it needs workers and epoch_seconds.")
        unknown = sorted(set(entry) - {"workers", "epoch_seconds", "startup_seconds"})
        if unknown:
            raise ValueError(
                f"{where} has unknown key(s) {unknown}; valid: workers, epoch_seconds, "
                "startup_seconds."
            )
        for key in ("epoch_seconds", "startup_seconds"):
            if not isinstance(entry.get(key, []), list):
                raise ValueError(f"{where}.{key}={entry[key]!r:.60} must be a list of seconds.")
        if not entry["epoch_seconds"]:
            raise ValueError(f"{where}.epoch_seconds is empty; give at least one epoch's seconds.")
        try:
            found.append(
                Measurement(
                    workers=entry["workers"],
                    epoch_seconds=tuple(entry["epoch_seconds"]),
                    startup_seconds=tuple(entry.get("startup_seconds", [])),
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return tuple(found)


def _per_workers(value: float | Mapping[int, float], name: str) -> tuple[tuple[int, float], ...]:
    """``value`` as sorted ``(workers, value)`` pairs; a number applies to every count."""
    if not isinstance(value, Mapping):
        return ((1, number(value, name)),)
    table = []
    for workers, item in value.items():
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"{name} key {workers!r} must be a worker count >= 1.")
        table.append((workers, number(item, f"{name}[{workers}]")))
    if not table:
        raise ValueError(f"{name}={{}} is empty; give a number or {{workers: value}}.")
    return tuple(sorted(table))


def _lookup(table: tuple[tuple[int, float], ...], workers: int) -> float:
    """The value at the largest count ``<= workers`` (the smallest count's below it)."""
    chosen = table[0][1]
    for count, value in table:
        if count <= workers:
            chosen = value
    return chosen


def _worker_key(key: Any, where: str) -> int:
    message = f"{where} key {key!r} is not a worker count (a whole number >= 1)."
    try:
        count = int(key)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if count < 1 or str(count) != str(key).strip():
        raise ValueError(message)
    return count


def fit_amdahl(speedups: Mapping[int, float]) -> float:
    """Least-squares parallel fraction ``P`` of Amdahl's law for measured speedups.

    Fits ``1/s(k) = (1 - P) + P/k``, linear in ``P``; clipped to ``[0, 1]``.

    Example:
        >>> round(fit_amdahl({1: 1.0, 2: 1.9048, 4: 3.4783}), 3)
        0.95
    """
    numerator = denominator = 0.0
    for workers, speedup in speedups.items():
        if workers == 1:
            continue
        a, b = 1.0 / speedup - 1.0, 1.0 / workers - 1.0
        numerator += a * b
        denominator += b * b
    if denominator == 0:
        raise ValueError("fitting Amdahl's law needs a measurement at more than one worker.")
    return min(1.0, max(0.0, numerator / denominator))


def fit_scaling(speedups: Mapping[int, float], model: str = "table") -> ScalingCurve:
    """A scaling curve through measured speedups.

    ``model="table"`` keeps the measurements, clipped to ``s(k) <= k`` and cut at the first
    count that is no faster than the one before (more workers are then never planned);
    ``model="amdahl"`` fits :func:`fit_amdahl`.

    Example:
        >>> fit_scaling({1: 1.0, 2: 1.8, 4: 1.7}).to_spec()
        {1: 1.0, 2: 1.8}
    """
    if model == "amdahl":
        fraction = fit_amdahl(speedups)
        return ScalingCurve.parse(f"amdahl:{fraction}" if fraction > 0 else {1: 1.0})
    if model != "table":
        raise ValueError(f"model={model!r} must be 'table' or 'amdahl'.")
    table: dict[int, float] = {1: 1.0}
    for workers in sorted(speedups):
        if workers == 1:
            continue
        speedup = min(float(workers), speedups[workers])
        if speedup <= table[max(table)]:
            break
        table[workers] = speedup
    return ScalingCurve.parse(table)


def fit_profile(
    measurements: Sequence[Measurement],
    *,
    scaling_model: str = "table",
    checkpoint_gb: float = 0.0,
    accelerator: str = "",
    source: str = "measured",
    contention: float | Mapping[int, float] = 1.0,
) -> Profile:
    """Fit a :class:`Profile` to measurements at several worker counts (one must be 1);
    ``contention`` is passed through (from :func:`measure_contention`).

    Example:
        >>> p = fit_profile([Measurement(1, (10.0, 10.0)), Measurement(2, (5.5, 5.5))])
        >>> p.curve.to_spec(), p.epoch_seconds
        ({1: 1.0, 2: 1.8181818181818181}, 10.0)
    """
    by_workers = {m.workers: m for m in measurements}
    if len(by_workers) != len(measurements):
        raise ValueError("measurements must have distinct worker counts; merge repeats first.")
    if 1 not in by_workers:
        raise ValueError(
            f"measurements at workers {sorted(by_workers)} lack 1 worker; speedups are "
            "relative to one worker, so profile at 1 too."
        )
    t1 = by_workers[1].mean_epoch_seconds
    speedups = {k: t1 / m.mean_epoch_seconds for k, m in by_workers.items()}
    return Profile(
        epoch_seconds=t1,
        scaling=fit_scaling(speedups, scaling_model),
        epoch_cv={k: m.epoch_cv for k, m in sorted(by_workers.items())},
        startup_seconds={
            k: statistics.fmean(m.startup_seconds) if m.startup_seconds else 0.0
            for k, m in sorted(by_workers.items())
        },
        checkpoint_gb=checkpoint_gb,
        accelerator=accelerator,
        measurements=tuple(sorted(measurements, key=lambda m: m.workers)),
        source=source,
        contention=contention,
    )


def measurements_from_durations(
    durations: Mapping[tuple[int, int], Sequence[float]],
) -> tuple[Measurement, ...]:
    """Epoch and start-up times from whole-launch durations at two epoch counts.

    ``durations[(workers, epochs)]`` lists wall times of launches that trained ``epochs``
    epochs from scratch. With two epoch counts ``a < b`` per worker count, the ``i``-th repeats
    give one epoch sample ``(T_b - T_a) / (b - a)`` and one start-up sample ``T_a - a·epoch``.
    This needs nothing from the training script but its exit, so it works on any backend.

    Example:
        >>> ms = measurements_from_durations({(1, 1): [12.0], (1, 3): [32.0]})
        >>> ms[0].epoch_seconds, ms[0].startup_seconds
        ((10.0,), (2.0,))
    """
    by_workers: dict[int, dict[int, Sequence[float]]] = {}
    for (workers, epochs), times in durations.items():
        by_workers.setdefault(workers, {})[epochs] = times
    result = []
    for workers, runs in sorted(by_workers.items()):
        if len(runs) != 2:
            raise ValueError(
                f"workers={workers} has launches at epochs {sorted(runs)}; give exactly two "
                "epoch counts (e.g. 1 and 3) to separate start-up from epoch time."
            )
        (a, short), (b, long) = sorted(runs.items())
        if len(short) != len(long) or not short:
            raise ValueError(
                f"workers={workers}: {len(short)} launches at {a} epochs but {len(long)} at {b}; "
                "repeat both equally often."
            )
        per_epoch = [max(1e-9, (t_b - t_a) / (b - a)) for t_a, t_b in zip(short, long)]
        startups = [max(0.0, t_a - a * e) for t_a, e in zip(short, per_epoch)]
        result.append(Measurement(workers, tuple(per_epoch), tuple(startups)))
    return tuple(result)
