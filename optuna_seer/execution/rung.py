"""One rung of an ElasticTuner run: launch every trial in waves, wait, retry, account.

:class:`RungRunner` launches each trial of a rung on the backend with the rung's workers,
from the trial's last good checkpoint, as slots free up; the budget guard
(:mod:`optuna_seer.execution.guard`) decides whether each launch may start and when the
running ones must stop. Each finished launch is charged to the ledger and kept in the run
journal; a failed one is launched again on fresh workers up to ``max_retries`` times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import TrialState
from tqdm.auto import tqdm

from optuna_seer._secrets import scrub
from optuna_seer.backends.base import Backend, LaunchSpec, LaunchState
from optuna_seer.execution.guard import (
    Guard,
    Running,
    StopReason,
    grace_seconds,
    predicted_launch_seconds,
)
from optuna_seer.execution.journal import HEARTBEAT_SECONDS, InFlight, RunJournal
from optuna_seer.execution.measurement import measured_epoch_seconds, startup_seconds
from optuna_seer.execution.results import LaunchRecord, RungRecord
from optuna_seer.execution.state import RunState
from optuna_seer.integration.dashboard import on_launch_end
from optuna_seer.integration.keys import checkpoint_fallback_key, launch_timing_key
from optuna_seer.planning.plan import Plan, Rung, format_seconds
from optuna_seer.planning.workload import Workload
from optuna_seer.worker.context import ENV_MAX_EPOCHS, checkpoint_name, checkpoint_object_uri

Say = Callable[[str], None]
Tell = Callable[[int, TrialState, "str | None"], None]


@dataclass(frozen=True)
class LaunchSettings:
    """What every launch of a run shares.

    Attributes:
        study_name: The study the trials belong to.
        storage_url: The storage URL the workers open.
        entrypoint: The training program (see :func:`~optuna_seer.execution.entry.entrypoint_of`).
        checkpoint_root: The checkpoint root (a directory or ``s3://`` prefix).
        poll_seconds: How often the backend is polled.
        max_retries: How often a failed launch is started again in the same rung.
        progress: Show a progress bar per rung.
        maximize: The study maximizes its objective (for the best value shown).
    """

    study_name: str
    storage_url: str
    entrypoint: str
    checkpoint_root: str
    poll_seconds: float
    max_retries: int
    progress: bool = False
    maximize: bool = True

    def trial_uri(self, number: int) -> str:
        """Where trial ``number``'s checkpoints live."""
        return trial_checkpoint_uri(self.checkpoint_root, self.study_name, number)


def trial_checkpoint_uri(root: str, study_name: str, number: int) -> str:
    """Where trial ``number`` of ``study_name`` keeps its checkpoints under ``root``.

    Example:
        >>> trial_checkpoint_uri("s3://bucket/ckpt/", "digits", 7)
        's3://bucket/ckpt/digits/trial-7'
    """
    return f"{root.rstrip('/')}/{study_name}/trial-{number}"


def launch_spec(
    *,
    study_name: str,
    storage_url: str,
    trial_number: int,
    params: Mapping[str, Any],
    rung: Rung,
    checkpoint_uri: str,
    resume_from: str | None,
    max_epochs: int,
    entrypoint: str,
    env: Mapping[str, str] | None = None,
) -> LaunchSpec:
    """What one launch of "train this trial to ``rung``'s end on its workers" is: the one
    description :class:`~optuna_seer.ElasticTuner` and :func:`~optuna_seer.rungs` both launch."""
    return LaunchSpec(
        study_name=study_name,
        storage=storage_url,
        trial_number=trial_number,
        params=dict(params),
        rung=rung.index,
        target_epochs=rung.resource,
        workers=rung.gpus_per_trial,
        checkpoint_uri=checkpoint_uri,
        resume_from=resume_from,
        env={ENV_MAX_EPOCHS: str(max_epochs), **(env or {})},
        entrypoint=entrypoint,
    )


@dataclass
class _Launch:
    number: int
    lanes: tuple[int, ...]
    running: Running


class RungRunner:
    """Runs the rungs of one run; see the module docstring.

    Args:
        backend: Where the launches run.
        journal: The run journal (storage writes).
        plan: The run's plan (deadline, budget, price, epochs).
        workload: The workload the plan was made for (launch start-up before any measured).
        settings: What every launch shares.
        state: The run's state, updated as launches finish.
        say: Records (and logs) a note.
        tell: Tells Optuna a trial's end: ``tell(number, state, reason)``.
    """

    def __init__(
        self,
        backend: Backend,
        journal: RunJournal,
        plan: Plan,
        workload: Workload | None,
        settings: LaunchSettings,
        state: RunState,
        say: Say,
        tell: Tell,
    ) -> None:
        self._backend = backend
        self._journal = journal
        self._plan = plan
        self._workload = workload
        self._settings = settings
        self._state = state
        self._say = say
        self._tell = tell

    def run(
        self, rung: Rung, alive: list[int], rungs: Sequence[Rung]
    ) -> tuple[RungRecord, list[int], StopReason]:
        """Launch every trial of ``rung`` (in waves) and wait; returns (record, still alive,
        ``"deadline"``/``"budget"`` if the rung was cut short, else ``""``)."""
        backend, state, plan = self._backend, self._state, self._plan
        workers = rung.gpus_per_trial
        last_epoch = measured_epoch_seconds(state.launches, workers) or rung.epoch_seconds
        guard = Guard(
            deadline_at=state.t0 + plan.deadline_s,
            budget_dollars=plan.budget_dollars,
            price_per_gpu_second=plan.price_per_gpu_second,
            grace_s=grace_seconds(last_epoch, plan.deadline_s),
            billed=backend.billed_dollars,  # a cloud's bill, where larger than the ledger
        )
        pending = deque(n for n in alive if n not in state.done_in_rung)
        running: dict[str, _Launch] = {}
        free_lanes = list(range(backend.slots))
        survivors: list[int] = [n for n in alive if n in state.done_in_rung]
        state.done_in_rung = set()
        soft_stopped = hard_stopped = refused = False
        started = backend.now() - state.t0
        bar = tqdm(
            total=len(alive),
            desc=f"rung {rung.index}: {workers} worker(s), to epoch {rung.resource}",
            unit="trial",
            disable=not self._settings.progress,
        )
        bar.update(len(survivors))
        stop_for: StopReason = ""
        while pending or running:
            now = backend.now()
            if backend.launches_end_with_driver and now - state.beat_at >= HEARTBEAT_SECONDS:
                state.beat_at = now
                self._journal.heartbeat(now)
            spent = guard.spent(now, state.charged_gpu_s, [r.running for r in running.values()])
            if not stop_for:
                stop_for = guard.stop_reason(now, spent, [r.running for r in running.values()])
            if self._settings.progress:
                self._show(bar, spent, guard.deadline_at - now)
            if stop_for and not soft_stopped:
                soft_stopped = True
                self._soft_stop(stop_for, rung, guard, now, spent, pending, running)
                bar.update(len(pending))
                survivors.extend(pending)
                pending.clear()
            if soft_stopped and not hard_stopped and guard.past_limit(stop_for, now, spent):
                hard_stopped = True
                for handle in running:
                    backend.stop(handle)
            while pending and len(free_lanes) >= workers:
                number = pending.popleft()
                seconds = self._predicted_seconds(number, rung, rungs)
                cost = seconds * workers * plan.price_per_gpu_second
                admission = guard.admit(now, spent, [r.running for r in running.values()], cost)
                if not admission.admitted:
                    # Not launched; it keeps what its checkpoint holds and the rung ends as
                    # a budget stop once the running launches are done.
                    bar.update(1)
                    survivors.append(number)
                    refused = True
                    self._say(
                        f"budget guard: trial {number} not launched in rung {rung.index}: "
                        f"${spent:,.2f} spent + ${admission.committed:,.2f} committed to "
                        f"running launches + ${cost:,.2f} predicted > "
                        f"${plan.budget_dollars:,.2f}"
                    )
                    continue
                lanes = tuple(free_lanes[:workers])
                del free_lanes[:workers]
                handle = backend.start(self._spec(number, rung))
                at = backend.now()
                running[handle] = _Launch(number, lanes, Running(at, workers, cost))
                self._journal.set_in_flight(
                    state.ids[number],
                    InFlight(rung.index, workers, at, len(state.launches_of(number))),
                )
            for handle in backend.wait(list(running), self._settings.poll_seconds):
                launch_ = running.pop(handle)
                number, lanes = launch_.number, launch_.lanes
                free_lanes = sorted(free_lanes + list(lanes))
                launch = self._finish(handle, number, rung, lanes, soft_stopped)
                if not launch.failed:
                    survivors.append(number)
                    bar.update(1)
                elif self._retry(number, rung, launch, soft_stopped):
                    pending.appendleft(number)
                else:
                    bar.update(1)
                    self._tell(number, TrialState.FAIL, launch.message[-500:])
                    self._say(f"trial {number} failed in rung {rung.index}: {launch.message}")
        bar.close()
        if refused and not stop_for:
            stop_for = "budget"
        # A resumed rung: its launches from before the driver was killed count too.
        ours = tuple(r for r in state.launches if r.rung == rung.index)
        record = RungRecord(
            planned=rung,
            started_at=min([started, *(r.started_at for r in ours)]),
            finished_at=backend.now() - state.t0,
            trials=tuple(alive),
            promoted=(),
            eliminated=(),
            gpu_seconds=sum(r.wall_seconds * r.workers for r in ours),
            launches=ours,
        )
        ordered = [n for n in alive if n in survivors]
        return record, ordered, stop_for

    # ----------------------------------------------------------------- helpers
    def _show(self, bar: Any, spent: float, left_s: float) -> None:
        """Dollars spent, time left and the best value so far, redrawn at tqdm's own pace."""
        best = self._state.best_value
        bar.set_postfix_str(
            f"${spent:,.2f} of ${self._plan.budget_dollars:,.2f}, "
            f"{format_seconds(max(left_s, 0.0))} left, "
            f"best {'-' if best is None else f'{best:.4g}'}",
            refresh=False,
        )
        bar.update(0)

    def _soft_stop(
        self,
        stop_for: StopReason,
        rung: Rung,
        guard: Guard,
        now: float,
        spent: float,
        pending: Sequence[int],
        running: dict[str, _Launch],
    ) -> None:
        """Ask the running trials to stop after their current epoch (they checkpoint)."""
        reason = (
            f"deadline: stopped {format_seconds(guard.deadline_at - now)} before it"
            if stop_for == "deadline"
            else f"budget: ${spent:,.2f} of ${guard.budget_dollars:,.2f} spent"
        )
        for launch in running.values():
            self._journal.set_stop_reason(self._state.ids[launch.number], reason)
        self._say(
            f"{stop_for} near: {len(pending)} trial(s) of rung {rung.index} not launched; "
            f"{len(running)} asked to stop after their current epoch (they checkpoint first)"
        )

    def _spec(self, number: int, rung: Rung) -> LaunchSpec:
        settings, state = self._settings, self._state
        return launch_spec(
            study_name=settings.study_name,
            storage_url=settings.storage_url,
            trial_number=number,
            params=state.params[number],
            rung=rung,
            checkpoint_uri=settings.trial_uri(number),
            resume_from=state.resume[number],
            max_epochs=self._plan.max_epochs,
            entrypoint=settings.entrypoint,
        )

    def _predicted_seconds(self, number: int, rung: Rung, rungs: Sequence[Rung]) -> float:
        """Start-up plus the epochs from the trial's resume point to the rung's end."""
        state = self._state
        done = 0
        for record in state.launches:
            if record.trial_number == number and record.checkpoint == state.resume[number]:
                done = rungs[record.rung].resource if record.rung < len(rungs) else 0
        epoch = measured_epoch_seconds(state.launches, rung.gpus_per_trial) or rung.epoch_seconds
        return predicted_launch_seconds(
            startup_seconds(state.launches, self._workload), epoch, rung.resource, done
        )

    def _retry(self, number: int, rung: Rung, launch: LaunchRecord, stopping: bool) -> bool:
        """Whether to launch ``number`` again after ``launch`` failed (and say so)."""
        state, limit = self._state, self._settings.max_retries
        tries = state.retries.get((number, rung.index), 0)
        if stopping or tries >= limit:
            return False
        state.retries[(number, rung.index)] = tries + 1
        origin = state.resume[number] or "scratch"
        first_line = launch.message.strip().splitlines()[0] if launch.message.strip() else ""
        self._say(
            f"trial {number}: launch in rung {rung.index} failed after "
            f"{format_seconds(launch.wall_seconds)} ({first_line or 'no message'}); retry "
            f"{tries + 1}/{limit} from {origin} on fresh workers"
        )
        return True

    def _finish(
        self, handle: str, number: int, rung: Rung, lanes: tuple[int, ...], stopping: bool
    ) -> LaunchRecord:
        """Account for a finished launch: its state, checkpoint, charge and record."""
        backend, state, journal = self._backend, self._state, self._journal
        status = backend.poll(handle)
        finished = status.finished_at if status.finished_at is not None else backend.now()
        trial = journal.trial(state.ids[number])
        timing = trial.system_attrs.get(launch_timing_key(rung.index))
        fallback = trial.system_attrs.get(checkpoint_fallback_key(rung.index))
        if fallback is not None and not state.launches_of(number, rung.index):
            state.fallbacks += 1
            self._say(
                f"trial {number}: checkpoint {fallback['wanted']} was corrupt or missing "
                f"({'; '.join(fallback['errors'])[:300]}); rung {rung.index} resumed from "
                f"{fallback['used'] or 'scratch'}"
            )
        outcome, message = status.state, scrub(status.message)  # kept, stored and logged
        reached = trial.last_step is not None and trial.last_step >= rung.resource
        if outcome is LaunchState.SUCCEEDED and not reached and not stopping:
            outcome = LaunchState.FAILED
            message = (
                f"the script exited without reporting epoch {rung.resource} (last reported: "
                f"{trial.last_step}); report with SeerCallback or TrialContext.report."
            )
        uri = checkpoint_object_uri(self._settings.trial_uri(number), checkpoint_name(rung.index))
        good = outcome is not LaunchState.FAILED and timing is not None
        if good:
            state.resume[number] = uri
        gpu_seconds = (finished - status.started_at) * rung.gpus_per_trial
        state.charged_gpu_s += gpu_seconds
        journal.charge(trial, gpu_seconds, backend.now(), journal.implicit())
        launch = LaunchRecord(
            trial_number=number,
            rung=rung.index,
            workers=rung.gpus_per_trial,
            lanes=lanes,
            started_at=status.started_at - state.t0,
            finished_at=finished - state.t0,
            state=outcome.value,
            train_seconds=None if timing is None else float(timing["train_seconds"]),
            epochs=None if timing is None else int(timing["epochs"]),
            message=message,
            checkpoint=uri if good else None,
            queue_s=status.queue_s,
            boot_s=status.boot_s,
            setup_s=status.setup_s,
        )
        state.launches.append(launch)
        journal.record_launch(trial, launch)
        on_launch_end(journal.study, state.ids[number], journal.to_study(finished))  # dashboard
        self._keep_best(trial.intermediate_values.get(trial.last_step or 0))
        return launch

    def _keep_best(self, value: float | None) -> None:
        best = self._state.best_value
        if value is None:
            return
        if best is None or (value > best if self._settings.maximize else value < best):
            self._state.best_value = value
