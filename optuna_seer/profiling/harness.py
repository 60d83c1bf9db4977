"""Measuring a user's training: profiling launches on a backend, and profile files.

The pure profile model (:class:`~optuna_seer.planning.profile.Profile`, :func:`fit_profile`)
lives in the planning core; this module does the measuring that feeds it: it starts real
launches through a :class:`~optuna_seer.backends.base.Backend`, times them, and reads what the
workers reported to the study. :func:`load_profile` and :func:`save_profile` read and write the
JSON form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import json
from pathlib import Path
import statistics
from typing import Any

import optuna

from optuna_seer._optuna import storage_of, trial_id_of
from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState
from optuna_seer.integration.keys import launch_timing_key
from optuna_seer.planning.profile import (
    Measurement,
    Profile,
    measurements_from_durations,
)
from optuna_seer.worker.context import ENV_MAX_EPOCHS


def save_profile(profile: Profile, path: str | Path) -> None:
    """Write ``profile`` as JSON (atomically: a crash never leaves half a file)."""
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(profile.to_dict(), indent=2) + "\n", encoding="utf-8")
    temporary.replace(target)


MAX_JSON_DEPTH = 32
"""The deepest nesting :func:`parse_json` accepts: the package's files are a few levels deep."""


def json_depth(data: Any) -> int:
    """How deeply ``data`` nests lists and dicts (0 for a plain value), without recursion.

    Example:
        >>> json_depth({"a": [1, {"b": []}]}), json_depth(3)
        (4, 0)
    """
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in value)
    return deepest


def parse_json(text: str, what: str) -> Any:
    """``text`` parsed as JSON, or a ``ValueError`` that names ``what`` and says why.

    Refused: text that is not JSON, and JSON nested more than :data:`MAX_JSON_DEPTH` levels
    (so no deep structure reaches code that recurses over it).

    Example:
        >>> parse_json('{"a": [1]}', "profile p.json")
        {'a': [1]}
        >>> parse_json("[" * 100 + "]" * 100, "profile p.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: profile p.json nests JSON 100 levels deep; at most 32 are accepted.
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(
            f"{what} nests JSON too deeply to read; at most {MAX_JSON_DEPTH} levels are accepted."
        ) from None
    except ValueError as exc:  # JSONDecodeError
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(
            f"{what} nests JSON {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted."
        )
    return data


def read_json_file(path: str | Path, what: str, example: str) -> Any:
    """The JSON in file ``path`` (a ``what``: ``"profile"``, ``"plan"``…), or a ``ValueError``
    that names the file, says why, and how to make one (``example``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"cannot read {what} {path} ({exc.strerror or exc}): give the path of {example}."
        ) from None
    except ValueError as exc:  # UnicodeDecodeError
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None
    return parse_json(text, f"{what} {path}")


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile JSON file."""
    data = read_json_file(
        path, "profile", "a profile JSON ('optuna-seer profile --out' writes one)"
    )
    try:
        return Profile.from_dict(data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"profile {path}: {exc}") from None


def _timed_launches(backend: Backend, specs: Sequence[LaunchSpec], timeout_s: float) -> list[float]:
    """Start ``specs`` together, wait for all of them, return each one's wall seconds."""
    what = ", ".join(f"{s.workers} worker(s) to {s.target_epochs} epochs" for s in specs)
    handles = [backend.start(spec) for spec in specs]
    deadline = backend.now() + timeout_s
    pending = list(handles)
    while pending:
        if backend.now() > deadline:
            for handle in pending:
                backend.stop(handle)
            raise RuntimeError(f"profiling launch ({what}) ran past {timeout_s} s.")
        backend.wait(pending, min(5.0, max(0.0, deadline - backend.now())))
        pending = [h for h in pending if not backend.poll(h).done]
    durations = []
    for handle in handles:
        status = backend.poll(handle)
        if status.state is not LaunchState.SUCCEEDED or status.finished_at is None:
            raise RuntimeError(
                f"profiling launch ({what}) ended {status.state.value}: {status.message}"
            )
        durations.append(status.finished_at - status.started_at)
    return durations


def _check_epochs(epochs: tuple[int, int], repeats: int) -> None:
    if len(epochs) != 2 or epochs[0] >= epochs[1] or epochs[0] < 1:
        raise ValueError(f"epochs={epochs!r} must be two counts 1 <= a < b, e.g. (1, 3).")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a whole number >= 1.")


