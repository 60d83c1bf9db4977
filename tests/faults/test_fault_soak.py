"""The soak script on a replayed study: random faults, nothing lost, nothing overspent."""

from __future__ import annotations

import pytest

from benchmarks import soak


def test_soak_recovers_every_study_and_stays_in_budget(capsys: pytest.CaptureFixture[str]) -> None:
    assert soak.main(["--faults", "20", "--dataset", "wine"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("faults injected ")
    assert "studies lost 0" in line and "dollars over budget 0.0000" in line


def test_soak_refuses_a_non_positive_fault_count() -> None:
    with pytest.raises(SystemExit):
        soak.main(["--faults", "0"])
