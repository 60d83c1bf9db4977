"""The soak script on a replayed study: random faults, nothing lost, nothing overspent."""

from __future__ import annotations

import pytest

from benchmarks import soak


def test_soak_recovers_every_study_and_stays_in_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert soak.main(["--faults", "20", "--dataset", "wine"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("faults injected ")
    assert "studies lost 0" in line and "dollars over budget 0.0000" in line


def test_soak_reports_each_fault_kind_beside_the_totals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert soak.main(["--faults", "20", "--dataset", "wine"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    total = int(lines[-1].split(",")[0].removeprefix("faults injected "))
    rows = {line[:32].strip(): line[32:].split() for line in lines[1:-1]}
    assert set(rows) == set(soak.DEFENCES)
    assert sum(int(row[0]) for row in rows.values()) == total
    assert all(row[2] == "0" for row in rows.values())  # no study lost with any kind


def test_soak_refuses_a_non_positive_fault_count() -> None:
    with pytest.raises(SystemExit):
        soak.main(["--faults", "0"])
