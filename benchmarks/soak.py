"""Soak test: replayed SEER studies with random faults; nothing may be lost or overspent.

Runs the real :class:`~optuna_seer.execution.tuner.ElasticTuner` on a
:class:`~optuna_seer.backends.replay.ReplayBackend` (recorded learning curves, simulated
clock) while injecting faults at random: spot preemptions during an epoch (the backend's
seeded ``preemption_rate``) and launches killed at an epoch end (``fail_launch``, as a rank
SIGKILLed). It keeps running seeded studies until ``--faults`` faults have been injected and
prints a table of the faults by kind (how many, in how many studies, studies lost with one),
a table of the epochs lost per recovery with checkpoints at rung ends only (before) and with
the workers' checkpoints inside rungs (after: every ``--checkpoint-every`` epochs, and on the
SIGTERM a preempted node gets; ``--no-compare`` skips the before run), then one line for the
after run::

    faults injected 101, trials recovered 77, epochs lost 12 (0.16 per recovery), dollars over
    budget 0.0000 (beyond one increment of $0.0683), studies lost 0, deadlines missed 0 (...)

A *recovered* trial had a failed launch and still ended COMPLETE or PRUNED (its retry went
on from its last checkpoint); a *lost* study raised or has a trial whose reported epochs have
a gap. Studies whose every finalist failed more often than ``max_launch_retries`` are
counted apart: their trials and ledger are intact but there is no best trial. At the default
rates (3 % per epoch each, far above typical spot interruption rates) this is rare; with
checkpoints at rung ends only (``--checkpoint-every 0 --no-sigterm``), high rates make it
common.

A second section (``--new-faults``, the default; ``--no-new-faults`` skips it) then runs
``--new-fault-rounds`` seeded rounds of each fault the reliability work added defences for
(a second driver, a ``study.optimize`` worker SIGKILLed, a worker or a resumed driver with
its clock 120-300 s ahead or behind, a storage client without the token; see
:mod:`benchmarks.soak_new_faults`) on real SQLite studies,
and prints per kind: injected, handled as expected, studies lost, dollars over budget.

The script exits non-zero if a study was lost, the spend exceeded the budget by more than
one billing increment (``--increment-seconds`` of every slot of the widest rung), or a new
fault was not handled as expected.

Usage::

    python -m benchmarks.soak --faults 100 --dataset digits
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import sys

import numpy as np
import optuna
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from benchmarks.baselines import Scenario
from benchmarks.curves import CurveSet, available, load
from benchmarks.seer_arm import run_replayed
from optuna_seer.backends.replay import ReplayBackend
from optuna_seer.integration.pruner import SeerPruner
from optuna_seer.integration.sampler import SeerSampler
from optuna_seer.planning.seer import plan_seer

SCENARIOS = (
    Scenario("30m $24 babi", deadline_s=1800.0, dollars=24.0, scaling="babi"),
    # Tight: the plan spends most of the budget, so lost time presses on the budget guard.
    Scenario("30m $8 babi", deadline_s=1800.0, dollars=8.0, scaling="babi"),
)


PREEMPTED = "spot node preempted mid-epoch"
KILLED = "rank SIGKILLed at an epoch end"
DEFENCES = {
    PREEMPTED: "SIGTERM stores the newest epoch; relaunch from it",
    KILLED: "relaunch from the previous epoch's checkpoint",
}
"""Each fault kind the soak injects, and what the executor does about it (the table's rows)."""


@dataclass(frozen=True)
class SoakRun:
    """What one faulty study did."""

    faults: int
    by_kind: dict[str, int]
    recovered: int
    epochs_lost: int
    spent: float
    budget: float
    lost: bool
    no_finalist: bool
    deadline_missed: bool


@dataclass(frozen=True)
class Checkpointing:
    """How the replayed workers checkpoint: every ``every`` epochs inside a rung (``None``:
    at rung ends only) and, with ``sigterm``, when a preempted node gets its SIGTERM."""

    every: int | None = 1
    sigterm: bool = True

    def __str__(self) -> str:
        if self.every is None and not self.sigterm:
            return "rung ends only"
        inside = "" if self.every is None else f"every {self.every} epoch(s)"
        return " + ".join(part for part in (inside, "on SIGTERM" if self.sigterm else "") if part)


RUNG_ENDS_ONLY = Checkpointing(every=None, sigterm=False)
"""What the workers did before they checkpointed inside rungs: the "before" figures."""


def run_one(
    scenario: Scenario,
    curves: CurveSet,
    seed: int,
    preemption_rate: float,
    kill_rate: float,
    checkpointing: Checkpointing = Checkpointing(),
) -> SoakRun:
    """One seeded SEER study with faults; ``kill_rate``: chance per epoch end of a SIGKILL."""
    n_configs = len(curves.curves)
    workload = scenario.workload(curves.epochs)
    plan = plan_seer(scenario.budget, workload, scenario.reduction_factor, max_configs=n_configs)
    storage = InMemoryStorage()
    kills = np.random.default_rng([seed, 2])
    holder: list[ReplayBackend] = []
    killed = [0]

    def kill_sometimes(handle: str, epoch: int, value: float) -> None:
        if kills.random() < kill_rate:
            before = holder[0].faults_injected
            holder[0].fail_launch(handle)
            killed[0] += holder[0].faults_injected - before

    backend = scenario.backend(
        curves,
        seed,
        max(r.gpus for r in plan.rungs),
        storage=storage,
        preemption_rate=preemption_rate,
        observer=kill_sometimes,
        checkpoint_every_epochs=checkpointing.every,
        checkpoint_on_preemption=checkpointing.sigterm,
    )
    holder.append(backend)
    study = optuna.create_study(
        storage=storage,
        study_name=f"soak-{seed}",
        direction="maximize",
        sampler=SeerSampler(optuna.samplers.RandomSampler(seed=seed), clock=backend.now),
        pruner=SeerPruner(plan=plan, clock=backend.now),
    )
    lost = no_finalist = deadline_missed = False
    recovered = 0
    try:
        result = run_replayed(study, plan, backend, workload, n_configs)
        failed_trials = {r.trial_number for r in result.launches if r.state == "failed"}
        trials = study.get_trials(deepcopy=False)
        recovered = sum(
            1
            for t in trials
            if t.number in failed_trials and t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        )
        gaps = any(
            sorted(t.intermediate_values) != list(range(1, len(t.intermediate_values) + 1))
            for t in trials
        )
        lost = gaps
        no_finalist = result.best_trial is None
        deadline_missed = not result.deadline_met
    except Exception as exc:  # a lost study is what this script exists to catch
        print(f"seed {seed}: study lost: {exc!r}", file=sys.stderr)
        lost = True
    return SoakRun(
        faults=backend.faults_injected,
        by_kind={PREEMPTED: backend.faults_injected - killed[0], KILLED: killed[0]},
        recovered=recovered,
        epochs_lost=backend.epochs_lost,
        spent=backend.gpu_seconds * scenario.price_per_gpu_second,
        budget=scenario.dollars,
        lost=lost,
        no_finalist=no_finalist,
        deadline_missed=deadline_missed,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=100, help="inject at least this many")
    parser.add_argument("--dataset", choices=available(), default="digits")
    parser.add_argument("--preemption-rate", type=float, default=0.03, help="per epoch")
    parser.add_argument("--kill-rate", type=float, default=0.03, help="per epoch end")
    parser.add_argument(
        "--increment-seconds", type=float, default=1.0, help="billing unit of every slot (s)"
    )
    parser.add_argument("--max-studies", type=int, default=500)
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        help="workers checkpoint every N epochs inside a rung (0: at rung ends only)",
    )
    parser.add_argument(
        "--sigterm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a preempted node's SIGTERM stores its newest epoch first",
    )
    parser.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run with checkpoints at rung ends only and print epochs lost before/after",
    )
    parser.add_argument(
        "--new-faults",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the second section (killed workers, skewed clocks, ...)",
    )
    parser.add_argument("--new-fault-rounds", type=int, default=3, help="rounds of each kind")
    args = parser.parse_args(argv)
    if args.faults < 1:
        parser.error(f"--faults={args.faults} must be >= 1")
    if args.new_fault_rounds < 1:
        parser.error(f"--new-fault-rounds={args.new_fault_rounds} must be >= 1")
    if args.checkpoint_every < 0:
        parser.error(f"--checkpoint-every={args.checkpoint_every} must be >= 0 (0: rung ends)")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    curves = load(args.dataset)
    after = Checkpointing(args.checkpoint_every or None, args.sigterm)
    arms = [RUNG_ENDS_ONLY, after] if args.compare and after != RUNG_ENDS_ONLY else [after]
    by_arm = {arm: run_arm(arm, args, curves) for arm in arms}
    runs = by_arm[after]
    increment = max(
        args.increment_seconds * scenario.price_per_gpu_second * widest_rung(scenario, curves)
        for scenario in SCENARIOS
    )
    over = max((max(r.spent - r.budget, 0.0) for r in runs), default=0.0)
    beyond = max(over - increment, 0.0)
    lost = sum(r.lost for r in runs)
    print(fault_table(runs))
    print()
    print(checkpoint_table(by_arm))
    print(
        f"faults injected {sum(r.faults for r in runs)}, trials recovered "
        f"{sum(r.recovered for r in runs)}, epochs lost {sum(r.epochs_lost for r in runs)} "
        f"({per_recovery(runs):.2f} per recovery), "
        f"dollars over budget {beyond:.4f} (beyond one increment of ${increment:.4f}), "
        f"studies lost {lost}, deadlines missed {sum(r.deadline_missed for r in runs)} "
        f"({len(runs)} studies; {sum(r.no_finalist for r in runs)} ended with every finalist "
        f"failed past its retries; least budget left "
        f"${min(r.budget - r.spent for r in runs):.2f})"
    )
    failed = bool(lost or beyond > 0)
    if args.new_faults:
        failed = new_faults_section(args.new_fault_rounds) or failed
    return 1 if failed else 0


