"""The soak's second section: rounds of the faults the reliability work defends against.

Each round injects one fault into a real study (SQLite files in a temporary directory) and
checks the defence did what it should, reusing the fault tests' helpers
(``tests/faults/optimize_worker.py``, ``optimize_plan.py``, ``replay_study.py``):

* **second driver**: a second :class:`~optuna_seer.execution.tuner.ElasticTuner` is started
  on a replayed study while its driver runs; expected: refused by name
  (:class:`~optuna_seer.execution.driver_lock.DriverLockedError`), the study untouched, the
  first driver finishes with its ledger equal to what the backend billed.
* **worker SIGKILLed**: a ``study.optimize`` worker process on SQLite is ``kill -9``-ed after
  its first report; expected: its trial FAILed ("dead: no heartbeat") by the next trial,
  charged up to its last heartbeat, and the study goes on to finish that next trial.
* **worker clock off**: a ``study.optimize`` worker 120-300 s ahead (even seeds) or behind
  (odd seeds); expected: the study's start, the ledger and the deadline within tolerance of
  the truth.
* **driver clock off**: a driver resumed 120-300 s ahead (even seeds) or behind (odd seeds)
  on a study whose dead driver left launches in flight; expected: those launches charged
  for the time they ran, the ledger equal to that plus what the backend billed, the deadline
  counted from the study's true start.
* **hostile storage client**: Optuna's bare gRPC client and the tunnel's client with a wrong
  token against the authenticated study proxy on loopback; expected: every call refused,
  the study (trials, attrs, names) unchanged.

A round *lost* its study if the study raised or could not go on; dollars over budget is the
most a round's ledger spent past its plan's budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any
import warnings

import numpy as np
import optuna
from optuna.trial import TrialState

FAULTS_DIR = Path(__file__).resolve().parents[1] / "tests" / "faults"
ROOT = FAULTS_DIR.parents[1]
if str(FAULTS_DIR) not in sys.path:
    sys.path.insert(0, str(FAULTS_DIR))

from optimize_plan import PLAN as WORKER_PLAN  # noqa: E402
from replay_study import (  # noqa: E402
    EPOCH_SECONDS,
    N_CONFIGS,
    STARTUP_SECONDS,
    TRAIN,
    curves,
    plan,
    workload_of,
)

from optuna_seer._optuna import study_id_of, trial_id_of  # noqa: E402
from optuna_seer.backends.replay import ReplayBackend  # noqa: E402
from optuna_seer.execution.driver_lock import DriverLockedError  # noqa: E402
from optuna_seer.execution.journal import InFlight, Progress, RunJournal  # noqa: E402
from optuna_seer.execution.tuner import ElasticTuner, TuningResult  # noqa: E402
from optuna_seer.integration import heartbeat  # noqa: E402
from optuna_seer.integration.keys import STUDY_STARTED_AT, stop_reason  # noqa: E402
from optuna_seer.integration.ledger import last_beat, read_ledger, trial_gpu_seconds  # noqa: E402
from optuna_seer.integration.pruner import SeerPruner  # noqa: E402
from optuna_seer.integration.sampler import SeerSampler  # noqa: E402
from optuna_seer.integration.trial_gpus import implicit_placement  # noqa: E402

SECOND_DRIVER = "second driver on a running study"
DEAD_WORKER = "study.optimize worker SIGKILLed"
WORKER_CLOCK = "worker clock 120-300 s off"
DRIVER_CLOCK = "driver resumed 120-300 s off"
HOSTILE = "storage client without the token"
NEW_DEFENCES = {
    SECOND_DRIVER: "refused by name (driver lease), study untouched",
    DEAD_WORKER: "failed at its last heartbeat, charge frozen",
    WORKER_CLOCK: "study time (the storage's clock)",
    DRIVER_CLOCK: "one offset per clock: journal, pruner, sampler",
    HOSTILE: "authenticated TLS proxy refuses it",
}
"""Each new fault kind, and the defence the round checks (the second table's rows)."""


@dataclass(frozen=True)
class Round:
    """What one round of one fault did."""

    kind: str
    handled: bool
    lost: bool
    over_budget: float
    note: str = ""


def _search_space(trial: optuna.Trial) -> None:
    trial.suggest_int("config_id", 0, N_CONFIGS - 1)


def _tuner(study: optuna.Study, backend: ReplayBackend, workdir: Path) -> ElasticTuner:
    return ElasticTuner(
        study,
        plan(),
        backend=backend,
        train=TRAIN,
        checkpoints=workdir / "ckpt",
        search_space=_search_space,
        workload=workload_of(),
        storage_url="replay:in-memory",
        poll_seconds=5.0,
        progress=False,
    )


def _replayed(
    url: str, name: str, seed: int, start_time: float | None = None, observer: Any = None
) -> tuple[optuna.Study, ReplayBackend]:
    """One driver's own storage object, replay backend and study (created if new)."""
    storage = optuna.storages.RDBStorage(url)
    options: dict[str, Any] = {"storage": storage, "seed": seed, "observer": observer}
    if start_time is not None:
        options["start_time"] = start_time
    backend = ReplayBackend(
        curves(), "linear", EPOCH_SECONDS, slots=4, startup_seconds=STARTUP_SECONDS, **options
    )
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=seed), clock=backend.now),
        pruner=SeerPruner(plan=plan(), clock=backend.now),
    )
    return study, backend


