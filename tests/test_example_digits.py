"""The main job, end to end: examples/lightning_digits.py tunes digits with real DDP trials."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
import re

from elastic_support import REPO
import optuna
from optuna.trial import TrialState
import pytest

from optuna_seer.backends import local
from optuna_seer.integration.keys import TRIAL_TIE_BREAK
from optuna_seer.planning.profile import Profile
from optuna_seer.profiling.harness import save_profile


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_lightning_digits_example_runs_to_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DIGITS_REPEATS", "1")  # small epochs; inherited by the workers
    # Two CPU slots (DDP over gloo) on any machine, a one-GPU one too: the example runs in this
    # process, so its LocalBackend sees no GPU here and hides them from its launches.
    monkeypatch.setattr(local, "visible_gpus", lambda: ())
    spec = importlib.util.spec_from_file_location(
        "lightning_digits", REPO / "examples" / "lightning_digits.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # The plan comes from a profile file, as scripts/demo.sh makes one (the measured times
    # are written here by hand: 1 s epochs, 20 s start-up, to keep the run small).
    profile = tmp_path / "profile.json"
    save_profile(Profile(epoch_seconds=1.0, scaling="amdahl:0.8", startup_seconds=20.0), profile)
    argv = [
        "--deadline", "4m",
        "--max-configs", "4",
        "--profile", str(profile),
        "--max-epochs", "3",
        "--slots", "2",
        "--storage", f"sqlite:///{tmp_path / 'seer.db'}",
        "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    code = example.main(argv)
    printed = capsys.readouterr().out
    assert code == 0
    report = (tmp_path / "out" / "report.txt").read_text()
    assert report in printed
    assert "planning for 204 s of the 4m deadline" in printed  # the default 15 % margin
    assert f"workload measured in {profile}: 1.00 s per epoch on one slot, 20.0 s" in printed
    assert re.search(r"deadline 0:03:24 \(met\)", report)
    assert "overhead per launch" in report and "best: trial" in report
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 0
    # Each DDP worker's rank 0 kept the validation loss with the accuracy, for the final pick.
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{tmp_path / 'seer.db'}")
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = trial.system_attrs[TRIAL_TIE_BREAK]
        assert record["name"] == "val_loss" and record["step"] == max(trial.intermediate_values)
        assert math.isfinite(record["value"])

    # The same command again: the study finished, so it says so, prints the stored result
    # and runs nothing (no new study, no launch).
    assert example.main(argv) == 0
    again = capsys.readouterr().out
    assert "study 'digits' already finished; nothing was run" in again
    assert report.splitlines()[-1] in again  # the same best trial
    assert sorted(p.name for p in (tmp_path / "out" / "ckpt").iterdir()) == ["digits"]
    # Another deadline for the same study is refused, naming both values.
    with pytest.raises(SystemExit) as refused:
        example.main([*argv, "--deadline", "5m"])
    assert refused.value.code == 2
    assert "deadline 204 s (stored) vs 255 s (now)" in capsys.readouterr().err
    # A profile that is not there is named, with what would do.
    with pytest.raises(SystemExit) as missing:
        example.main([*argv, "--profile", str(tmp_path / "none.json")])
    assert missing.value.code == 2
    assert "cannot read profile" in capsys.readouterr().err