def run_arm(arm: Checkpointing, args: argparse.Namespace, curves: CurveSet) -> list[SoakRun]:
    """Seeded studies with workers checkpointing as ``arm`` says, until ``args.faults``."""
    runs: list[SoakRun] = []
    seed = 0
    while sum(r.faults for r in runs) < args.faults and seed < args.max_studies:
        scenario = SCENARIOS[seed % len(SCENARIOS)]
        runs.append(run_one(scenario, curves, seed, args.preemption_rate, args.kill_rate, arm))
        seed += 1
    return runs


def per_recovery(runs: list[SoakRun]) -> float:
    """Epochs lost per recovered trial (0 when none was recovered)."""
    recovered = sum(r.recovered for r in runs)
    return sum(r.epochs_lost for r in runs) / recovered if recovered else 0.0


def checkpoint_table(by_arm: dict[Checkpointing, list[SoakRun]]) -> str:
    """Per way of checkpointing: studies, faults, recovered trials, epochs lost (per recovery,
    per fault)."""
    rows = [
        f"{'checkpoints':38} {'studies':>7} {'faults':>6} {'recovered':>9} {'epochs lost':>11} "
        f"{'per recovery':>12} {'per fault':>9}"
    ]
    for arm, runs in by_arm.items():
        faults = sum(r.faults for r in runs)
        lost = sum(r.epochs_lost for r in runs)
        label = f"{'before' if arm == RUNG_ENDS_ONLY else 'after'}: {arm}"
        rows.append(
            f"{label:38} {len(runs):7} {faults:6} {sum(r.recovered for r in runs):9} {lost:11} "
            f"{per_recovery(runs):12.2f} {lost / faults if faults else 0.0:9.2f}"
        )
    return "\n".join(rows)