def _snapshot(url: str, name: str) -> tuple[object, ...]:
    study = optuna.load_study(study_name=name, storage=url)
    trials = tuple(
        (t.number, t.state, dict(t.intermediate_values), dict(t.system_attrs))
        for t in study.get_trials(deepcopy=False)
    )
    return trials, dict(study.user_attrs)


def second_driver(workdir: Path, seed: int) -> Round:
    """A second driver started while the first is at its first epoch end."""
    url = f"sqlite:///{workdir / 'study.db'}"
    name = f"second-{seed}"
    seen: dict[str, Any] = {}

    def second(handle: str, epoch: int, value: float) -> None:
        if "refusal" in seen:
            return
        before = _snapshot(url, name)
        study, backend = _replayed(url, name, seed + 1)
        try:
            _tuner(study, backend, workdir / "second").run()
            seen["refusal"] = None
        except DriverLockedError as exc:
            seen["refusal"] = exc
        seen["untouched"] = _snapshot(url, name) == before and backend.gpu_seconds == 0

    study, backend = _replayed(url, name, seed, observer=second)
    try:
        result = _tuner(study, backend, workdir).run()
    except Exception as exc:  # a lost study is what the soak exists to catch
        return Round(SECOND_DRIVER, False, True, 0.0, f"first driver raised {exc!r}")
    refusal = seen.get("refusal")
    named = isinstance(refusal, DriverLockedError) and "another driver (pid" in str(refusal)
    billed = abs(result.ledger.gpu_seconds - backend.gpu_seconds) <= 1e-6 * max(
        1.0, backend.gpu_seconds
    )
    over = max(result.ledger.gpu_seconds * plan().price_per_gpu_second - plan().budget_dollars, 0)
    handled = named and bool(seen.get("untouched")) and billed and result.best_trial is not None
    return Round(SECOND_DRIVER, handled, result.best_trial is None, over, repr(refusal))


def _worker(url: str, name: str, *options: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(FAULTS_DIR / "optimize_worker.py"), url, name, *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)


def dead_worker(workdir: Path, seed: int) -> Round:
    """A worker ``kill -9``-ed after its first report; the next trial fails it."""
    url = f"sqlite:///{workdir / 'study.db'}"
    optuna.create_study(study_name="dead", storage=url, direction="maximize")
    worker = _worker(url, "dead", "--epoch-s", "0.5")
    try:
        assert worker.stdout is not None
        while "epoch 1" not in (line := worker.stdout.readline().decode()):
            if not line:
                return Round(DEAD_WORKER, False, True, 0.0, "the worker ended before epoch 1")
        time.sleep(0.2 + 0.5 * np.random.default_rng([seed, 7]).random())
        os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.time()
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stdout is not None:
            worker.stdout.close()
    storage = optuna.storages.RDBStorage(url)
    study = optuna.load_study(
        study_name="dead",
        storage=storage,
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=seed)),
        pruner=SeerPruner(plan=WORKER_PLAN),
    )
    beat = last_beat(study.get_trials(deepcopy=False)[0])
    if beat is None:
        return Round(DEAD_WORKER, False, False, 0.0, "no heartbeat before the kill")
    time.sleep(beat[1] + 0.3)  # past its grace
    frozen = read_ledger(study, WORKER_PLAN, time.time()).gpu_seconds
    time.sleep(0.5)
    still = read_ledger(study, WORKER_PLAN, time.time()).gpu_seconds
    saved = heartbeat.DEFAULT
    heartbeat.configure(0.3, 1.5)
    try:
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    except Exception as exc:
        return Round(DEAD_WORKER, False, True, 0.0, f"the next trial raised {exc!r}")
    finally:
        heartbeat.DEFAULT = saved
    dead, after = study.get_trials(deepcopy=False)
    reason = stop_reason(dead) or ""
    started = dead.datetime_start.timestamp()  # type: ignore[union-attr]
    charged = trial_gpu_seconds(dead, time.time(), implicit_placement(storage, study_id_of(study)))
    handled = (
        dead.state == TrialState.FAIL
        and reason.startswith("dead: no heartbeat")
        and abs(still - frozen) <= 1e-6
        and abs(charged - (beat[0] - started)) <= 0.05
        and charged <= killed_at - started
        and after.state == TrialState.COMPLETE
    )
    spent = read_ledger(study, WORKER_PLAN, time.time()).spent_dollars
    over = max(spent - WORKER_PLAN.budget_dollars, 0.0)
    return Round(DEAD_WORKER, handled, after.state != TrialState.COMPLETE, over, reason)