def measure_on_backend(
    backend: Backend,
    make_spec: Callable[[int, int, int], LaunchSpec],
    *,
    workers: Sequence[int] = (1, 2, 4),
    epochs: tuple[int, int] = (1, 3),
    repeats: int = 2,
    timeout_s: float = 3600.0,
) -> tuple[Measurement, ...]:
    """Profile the user's trial through any backend: launches at each worker count and two
    epoch counts, timed by the backend's own clock (:func:`measurements_from_durations`).

    ``make_spec(workers, target_epochs, repeat)`` returns the launch to run (a fresh trial,
    no ``resume_from``). Launches run one at a time so they do not slow each other down
    (:func:`measure_contention` measures how much they do).

    Raises:
        RuntimeError: A launch failed or did not finish within ``timeout_s``.

    Example:
        >>> from optuna_seer.backends.local import LocalBackend  # doctest: +SKIP
        >>> backend = LocalBackend(slots=2)  # doctest: +SKIP
        >>> ms = measure_on_backend(backend, make_spec, workers=(1, 2))  # doctest: +SKIP
        >>> fit_profile(ms).curve.to_spec()  # doctest: +SKIP
        {1: 1.0}
    """
    _check_epochs(epochs, repeats)
    for count in workers:
        if count > backend.slots:
            raise ValueError(f"workers={count} exceeds the backend's {backend.slots} slots.")
    durations: dict[tuple[int, int], list[float]] = {}
    try:
        for count in workers:
            for repeat in range(repeats):
                for target in epochs:
                    (seconds,) = _timed_launches(
                        backend, [make_spec(count, target, repeat)], timeout_s
                    )
                    durations.setdefault((count, target), []).append(seconds)
    finally:
        backend.release()
    return measurements_from_durations(durations)


ReportedTraining = Callable[[LaunchSpec], tuple[float, int] | None]
"""``reported(spec)``: the (training seconds, epochs) a finished launch of ``spec`` reported
(``TrialContext.record_training``; ``SeerCallback`` does it), or ``None`` if it did not."""


@dataclass
class ScratchTrials:
    """Profiling launches of ``entrypoint`` with ``params``, each a fresh trial of ``study``
    (a scratch study the workers report to), for :func:`measure_on_backend`,
    :func:`measure_alone_and_together` and :func:`measure_contention`.

    ``spec`` is their ``make_spec``; ``reported`` reads back the training time a finished
    launch recorded (their ``reported``).

    Example:
        >>> import optuna  # doctest: +SKIP
        >>> study = optuna.create_study(storage="sqlite:///profile.db")  # doctest: +SKIP
        >>> trials = ScratchTrials(study, "sqlite:///profile.db", {"lr": 0.01},
        ...                        "train.py:train", 3, Path("ckpt"))  # doctest: +SKIP
        >>> measure_on_backend(backend, trials.spec, workers=(1, 2))  # doctest: +SKIP
    """

    study: optuna.Study
    storage: str
    params: Mapping[str, Any]
    entrypoint: str
    max_epochs: int
    checkpoint_dir: Path
    _ids: dict[int, int] = field(default_factory=dict)

    def spec(self, workers: int, target_epochs: int, index: int) -> LaunchSpec:
        """A launch of a fresh trial on ``workers`` to ``target_epochs`` (``index`` unused:
        every call asks for a new trial)."""
        trial = self.study.ask()
        self._ids[trial.number] = trial_id_of(trial)
        return LaunchSpec(
            study_name=self.study.study_name,
            storage=self.storage,
            trial_number=trial.number,
            params=dict(self.params),
            rung=0,
            target_epochs=target_epochs,
            workers=workers,
            checkpoint_uri=str(self.checkpoint_dir / f"trial-{trial.number}"),
            env={ENV_MAX_EPOCHS: str(self.max_epochs)},
            entrypoint=self.entrypoint,
        )

    def reported(self, spec: LaunchSpec) -> tuple[float, int] | None:
        """(training seconds, epochs) the launch of ``spec`` recorded, or ``None``."""
        attrs = storage_of(self.study).get_trial_system_attrs(self._ids[spec.trial_number])
        timing = attrs.get(launch_timing_key(0))
        return None if timing is None else (timing["train_seconds"], timing["epochs"])


def _from_reports(
    walls: Sequence[float], reports: Sequence[tuple[float, int] | None]
) -> Measurement | None:
    """A one-worker Measurement from launches' own split of wall time into training (epochs)
    and the rest (start-up): the executor's split, with no differencing noise."""
    if not reports or any(r is None or r[1] < 1 or r[0] <= 0 for r in reports):
        return None
    pairs = [(wall, r) for wall, r in zip(walls, reports) if r is not None]
    return Measurement(
        1,
        tuple(train / count for _, (train, count) in pairs),
        tuple(max(0.0, wall - train) for wall, (train, _) in pairs),
    )


