"""The ``seer-pool`` arm: SEER's pair in ``study.optimize`` on a fixed pool, with elastic leases.

What a user gets from ``study.optimize`` with ``SeerSampler``/``SeerPruner`` and
:func:`optuna_seer.rungs` on ``P`` workers (the pool the budget buys for the whole deadline,
as for Optuna's pruners): the plan is SEER's for at most ``P`` GPUs at once
(``ClusterLimits(max_gpus=P)``), so survivors' later rungs run on more workers where the
scaling curve pays. Each trial trains rung by rung; before each launch it leases the rung's
workers from the pool through the study's storage with the real lease code
(:mod:`optuna_seer.integration.leases`), and returns them at the launch's end. As
``rungs()`` does, a launch goes on through the following rungs that keep its worker count
(one start-up, not one per rung), and a survivor is relaunched from its checkpoint only
when its next rung's worker count differs, or to enter the last rung. The pruner runs
asynchronously (ASHA-style promotion with SEER's fractions, deadline and budget stops at
every epoch, as ``rungs()`` asks it), and survivors waiting for workers go before new
configurations.

The difference from ``study.optimize`` is only the driver: ``rungs()`` blocks a thread per
trial on the wall clock, which a simulated clock cannot host, so this loop plays the
threads' part as events on the replay clock (lease, launch, wait, verdict, lease again).
The pool is billed for its ``P`` GPUs from start to end, as the Optuna pruners' pools are.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, TrialState

from benchmarks.baselines import (
    SEER_PROMOTE_BY,
    ConfigOrderSampler,
    Outcome,
    Scenario,
    _outcome,
    _spec,
    config_order,
    search_space,
)
from benchmarks.curves import CurveSet
from optuna_seer.integration.admission import DEADLINE_LAST_RUNG
from optuna_seer.integration.default_plan import plan_for_pool as plan_on_pool
from optuna_seer.integration.keys import stop_reason
from optuna_seer.integration.leases import acquire, release
from optuna_seer.integration.pruner import WAIT, SeerPruner
from optuna_seer.integration.ranking import best_finalist
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.cost_model import ClusterLimits
from optuna_seer.planning.plan import Plan
from optuna_seer.planning.seer import InfeasiblePlanError

POOL = "replay-pool"


def plan_for_pool(scenario: Scenario, curves: CurveSet, max_epochs: int) -> Plan:
    """SEER's plan for ``P`` workers at once, training finalists ``max_epochs`` epochs: the
    plan ``SeerPruner(budget, workload, limits=ClusterLimits(max_gpus=P))`` makes (the last
    rung's idle workers train more finalists).

    Raises:
        InfeasiblePlanError: Not even one configuration fits.
    """
    return plan_on_pool(
        scenario.budget,
        scenario.workload(max_epochs),
        scenario.reduction_factor,
        limits=ClusterLimits(max_gpus=scenario.pool_gpus),
        min_resource=1,
        min_marginal_speedup=0.2,
        max_configs=len(curves.curves),
    )


def pool_plan(scenario: Scenario, curves: CurveSet) -> Plan:
    """SEER's plan for ``P`` workers at once; if even that cannot train ``max_epochs`` by the
    deadline, the largest ``max_epochs`` that fits."""
    for max_epochs in range(curves.epochs, 0, -1):
        try:
            return plan_for_pool(scenario, curves, max_epochs)
        except InfeasiblePlanError:
            continue
    raise ValueError(f"scenario {scenario.name!r}: no SEER plan fits even one epoch.")


@dataclass
class _Running:
    trial: optuna.Trial
    rung: int  # the first rung this launch trains
    last: int  # the last rung it trains through, on the same workers


def finished_by_deadline(trial: FrozenTrial) -> bool:
    """Whether the pruner ended ``trial`` inside the last rung at the deadline, so that it
    completes with the epochs it trained (``DEADLINE_LAST_RUNG``)."""
    reason = stop_reason(trial)
    return reason is not None and reason.startswith(DEADLINE_LAST_RUNG)


def run_seer_pool(
    scenario: Scenario, curves: CurveSet, seed: int, *, promote_by: str = SEER_PROMOTE_BY
) -> Outcome:
    """One seeded run of the arm (see the module docstring)."""
    return play_seer_pool(scenario, curves, seed, promote_by=promote_by).outcome


@dataclass(frozen=True)
class PoolRun:
    """One run of the arm: its scored outcome, and the study and replay clock it ended with
    (what SEER's pair holds there: its ledger, plan and the budget guard's reading)."""

    outcome: Outcome
    study: optuna.Study
    ended_at: float


def play_seer_pool(
    scenario: Scenario, curves: CurveSet, seed: int, *, promote_by: str = SEER_PROMOTE_BY
) -> PoolRun:
    """:func:`run_seer_pool`, keeping the study it ran."""
    plan = pool_plan(scenario, curves)
    pool = scenario.pool_gpus
    order = config_order(len(curves.curves), seed)
    storage = InMemoryStorage()
    running: dict[str, _Running] = {}
    stopped: set[str] = set()
    holder: list[optuna.Study] = []

    def worker_asks_the_pruner(handle: str, epoch: int, _value: float) -> None:
        # What rungs() does after each epoch the workers report: ask the pruner with the
        # stored trial; a stop reaches the workers at their next epoch.
        study = holder[0]
        launch = running[handle]
        end = plan.rungs[launch.last].resource
        frozen = storage.get_trial(launch.trial._trial_id)
        if epoch < end and study.pruner.prune(study, frozen):
            stopped.add(handle)
            backend.stop(handle)

    backend = scenario.backend(curves, seed, pool, storage=storage, observer=worker_asks_the_pruner)
    study = optuna.create_study(
        storage=storage,
        study_name=f"seer-pool-{seed}",
        direction="maximize",
        sampler=SeerSampler(ConfigOrderSampler(order), clock=backend.now, widen=True),
        pruner=SeerPruner(plan=plan, clock=backend.now, promote_by=promote_by),
    )
    holder.append(study)
    pruner = study.pruner
    assert isinstance(pruner, SeerPruner)
    started = backend.now()
    deadline = started + scenario.deadline_s
    waiting: list[tuple[optuna.Trial, int]] = []  # survivors waiting for their next rung
    last_rung = len(plan.rungs) - 1
    more = True

    def launch(trial: optuna.Trial, rung: int) -> bool:
        workers = plan.rungs[rung].gpus_per_trial
        slots = acquire(
            study, trial.number, pool=POOL, size=pool, workers=workers, rung=rung, now=backend.now()
        )
        if slots is None:
            return False
        last = plan.launch_through(rung)
        spec = _spec(study, trial, rung, plan.rungs[last].resource, workers)
        running[backend.start(spec)] = _Running(trial, rung, last)
        return True

    def new_trial() -> bool:
        """Start the next configuration; ``False`` once the sampler refuses (width, budget)."""
        trial = study.ask()
        try:
            search_space(trial, len(order))
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return False
        if not launch(trial, 0):
            waiting.append((trial, 0))
        return True

    def may_go(trial: optuna.Trial, rung: int) -> bool:
        """A survivor enters the last rung once its place there is certain, as rungs() waits
        (SeerPruner.final_rung_entry), or once nothing else runs that could change it."""
        if rung < last_rung:
            return True
        verdict = pruner.final_rung_entry(study, storage.get_trial(trial._trial_id))
        if verdict is None or (verdict == WAIT and not running):
            return True
        if verdict != WAIT:
            waiting.remove((trial, rung))
            study.tell(trial, state=TrialState.PRUNED)
        return False

    def fill() -> None:
        nonlocal more
        # Survivors first, the furthest rung first: they decide the result.
        waiting.sort(key=lambda w: -w[1])
        for trial, rung in list(waiting):
            if not may_go(trial, rung):
                continue
            if not launch(trial, rung):
                break  # not enough free workers: new configurations wait too
            waiting.remove((trial, rung))
        blocked = any(rung < last_rung for _, rung in waiting)
        while not blocked and more and backend.now() < deadline and free() > 0:
            more = new_trial()
            blocked = any(rung < last_rung for _, rung in waiting)

    def free() -> int:
        return pool - sum(plan.rungs[r.rung].gpus_per_trial for r in running.values())

    fill()
    while running:
        done = backend.wait(list(running), deadline - backend.now())
        if not done:
            for handle, launched in running.items():
                backend.stop(handle)
                release(study, launched.trial.number, now=backend.now())
                study.tell(launched.trial, state=TrialState.PRUNED)
            running.clear()
            break
        for handle in done:
            launched = running.pop(handle)
            trial, rung = launched.trial, launched.last
            release(study, trial.number, now=backend.now())
            frozen = storage.get_trial(trial._trial_id)
            if rung == last_rung and finished_by_deadline(frozen):
                # As rungs() does: a finalist the deadline ended completes with its value.
                study.tell(trial, backend.validation_accuracy(study.study_name, trial.number))
            elif handle in stopped or (frozen.last_step or 0) < plan.rungs[rung].resource:
                study.tell(trial, state=TrialState.PRUNED)
            elif rung == len(plan.rungs) - 1:
                study.tell(trial, backend.validation_accuracy(study.study_name, trial.number))
            elif pruner.prune(study, frozen):
                study.tell(trial, state=TrialState.PRUNED)
            else:
                waiting.append((trial, rung + 1))
        fill()
    for trial, _ in waiting:
        study.tell(trial, state=TrialState.PRUNED)
    seconds = backend.now() - started
    dollars = pool * seconds * scenario.price_per_gpu_second
    finalists = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    selected = None
    if finalists:
        since = plan.epochs_before(len(plan.rungs) - 1)
        selected = best_finalist(finalists, since, plan.max_epochs, study.direction)
    outcome = _outcome("seer-pool", seed, scenario, study, backend, seconds, dollars, selected)
    return PoolRun(outcome, study, backend.now())