def _skew(seed: int) -> float:
    """120-300 s (seeded): ahead on even seeds, behind on odd ones."""
    rng = np.random.default_rng([seed, 11])
    return float(rng.uniform(120.0, 300.0)) * (1 if seed % 2 == 0 else -1)


def worker_clock(workdir: Path, seed: int) -> Round:
    """A ``study.optimize`` worker with its clock 120-300 s ahead or behind."""
    return _skewed_worker(workdir, _skew(seed))


def driver_clock(workdir: Path, seed: int) -> Round:
    """A driver resumed with its clock 120-300 s ahead or behind."""
    return _skewed_driver(workdir, seed, _skew(seed))


def _skewed_worker(workdir: Path, skew: float) -> Round:
    url = f"sqlite:///{workdir / 'study.db'}"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="skew", storage=storage, direction="maximize")
    began = time.time()
    worker = _worker(url, "skew", "--skew", f"{skew:.1f}")
    output, _ = worker.communicate(timeout=120)
    ended = time.time()
    if worker.returncode != 0:
        return Round(WORKER_CLOCK, False, True, 0.0, output.decode()[-300:])
    started_at = storage.get_study_system_attrs(study_id_of(study))[STUDY_STARTED_AT]
    ledger = read_ledger(study, WORKER_PLAN, time.time())
    (trial,) = study.get_trials(deepcopy=False)
    charged = trial_gpu_seconds(trial, time.time(), implicit_placement(storage, study_id_of(study)))
    handled = (
        began - 1.0 <= started_at <= ended
        and 0 <= ledger.elapsed_s <= ended - began + 1.0
        # epochs of 0.2 s (alone, it trains to the last rung's door, where it is parked)
        and 0.18 * (trial.last_step or 0) <= charged <= ended - began
        and (trial.last_step or 0) >= 2
    )
    over = max(ledger.spent_dollars - WORKER_PLAN.budget_dollars, 0.0)
    return Round(WORKER_CLOCK, handled, False, over, f"worker {skew:+.0f} s, charged {charged:.2f}")


def _skewed_driver(workdir: Path, seed: int, skew: float) -> Round:
    """A dead driver (true clock) left 4 launches in flight for 120 s, 150 s into the study;
    the same command runs again on a machine ``skew`` seconds off."""
    url = f"sqlite:///{workdir / 'study.db'}"
    name = f"resumed-{seed}"
    storage = optuna.storages.RDBStorage(url)
    the_plan = plan()
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=seed)),
        pruner=SeerPruner(plan=the_plan),
    )
    now = time.time()
    journal = RunJournal(study)
    journal.save_progress(Progress(rung=0, rungs=the_plan.rungs, slots=4))
    for number in range(the_plan.n_configs):
        trial = study.ask()
        trial.suggest_int("config_id", 0, N_CONFIGS - 1)
        if number < 4:
            journal.set_in_flight(trial_id_of(trial), InFlight(0, 1, now - 120.0, 0))
    storage.set_study_system_attr(study_id_of(study), STUDY_STARTED_AT, now - 150.0)
    start = time.time() + skew
    again, backend = _replayed(url, name, seed, start_time=start)
    try:
        result: TuningResult = _tuner(again, backend, workdir).run()
    except Exception as exc:
        return Round(DRIVER_CLOCK, False, True, 0.0, f"resumed driver raised {exc!r}")
    notes = [note for note in result.notes if note.startswith("resumed study")]
    if len(notes) != 1:
        return Round(DRIVER_CLOCK, False, False, 0.0, f"no resume note in {result.notes}")
    head = notes[0].split(" slot-seconds charged")[0].rsplit("; ", 1)[1]
    charged = float(head.replace(",", ""))
    ran = backend.now() - start
    handled = (
        4 * 120.0 <= charged <= 4 * 130.0
        and abs(result.ledger.gpu_seconds - (charged + backend.gpu_seconds))
        <= 0.01 * result.ledger.gpu_seconds
        and abs(result.wall_seconds - (150.0 + ran)) <= 10.0
    )
    over = max(
        result.ledger.gpu_seconds * the_plan.price_per_gpu_second - the_plan.budget_dollars, 0
    )
    lost = result.best_trial is None
    billed = charged + backend.gpu_seconds
    note = (
        f"driver {skew:+.0f} s: {charged:.0f} slot-s for the dead driver's launches, ledger "
        f"{result.ledger.gpu_seconds:,.0f} against {billed:,.0f} charged and billed"
    )
    return Round(DRIVER_CLOCK, handled, lost, over, note)