def measure_alone_and_together(
    backend: Backend,
    make_spec: Callable[[int, int, int], LaunchSpec],
    *,
    launches: int = 2,
    epochs: tuple[int, int] = (1, 3),
    repeats: int = 1,
    timeout_s: float = 3600.0,
    reported: ReportedTraining | None = None,
) -> tuple[Measurement, float]:
    """One-worker timings and their contention, measured in alternation so that both see the
    same background load (on a shared host the load of other jobs drifts by the minute, and a
    ratio of launches timed minutes apart measures that drift, not contention).

    Per repeat and epoch count it times one launch alone, then ``launches`` one-worker launches
    together. Returns the alone launches' :class:`Measurement` and the contention
    ``mean(together) / mean(alone)`` over the same epoch counts: the profile's
    ``contention[launches]``. Start-up and epoch time come from the launches' own reports
    when ``reported`` gives them (each launch: epoch = training seconds / epochs, start-up =
    wall - training; robust when start-up jitter dwarfs an epoch), else by difference
    (:func:`measurements_from_durations`).
    ``make_spec(workers, target_epochs, index)`` gets a distinct ``index`` per launch.

    Raises:
        RuntimeError: A launch failed or did not finish within ``timeout_s``.

    Example:
        >>> alone, factor = measure_alone_and_together(backend, make_spec)  # doctest: +SKIP
        >>> fit_profile([alone], contention={2: factor})  # doctest: +SKIP
    """
    _check_epochs(epochs, repeats)
    if isinstance(launches, bool) or not isinstance(launches, int) or launches < 2:
        raise ValueError(f"launches={launches!r} must be a whole number >= 2.")
    if launches > backend.slots:
        raise ValueError(f"launches={launches} exceeds the backend's {backend.slots} slots.")
    alone: dict[tuple[int, int], list[float]] = {}
    walls: list[float] = []
    reports: list[tuple[float, int] | None] = []
    together: list[float] = []
    alone_for_together: list[float] = []
    index = 0
    try:
        for _ in range(repeats):
            for target in epochs:
                spec = make_spec(1, target, index)
                (seconds,) = _timed_launches(backend, [spec], timeout_s)
                alone.setdefault((1, target), []).append(seconds)
                walls.append(seconds)
                reports.append(None if reported is None else reported(spec))
                specs = [make_spec(1, target, index + 1 + i) for i in range(launches)]
                together += _timed_launches(backend, specs, timeout_s)
                alone_for_together += [seconds] * launches
                index += 1 + launches
    finally:
        backend.release()
    measurement = _from_reports(walls, reports)
    if measurement is None:
        (measurement,) = measurements_from_durations(alone)
    return measurement, statistics.fmean(together) / statistics.fmean(alone_for_together)


def measure_contention(
    backend: Backend,
    make_spec: Callable[[int, int, int], LaunchSpec],
    alone: Measurement | None = None,
    *,
    launches: int = 2,
    epochs: tuple[int, int] = (1, 3),
    repeats: int = 1,
    timeout_s: float = 3600.0,
) -> float:
    """How much slower a one-worker launch runs when ``launches`` of them run at once.

    Starts ``launches`` one-worker launches together at each of the two epoch counts and
    compares their mean wall time with what ``alone`` (the one-worker
    :class:`Measurement` of :func:`measure_on_backend`) predicts for the same launches
    (``startup + epochs × epoch``). The ratio is the profile's ``contention[launches]``;
    it is not clipped below 1 (on an idle machine with free cores it can be ~1.0).
    ``make_spec(workers, target_epochs, index)`` gets a distinct ``index`` per launch.
    With ``alone=None`` the launches alone are timed in alternation with the concurrent ones
    (:func:`measure_alone_and_together`), which a host shared with other jobs needs.

    Raises:
        RuntimeError: A launch failed or did not finish within ``timeout_s``.
    """
    if alone is None:
        return measure_alone_and_together(
            backend, make_spec, launches=launches, epochs=epochs, repeats=repeats,
            timeout_s=timeout_s,
        )[1]  # fmt: skip
    _check_epochs(epochs, repeats)
    if isinstance(launches, bool) or not isinstance(launches, int) or launches < 2:
        raise ValueError(f"launches={launches!r} must be a whole number >= 2.")
    if launches > backend.slots:
        raise ValueError(f"launches={launches} exceeds the backend's {backend.slots} slots.")
    if alone.workers != 1 or not alone.startup_seconds:
        raise ValueError("alone must be the one-worker Measurement with start-up times.")
    startup = statistics.fmean(alone.startup_seconds)
    measured: list[float] = []
    expected: list[float] = []
    try:
        for repeat in range(repeats):
            for target in epochs:
                specs = [make_spec(1, target, repeat * launches + i) for i in range(launches)]
                measured += _timed_launches(backend, specs, timeout_s)
                expected += [startup + target * alone.mean_epoch_seconds] * launches
    finally:
        backend.release()
    return statistics.fmean(measured) / statistics.fmean(expected)
