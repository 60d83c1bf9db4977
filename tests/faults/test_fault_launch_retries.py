"""A failed launch is retried from the trial's last good checkpoint (ReplayBackend: cheap and
deterministic; the real-process version is test_fault_local_sigkill.py)."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState
import pytest
from replay_study import assert_consistent_steps, run_replay

from optuna_seer.backends.replay import EpochObserver, ReplayBackend
from optuna_seer.execution.report import format_report


def _kill_once(rung: int, at_epoch: int) -> tuple[dict[str, int], object]:
    """An observer factory that fails the first launch of ``rung`` reaching ``at_epoch``."""
    victim: dict[str, int] = {}

    def factory(backend: ReplayBackend) -> EpochObserver:
        def observe(handle: str, epoch: int, value: float) -> None:
            spec = backend.launch_spec(handle)
            if not victim and spec.rung == rung and epoch == at_epoch:
                victim["trial"] = spec.trial_number
                backend.fail_launch(handle)

        return observe

    return victim, factory


def test_a_launch_killed_mid_rung_resumes_from_its_checkpoint_with_consistent_values(
    tmp_path: Path,
) -> None:
    victim, factory = _kill_once(rung=1, at_epoch=2)
    run = run_replay(tmp_path, observer=factory)  # type: ignore[arg-type]
    result, study, backend = run.result, run.study, run.backend
    number = victim["trial"]

    assert result.failed_launches == 1 and result.retried_launches == 1
    assert backend.faults_injected == 1 and backend.epochs_lost == 1
    ours = [r for r in result.launches if r.trial_number == number and r.rung == 1]
    assert [r.state for r in ours] == ["failed", "succeeded"]
    # The retry resumed from the rung-0 checkpoint (epoch 1), so it trained epochs 2-3 only.
    assert ours[1].epochs == 2
    assert "retry 1/2 from" in " ".join(result.notes)
    assert "rung-0.ckpt" in next(n for n in result.notes if "retry 1/2" in n)
    # Nothing lost: the study finished normally, every trial's steps are 1..last, no gaps.
    assert result.best_trial is not None
    assert study.trials[number].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert 3 in study.trials[number].intermediate_values
    assert_consistent_steps(study)
    # The failed launch's worker-seconds are charged once, with the retry's.
    charged = sum(r.wall_seconds * r.workers for r in result.launches)
    assert result.ledger.gpu_seconds == pytest.approx(charged, rel=1e-6)
    assert backend.gpu_seconds == pytest.approx(charged, rel=1e-6)
    assert "faults: 1 failed launch(es), 1 retried" in format_report(result)


def test_a_trial_whose_launches_keep_failing_fails_after_max_retries(tmp_path: Path) -> None:
    doomed: dict[str, int] = {}

    def factory(backend: ReplayBackend) -> EpochObserver:
        def observe(handle: str, epoch: int, value: float) -> None:
            spec = backend.launch_spec(handle)
            if spec.rung == 1 and doomed.setdefault("trial", spec.trial_number) == (
                spec.trial_number
            ):
                backend.fail_launch(handle, "node lost")

        return observe

    run = run_replay(tmp_path, observer=factory, max_launch_retries=2)
    result = run.result
    number = doomed["trial"]
    ours = [r for r in result.launches if r.trial_number == number and r.rung == 1]
    assert [r.state for r in ours] == ["failed"] * 3
    assert result.retried_launches == 2 and result.failed_launches == 3
    assert run.study.trials[number].state == TrialState.FAIL
    assert result.trial_states[number] == "FAIL"
    assert result.best_trial is not None  # the others went on
    assert_consistent_steps(run.study)


def test_no_retries_when_max_launch_retries_is_zero(tmp_path: Path) -> None:
    victim, factory = _kill_once(rung=1, at_epoch=2)
    run = run_replay(tmp_path, observer=factory, max_launch_retries=0)  # type: ignore[arg-type]
    assert run.result.retried_launches == 0 and run.result.failed_launches == 1
    assert run.study.trials[victim["trial"]].state == TrialState.FAIL


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_max_launch_retries_must_be_a_whole_number(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="max_launch_retries"):
        run_replay(tmp_path, max_launch_retries=bad)


def test_seeded_preemptions_are_recovered_deterministically(tmp_path: Path) -> None:
    first = run_replay(tmp_path / "a", preemption_rate=0.15, seed=3)
    second = run_replay(tmp_path / "b", preemption_rate=0.15, seed=3)
    assert first.backend.faults_injected > 0
    assert first.backend.faults_injected == second.backend.faults_injected
    assert [r.state for r in first.result.launches] == [r.state for r in second.result.launches]
    assert first.result.retried_launches > 0
    assert first.result.best_trial is not None
    assert_consistent_steps(first.study)


@pytest.mark.parametrize("rate", [-0.1, 1.0, "0.1", float("nan")])
def test_preemption_rate_must_be_a_probability(rate: object) -> None:
    from replay_study import curves

    with pytest.raises(ValueError, match="preemption_rate"):
        ReplayBackend(curves(), "linear", 60.0, slots=2, preemption_rate=rate)  # type: ignore[arg-type]


def test_the_budget_guard_launches_nothing_it_cannot_pay_for(tmp_path: Path) -> None:
    from replay_study import PRICE, plan

    tight = plan(budget=plan().predicted_cost * 1.05)
    kills: list[int] = []

    def factory(backend: ReplayBackend) -> EpochObserver:
        def observe(handle: str, epoch: int, value: float) -> None:
            # Failures late in the last rung burn the margin: a retry cannot be afforded.
            if backend.launch_spec(handle).rung == 2 and epoch == 5 and len(kills) < 3:
                kills.append(epoch)
                backend.fail_launch(handle)

        return observe

    run = run_replay(tmp_path, observer=factory, the_plan=tight)
    result = run.result
    assert any(note.startswith("budget guard:") for note in result.notes), result.notes
    assert run.backend.gpu_seconds * PRICE <= tight.budget_dollars
    assert result.spent_dollars <= tight.budget_dollars
    assert result.best_trial is not None  # stopped trials keep their last value
    assert_consistent_steps(run.study)


def test_the_replan_counts_no_money_for_survivors_waiting_between_launches(tmp_path: Path) -> None:
    """Epochs and launches as planned, a budget 5 % above the plan: the re-plan after rung 0
    keeps every survivor. Survivors hold no workers between their launches; reading the
    study's ledger (which projects a running trial's charge up to now) it saw that wait as
    spent and cut rung 1 from 4 trials to 3 (before 2026-12-06)."""
    from replay_study import plan

    tight = plan(budget=plan().predicted_cost * 1.05)
    run = run_replay(tmp_path, the_plan=tight)
    result = run.result
    assert not any("survivor(s) can finish" in note for note in result.notes), result.notes
    assert [len(r.trials) for r in result.rungs] == [r.n_trials for r in tight.rungs]
    assert result.spent_dollars <= tight.budget_dollars