def hostile_client(workdir: Path, seed: int) -> Round:
    """Optuna's bare gRPC client and a wrong-token tunnel client against the proxy."""
    import grpc

    from optuna_seer.storage.proxy import ProxyCredential, StorageProxy
    from optuna_seer.storage.tunnel import TunnelRefusedError, probe_tunnel
    from optuna_seer.storage.urls import open_storage

    url = f"sqlite:///{workdir / 'study.db'}"
    study = optuna.create_study(study_name="victim", storage=url, direction="maximize")
    study.set_user_attr("seer:spent", 0.0056)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    before = _snapshot(url, "victim")
    credential = ProxyCredential.generate()
    attempts: list[Callable[[Any], object]] = [
        lambda c: c.get_all_studies(),
        lambda c: c.get_study_id_from_name("victim"),
        lambda c: c.set_study_user_attr(0, "seer:spent", -1666.67),
        lambda c: c.create_new_study([optuna.study.StudyDirection.MINIMIZE], "injected"),
        lambda c: c.delete_study(0),
    ]
    refused = 0
    with StorageProxy(url, host="127.0.0.1", credential=credential) as proxy:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            hostile = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=proxy.port)
        try:
            for attempt in attempts:
                try:
                    attempt(hostile)
                except grpc.RpcError:
                    refused += 1
        finally:
            getattr(hostile, "close", lambda: None)()
        token = "x" * 43 if seed % 2 == 0 else credential.token[:-1] + "A"
        try:
            probe_tunnel("127.0.0.1", proxy.port, token, credential.fingerprint)
        except TunnelRefusedError:
            refused += 1
        names = optuna.get_all_study_names(storage=open_storage(proxy.url))
    unchanged = _snapshot(url, "victim") == before and names == ["victim"]
    handled = refused == len(attempts) + 1 and unchanged
    note = f"{refused}/{len(attempts) + 1} calls refused, study unchanged: {unchanged}"
    return Round(HOSTILE, handled, not unchanged, 0.0, note)


ROUNDS: dict[str, Callable[[Path, int], Round]] = {
    SECOND_DRIVER: second_driver,
    DEAD_WORKER: dead_worker,
    WORKER_CLOCK: worker_clock,
    DRIVER_CLOCK: driver_clock,
    HOSTILE: hostile_client,
}


def run_new_faults(rounds: int, seed: int = 0) -> list[Round]:
    """``rounds`` seeded rounds of each new fault kind, each in its own temporary directory."""
    done = []
    for kind, run in ROUNDS.items():
        for i in range(rounds):
            with tempfile.TemporaryDirectory(prefix="seer-soak-") as tmp:
                try:
                    done.append(run(Path(tmp), seed + i))
                except Exception as exc:  # a crash of the round is a lost study too
                    done.append(Round(kind, False, True, 0.0, repr(exc)))
            if not done[-1].handled:
                print(f"{kind} round {i}: not handled: {done[-1].note}", file=sys.stderr)
    return done


def new_fault_table(rounds: list[Round]) -> str:
    """Per new fault kind: injected, handled as expected, lost studies, dollars over budget."""
    header = f"{'new fault':34} {'injected':>8} {'handled':>8} {'lost':>5} {'over $':>7}  defence"
    rows = [header]
    for kind, defence in NEW_DEFENCES.items():
        mine = [r for r in rounds if r.kind == kind]
        over = max((r.over_budget for r in mine), default=0.0)
        rows.append(
            f"{kind:34} {len(mine):8} {sum(r.handled for r in mine):8} "
            f"{sum(r.lost for r in mine):5} {over:7.4f}  {defence}"
        )
    return "\n".join(rows)
