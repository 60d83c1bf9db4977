"""The soak script on a replayed study: random faults, nothing lost, nothing overspent."""

from __future__ import annotations

import pytest

from benchmarks import soak


def test_soak_recovers_every_study_and_stays_in_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert soak.main(["--faults", "20", "--dataset", "wine", "--no-new-faults"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("faults injected ")
    assert "studies lost 0" in line and "dollars over budget 0.0000" in line


def test_soak_reports_each_fault_kind_beside_the_totals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert soak.main(["--faults", "20", "--dataset", "wine", "--no-new-faults"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    total = int(lines[-1].split(",")[0].removeprefix("faults injected "))
    rows = {line[:32].strip(): line[32:].split() for line in lines[1 : lines.index("")]}
    assert set(rows) == set(soak.DEFENCES)
    assert sum(int(row[0]) for row in rows.values()) == total
    assert all(row[2] == "0" for row in rows.values())  # no study lost with any kind


def test_soak_reports_epochs_lost_per_recovery_before_and_after(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Checkpoints every epoch and on SIGTERM: at most the killed epoch is lost per fault."""
    assert soak.main(["--faults", "20", "--dataset", "wine", "--no-new-faults"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    table = lines[lines.index("") + 1 : -1]
    assert table[0].startswith("checkpoints") and len(table) == 3
    before, after = ({"lost": int(r.split()[-3]), "per": float(r.split()[-2])} for r in table[1:])
    assert table[1].startswith("before: rung ends only")
    assert table[2].startswith("after: every 1 epoch(s) + on SIGTERM")
    assert after["lost"] < before["lost"] and after["per"] < before["per"]
    fault_rows = {line[:32].strip(): int(line[32:].split()[0]) for line in lines[1:3]}
    # One epoch per SIGKILL (reported, its checkpoint not yet stored), none per preemption.
    assert after["lost"] <= fault_rows[soak.KILLED]
    assert f"epochs lost {after['lost']} ({after['per']:.2f} per recovery)" in lines[-1]


def test_soak_without_compare_runs_one_arm(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--faults", "5", "--dataset", "wine", "--no-new-faults", "--no-compare"]
    assert soak.main([*args, "--checkpoint-every", "0", "--no-sigterm"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith(("before", "after"))] == [
        "before"
    ]
    with pytest.raises(SystemExit):
        soak.main([*args, "--checkpoint-every", "-1"])


def test_soak_refuses_a_non_positive_fault_count() -> None:
    with pytest.raises(SystemExit):
        soak.main(["--faults", "0"])
    with pytest.raises(SystemExit):
        soak.main(["--faults", "1", "--new-fault-rounds", "0"])


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_new_faults_are_each_handled_and_reported_beside_the_old(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One round of each new fault (processes, a proxy): all handled, nothing lost."""
    from benchmarks import soak_new_faults

    args = ["--faults", "5", "--dataset", "wine", "--new-fault-rounds", "1"]
    assert soak.main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    old = next(i for i, line in enumerate(lines) if line.startswith("faults injected "))
    assert lines[old + 1] == "" and lines[old + 2].startswith("new fault ")
    rows = {line[:34].strip(): line[34:].split() for line in lines[old + 3 : -1]}
    assert set(rows) == set(soak_new_faults.NEW_DEFENCES)
    assert all(row[:4] == ["1", "1", "0", "0.0000"] for row in rows.values()), rows
    assert lines[-1] == (
        "new faults injected 5, handled as expected 5, studies lost 0, dollars over budget 0.0000"
    )