def new_faults_section(rounds: int) -> bool:
    """Print the second section; True if a new fault was not handled or lost a study."""
    from benchmarks.soak_new_faults import new_fault_table, run_new_faults

    done = run_new_faults(rounds)
    handled = sum(r.handled for r in done)
    lost = sum(r.lost for r in done)
    over = max((r.over_budget for r in done), default=0.0)
    print()
    print(new_fault_table(done))
    print(
        f"new faults injected {len(done)}, handled as expected {handled}, studies lost {lost}, "
        f"dollars over budget {over:.4f}"
    )
    return handled < len(done) or lost > 0 or over > 0


def fault_table(runs: list[SoakRun]) -> str:
    """Per fault kind: faults injected, studies that had one, those of them lost, defence."""
    header = f"{'fault':32} {'injected':>8} {'studies':>8} {'lost':>5}  defence"
    rows = [header]
    for kind, defence in DEFENCES.items():
        hit = [r for r in runs if r.by_kind.get(kind, 0)]
        rows.append(
            f"{kind:32} {sum(r.by_kind.get(kind, 0) for r in hit):8} {len(hit):8} "
            f"{sum(r.lost for r in hit):5}  {defence}"
        )
    return "\n".join(rows)


def widest_rung(scenario: Scenario, curves: CurveSet) -> int:
    """Slots the scenario's plan uses at most at once (the cluster a billing unit covers)."""
    plan = plan_seer(
        scenario.budget,
        scenario.workload(curves.epochs),
        scenario.reduction_factor,
        max_configs=len(curves.curves),
    )
    return max(r.gpus for r in plan.rungs)


if __name__ == "__main__":
    sys.exit(main())
