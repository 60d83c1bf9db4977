"""ReplayBackend: run launches on a simulated clock, reporting metrics from recorded curves.

A discrete-event simulator behind the :class:`~optuna_seer.backends.base.Backend` interface, so
the same executor that drives real workers can be benchmarked in seconds: nothing sleeps and
nothing trains. A launch of trial ``t`` with ``k`` workers, from the epochs ``t`` has already
trained (when it resumes from a checkpoint; from 0 otherwise) to ``spec.target_epochs``:

* waits for ``k`` free slots (launches queue first in, first out when the slots are busy);
* pays ``startup_seconds`` (process start-up, rendezvous, checkpoint load);
* trains epoch ``e`` in ``epoch_seconds / s(k) * m`` simulated seconds, where ``s`` is the
  scaling curve and ``m`` a straggler factor, log-normal with mean 1 and coefficient of
  variation ``straggler_cv``, drawn from ``(seed, trial number, epoch, k)`` so that a replay
  is deterministic whatever order launches happen in;
* at the end of each epoch writes the recorded validation accuracy of the trial's
  configuration to Optuna storage as the intermediate value at ``step=epoch``: exactly what a
  real worker does with ``storage.set_trial_intermediate_value`` (and, when the curve has a
  validation loss, writes it as the trial's tie-break metric, as a worker with
  ``SeerCallback(tie_break="val_loss")`` does); and, like a worker asked to
  stop (the trial's ``seer:stop_reason`` system attr is set), ends the launch successfully
  after that epoch (its checkpoint keeps the epochs trained);
* when a launch ends successfully, records its training seconds and epochs in the trial's
  ``seer:rung_<r>_training`` system attr, as ``TrialContext.record_training`` does, so the
  executor measures epoch times and resumes the trial from this launch's checkpoint.

Faults can be injected, as on real workers: :meth:`ReplayBackend.fail_launch` fails a running
launch now (a rank SIGKILLed, a process group killed), and ``preemption_rate`` preempts a
launch's node during an epoch with that probability per epoch (seeded). Checkpoints are
modelled as the worker writes them (:mod:`optuna_seer.worker.epoch_checkpoints`): at the end
of every rung, and with ``checkpoint_every_epochs=N`` also every N epochs inside a rung; with
``checkpoint_on_preemption`` a preempted launch (which gets SIGTERM first) also keeps every
epoch it completed. A failed launch loses the epochs it trained after its newest checkpoint
(counted in :attr:`ReplayBackend.epochs_lost`), and the next launch of the trial's rung
resumes from that checkpoint; the values it reported stay in the storage and a retry
re-reports them, the storage keeping the first value per step, as a worker's
``TrialContext.report`` does.

Which recorded curve a trial replays is ``spec.params[config_param]`` (``"config_id"`` by
default), an index into ``curves``. The recorded test accuracy stays out of the study and is
read with :meth:`ReplayBackend.test_accuracy` to score the configuration a tuner selects.
Billing is per launch: ``k`` GPUs from the launch's start (queueing excluded, start-up
included) to its end, as on an elastic cloud that provisions per launch; read it with
:attr:`ReplayBackend.gpu_seconds`.

Beside it: the recorded curves, and which one a trial replays, in
:mod:`~optuna_seer.backends.replay_curves`; the epoch times, stragglers and preemptions in
:mod:`~optuna_seer.backends.replay_timing`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import heapq
import itertools
import math

from optuna.storages import BaseStorage

from optuna_seer._optuna import UpdateFinishedTrialError
from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState, LaunchStatus
from optuna_seer.backends.replay_curves import VAL_LOSS, RecordedCurve, curve_for
from optuna_seer.backends.replay_timing import EpochTiming
from optuna_seer.integration.keys import TRIAL_STOP_REASON, launch_timing_key
from optuna_seer.integration.tie_break import TieBreak, record_tie_break
from optuna_seer.planning.scaling import ScalingCurve
from optuna_seer.storage.urls import open_storage
from optuna_seer.worker.context import report_first_value

__all__ = ["VAL_LOSS", "EpochObserver", "RecordedCurve", "ReplayBackend"]

EpochObserver = Callable[[str, int, float], None]
"""Called as ``observer(handle, epoch, validation_value)`` after each simulated epoch."""


@dataclass
class _Launch:
    spec: LaunchSpec
    key: tuple[str, int]
    trial_id: int
    curve: RecordedCurve
    state: LaunchState = LaunchState.RUNNING
    queued: bool = True
    started_at: float = 0.0
    finished_at: float | None = None
    message: str = ""
    epoch_ends: list[float] = field(default_factory=list)
    index: int = 0
    first_epoch: int = 0


class ReplayBackend(Backend):
    """Replay recorded learning curves on a simulated clock (see the module docstring).

    Args:
        curves: One recorded curve per configuration; ``spec.params[config_param]`` indexes it.
        scaling: Speedup of ``k`` workers over one: a :class:`~optuna_seer.ScalingCurve` spec.
        epoch_seconds: Simulated seconds of one epoch on one worker (``t1``).
        straggler_cv: Coefficient of variation of each epoch's time (0: none).
        seed: Seeds the straggler draws.
        slots: Workers (GPUs) that can run at once.
        startup_seconds: Simulated seconds each launch needs before its first epoch.
        start_time: The clock's reading before anything runs.
        storage: Where trials report; by default the storage named by each ``spec.storage``
            (any URL :func:`optuna_seer.storage.urls.open_storage` opens).
        config_param: The trial parameter holding the index into ``curves``.
        observer: Called after every simulated epoch, at that epoch's time, with the handle,
            the epoch and the reported value; it may call :meth:`stop` (e.g. to let an Optuna
            pruner decide, as a worker calling ``trial.should_prune()`` would), or
            :meth:`fail_launch`.
        preemption_rate: Probability that a launch's node is preempted during any one epoch
            (the launch fails part-way through that epoch); drawn from ``(seed, launch
            number)``, so a replay with faults is deterministic too.
        checkpoint_every_epochs: Also checkpoint every this many epochs inside a rung (counted
            from the launch's resume point), as a worker with
            ``SEER_CHECKPOINT_EVERY_EPOCHS`` does; ``None``: at rung ends only.
        checkpoint_on_preemption: A preempted launch stores its newest completed epoch before
            it ends (the worker's SIGTERM checkpoint); a launch killed outright
            (:meth:`fail_launch`) does not.

    Example:
        >>> import optuna
        >>> from optuna_seer.backends.base import LaunchSpec
        >>> from optuna_seer._optuna import storage_of
        >>> study = optuna.create_study(direction="maximize")
        >>> trial = study.ask({"config_id": optuna.distributions.IntDistribution(0, 0)})
        >>> backend = ReplayBackend([RecordedCurve((0.5, 0.9), (0.4, 0.8))], "linear",
        ...                         epoch_seconds=60.0, slots=4, storage=storage_of(study))
        >>> handle = backend.start(LaunchSpec(study.study_name, "", trial.number, trial.params,
        ...                                   rung=0, target_epochs=2, workers=2,
        ...                                   checkpoint_uri="unused"))
        >>> backend.wait([handle], timeout_s=math.inf) == [handle], backend.now()
        (True, 60.0)
        >>> study.trials[0].intermediate_values, backend.test_accuracy(study.study_name, 0)
        ({1: 0.5, 2: 0.9}, 0.8)
    """

    def __init__(
        self,
        curves: Sequence[RecordedCurve],
        scaling: str | Mapping[int, float] | ScalingCurve,
        epoch_seconds: float,
        *,
        straggler_cv: float = 0.0,
        seed: int = 0,
        slots: int,
        startup_seconds: float = 0.0,
        start_time: float = 0.0,
        storage: BaseStorage | None = None,
        config_param: str = "config_id",
        observer: EpochObserver | None = None,
        preemption_rate: float = 0.0,
        checkpoint_every_epochs: int | None = None,
        checkpoint_on_preemption: bool = False,
    ) -> None:
        if not curves or not all(isinstance(c, RecordedCurve) for c in curves):
            raise TypeError("curves must be a non-empty sequence of RecordedCurve.")
        for name, value in (
            ("epoch_seconds", epoch_seconds),
            ("straggler_cv", straggler_cv),
            ("startup_seconds", startup_seconds),
            ("start_time", start_time),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}={value!r} must be a number.")
            if not math.isfinite(value) or value < 0 or (name == "epoch_seconds" and value == 0):
                raise ValueError(f"{name}={value!r} must be finite and >= 0 (epoch_seconds > 0).")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots={slots!r} must be a whole number >= 1.")
        if (
            isinstance(preemption_rate, bool)
            or not isinstance(preemption_rate, (int, float))
            or not 0.0 <= preemption_rate < 1.0
        ):
            raise ValueError(
                f"preemption_rate={preemption_rate!r} must be a probability per epoch in [0, 1)."
            )
        every = checkpoint_every_epochs
        if every is not None and (type(every) is not int or every < 1):
            raise ValueError(f"checkpoint_every_epochs={every!r} must be an int >= 1, or None.")
        self._checkpoint_every = checkpoint_every_epochs
        self._checkpoint_on_preemption = bool(checkpoint_on_preemption)
        # Per trial: (rung, epoch) of its newest checkpoint inside a rung.
        self._mid_rung: dict[tuple[str, int], tuple[int, int]] = {}
        self._faults = 0
        self._epochs_lost = 0
        self._curves = tuple(curves)
        self._timing = EpochTiming(
            ScalingCurve.parse(scaling),
            float(epoch_seconds),
            float(straggler_cv),
            seed,
            float(preemption_rate),
        )
        self._slots = slots
        self._startup = float(startup_seconds)
        self._now = float(start_time)
        self._storage = storage
        self._storages: dict[str, BaseStorage] = {}
        self._config_param = config_param
        self._observer = observer
        self._launches: dict[str, _Launch] = {}
        self._handles = itertools.count()
        self._events: list[tuple[float, int, str, int]] = []
        self._event_order = itertools.count()
        self._queue: deque[str] = deque()
        self._busy = 0
        self._progress: dict[tuple[str, int], int] = {}
        self._running_for: dict[tuple[str, int], str] = {}
        self._trial_curves: dict[tuple[str, int], RecordedCurve] = {}
        self._billed = 0.0

    # -- Backend -------------------------------------------------------------------------------

    @property
    def slots(self) -> int:
        return self._slots

    def start(self, spec: LaunchSpec) -> str:
        if spec.workers > self._slots:
            raise ValueError(
                f"trial {spec.trial_number} asks for {spec.workers} workers but this replay has "
                f"{self._slots} slots."
            )
        curve = curve_for(self._curves, spec, self._config_param)
        key = (spec.study_name, spec.trial_number)
        if key in self._running_for:
            raise ValueError(
                f"trial {spec.trial_number} of study {spec.study_name!r} already has a running "
                f"launch {self._running_for[key]!r}; stop it first."
            )
        storage = self._storage_for(spec.storage)
        study_id = storage.get_study_id_from_name(spec.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, spec.trial_number)
        index = next(self._handles)
        handle = f"replay-{index}"
        self._launches[handle] = _Launch(
            spec=spec, key=key, trial_id=trial_id, curve=curve, index=index
        )
        self._running_for[key] = handle
        self._trial_curves[key] = curve
        self._queue.append(handle)
        self._start_queued()
        return handle

    def poll(self, handle: str) -> LaunchStatus:
        launch = self._launch(handle)
        return LaunchStatus(
            state=launch.state,
            started_at=launch.started_at if not launch.queued else self._now,
            finished_at=launch.finished_at,
            message=launch.message,
        )

    def stop(self, handle: str) -> None:
        launch = self._launch(handle)
        if launch.state is LaunchState.RUNNING:
            self._finish(launch, LaunchState.STOPPED, "stopped")

    def release(self) -> None:
        for handle in list(self._running_for.values()):
            self.stop(handle)

    def launch_spec(self, handle: str) -> LaunchSpec:
        """The spec ``handle`` was started with (which trial, rung, resume point)."""
        return self._launch(handle).spec

    def fail_launch(self, handle: str, reason: str = "a worker was killed (SIGKILL)") -> None:
        """Inject a fault: the running launch ``handle`` fails now, as when a rank is killed.

        Like a real process group, it writes no checkpoint: the epochs it trained since its
        resume point are lost. A launch that already ended is left as it is.
        """
        launch = self._launch(handle)
        if launch.state is LaunchState.RUNNING:
            self._faults += 1
            self._finish(launch, LaunchState.FAILED, f"injected fault: {reason}")

    def now(self) -> float:
        return self._now

    def wait(self, handles: Sequence[str], timeout_s: float) -> list[str]:
        """Advance the simulated clock to the first end among ``handles`` (never sleeps).

        Returns at once if one is done already. Otherwise processes epoch events in time
        order until one of ``handles`` is done, or until ``timeout_s`` simulated seconds
        have passed (then the clock reads exactly ``now + timeout_s``).

        Raises:
            RuntimeError: ``timeout_s`` is infinite and none of ``handles`` can ever finish.
        """
        watched = [self._launch(h) for h in handles]
        if math.isnan(timeout_s) or timeout_s < 0:
            raise ValueError(f"timeout_s={timeout_s!r} must be >= 0.")
        until = self._now + timeout_s
        while True:
            done = [
                h for h, launch in zip(handles, watched) if launch.state is not LaunchState.RUNNING
            ]
            if done:
                return done
            if not self._events or self._events[0][0] > until:
                if math.isinf(until):
                    raise RuntimeError(
                        f"wait({list(handles)!r}, timeout_s=inf): nothing is running that could "
                        "finish them."
                    )
                self._now = max(self._now, until)
                return []
            self._process_next_event()

    # -- Scoring and accounting ----------------------------------------------------------------

    def epochs_trained(self, study_name: str, trial_number: int) -> int:
        """Epochs the trial has completed (kept by its checkpoints) so far."""
        return self._progress.get((study_name, trial_number), 0)

    def test_accuracy(self, study_name: str, trial_number: int) -> float | None:
        """The recorded test accuracy of the trial's model as of its last completed epoch."""
        epochs = self.epochs_trained(study_name, trial_number)
        curve = self._curve_of(study_name, trial_number)
        if epochs == 0 or curve is None:
            return None
        return curve.test_acc[epochs - 1]

    def validation_accuracy(self, study_name: str, trial_number: int) -> float | None:
        """The validation accuracy the trial last reported."""
        epochs = self.epochs_trained(study_name, trial_number)
        curve = self._curve_of(study_name, trial_number)
        if epochs == 0 or curve is None:
            return None
        return curve.val_acc[epochs - 1]

    @property
    def faults_injected(self) -> int:
        """Launches failed by :meth:`fail_launch` or by a simulated preemption."""
        return self._faults

    @property
    def epochs_lost(self) -> int:
        """Epochs trained by failed launches after their resume point (to be retrained)."""
        return self._epochs_lost

    @property
    def gpu_seconds(self) -> float:
        """Worker-seconds billed so far, running launches up to :meth:`now` included."""
        running = sum(
            (self._now - launch.started_at) * launch.spec.workers
            for launch in self._launches.values()
            if launch.state is LaunchState.RUNNING and not launch.queued
        )
        return self._billed + running

    # -- Internals -----------------------------------------------------------------------------

    def _launch(self, handle: str) -> _Launch:
        try:
            return self._launches[handle]
        except KeyError:
            raise ValueError(f"unknown launch handle {handle!r}.") from None

    def _curve_of(self, study_name: str, trial_number: int) -> RecordedCurve | None:
        return self._trial_curves.get((study_name, trial_number))

    def _storage_for(self, url: str) -> BaseStorage:
        if self._storage is not None:
            return self._storage
        if url not in self._storages:
            self._storages[url] = open_storage(url)
        return self._storages[url]

    def _record_training(self, launch: _Launch) -> None:
        """What a worker records as its launch ends: seconds spent training, epochs trained."""
        trained = [at for at in launch.epoch_ends if at <= self._now]
        began = launch.started_at + self._startup
        self._storage_for(launch.spec.storage).set_trial_system_attr(
            launch.trial_id,
            launch_timing_key(launch.spec.rung),
            {
                "train_seconds": max(trained[-1] - began, 0.0) if trained else 0.0,
                "epochs": len(trained),
            },
        )

    def _start_queued(self) -> None:
        while self._queue:
            launch = self._launches[self._queue[0]]
            if launch.state is not LaunchState.RUNNING:
                self._queue.popleft()
                continue
            if self._busy + launch.spec.workers > self._slots:
                return
            handle = self._queue.popleft()
            self._busy += launch.spec.workers
            launch.queued = False
            launch.started_at = self._now
            spec = launch.spec
            first = self._progress.get(launch.key, 0) if spec.resume_from is not None else 0
            mid = self._mid_rung.get(launch.key)
            if mid is not None and mid[0] == spec.rung:  # the worker resumes from it
                first = mid[1]
            self._progress[launch.key] = first
            launch.first_epoch = first
            ends, preempted_at = self._timing.schedule(
                spec, launch.index, at=self._now + self._startup, first=first
            )
            for epoch, at in enumerate(ends, start=first + 1):
                launch.epoch_ends.append(at)
                heapq.heappush(self._events, (at, next(self._event_order), handle, epoch))
            if preempted_at is not None:  # its node is lost during the next epoch
                heapq.heappush(self._events, (preempted_at, next(self._event_order), handle, -1))
            if first >= spec.target_epochs:
                self._finish(launch, LaunchState.SUCCEEDED, "already trained")

    def _process_next_event(self) -> None:
        at, _, handle, epoch = heapq.heappop(self._events)
        launch = self._launches[handle]
        if launch.state is not LaunchState.RUNNING:
            return
        self._now = max(self._now, at)
        if epoch < 0:
            self._faults += 1
            if self._checkpoint_on_preemption:  # SIGTERM: the newest completed epoch is kept
                self._keep(launch, self._progress[launch.key])
            self._finish(launch, LaunchState.FAILED, "injected fault: spot node preempted")
            return
        value = launch.curve.val_acc[epoch - 1]
        storage = self._storage_for(launch.spec.storage)
        try:
            wrote = report_first_value(storage, launch.trial_id, epoch, value)
            if wrote and launch.curve.val_loss is not None:
                loss = TieBreak(VAL_LOSS, launch.curve.val_loss[epoch - 1])
                record_tie_break(storage, launch.trial_id, epoch, loss)
        except UpdateFinishedTrialError as exc:
            self._finish(launch, LaunchState.FAILED, f"worker could not report: {exc}")
            return
        self._progress[launch.key] = epoch
        if epoch >= launch.spec.target_epochs:
            self._finish(launch, LaunchState.SUCCEEDED, "")
        elif TRIAL_STOP_REASON in storage.get_trial_system_attrs(launch.trial_id):
            self._finish(launch, LaunchState.SUCCEEDED, f"asked to stop after epoch {epoch}")
        if self._observer is not None:
            self._observer(handle, epoch, value)
        # The worker stores an epoch's checkpoint after reporting it and reading the verdict:
        # a launch killed at that moment (by the observer) loses that epoch.
        every = self._checkpoint_every
        due = every is not None and (epoch - launch.first_epoch) % every == 0
        if due and launch.state is LaunchState.RUNNING:
            self._keep(launch, epoch)

    def _keep(self, launch: _Launch, epoch: int) -> None:
        """A checkpoint inside the rung now holds ``epoch``."""
        if epoch > launch.first_epoch:
            self._mid_rung[launch.key] = (launch.spec.rung, epoch)

    def _finish(self, launch: _Launch, state: LaunchState, message: str) -> None:
        if state is LaunchState.SUCCEEDED:
            self._record_training(launch)
            self._mid_rung.pop(launch.key, None)  # the rung-end checkpoint replaces it
        elif state is LaunchState.FAILED and not launch.queued:
            # Back to the newest checkpoint: the rung's inside this launch, else its resume point.
            kept = launch.first_epoch
            mid = self._mid_rung.get(launch.key)
            if mid is not None and mid[0] == launch.spec.rung:
                kept = max(kept, min(mid[1], self._progress[launch.key]))
            self._epochs_lost += self._progress[launch.key] - kept
            self._progress[launch.key] = kept
        launch.state = state
        launch.message = message
        launch.finished_at = self._now
        del self._running_for[launch.key]
        if not launch.queued:
            self._billed += (self._now - launch.started_at) * launch.spec.workers
            self._busy -= launch.spec.workers
            self._start_queued()
