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
    rows = {line[:32].strip(): line[32:].split() for line in lines[1:-1]}
    assert set(rows) == set(soak.DEFENCES)
    assert sum(int(row[0]) for row in rows.values()) == total
    assert all(row[2] == "0" for row in rows.values())  # no study lost with any kind


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
        "new faults injected 4, handled as expected 4, studies lost 0, dollars over budget 0.0000"
    )
