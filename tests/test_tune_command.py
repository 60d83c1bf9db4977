"""``optuna-seer tune``: plan, show, confirm, execute and report, on the replay backend (the
real executor on a simulated clock) and, slow, on local slots with the digits example."""

from __future__ import annotations

import io
import json
from pathlib import Path
import tempfile

import pytest

from optuna_seer.cli.main import main
from tests.elastic_support import DIGITS_TRAIN

PROFILE = {"epoch_seconds": 600, "scaling": "amdahl:0.95", "epoch_cv": 0.05, "startup_seconds": 60}


def _profile(tmp_path: Path, data: dict[str, object] = PROFILE) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data))
    return path


def _tune(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["tune", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_min_cost_on_replay_plans_runs_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "run.json"
    code, out, err = _tune(
        [
            "--backend=replay", "--objective=min-cost", "--deadline=6h", "--budget=500",
            f"--profile={_profile(tmp_path)}", "--configs=27", "--max-epochs=9",
            "--instance=p3.2xlarge", "--instance=p3.8xlarge", "--no-sky", "--max-gpus=16",
            "--samples=200", "--billing=per-hour", f"--run-out={out_json}",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "RubberBand plan" in out and "best static cluster" in out
    assert "time  mean" in out and "P(finish by deadline 6:00:00)" in out
    assert "measured / predicted" in out and "deadline 6:00:00: met" in out
    record = json.loads(out_json.read_text())
    assert record["wall_seconds"] <= 6 * 3600
    assert record["billing"] == "per-hour"
    # Per-hour billing: every lease is billed whole hours on every node.
    for lease in record["leases"]:
        price = lease["dollars"] / lease["nodes"]
        hours = price / {"p3.2xlarge": 3.06, "p3.8xlarge": 12.24}[lease["instance"]]
        assert hours == pytest.approx(round(hours)) and round(hours) >= 1
    assert record["dollars"] == pytest.approx(sum(lease["dollars"] for lease in record["leases"]))
    assert 0.8 < record["wall_seconds"] / record["prediction"]["jct_p50_s"] < 1.2


def test_max_accuracy_on_replay_runs_seers_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"  # the replay's checkpoint directory is made here
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code, out, err = _tune(
        [
            "--backend=replay", "--objective=max-accuracy", "--deadline=4h", "--budget=40",
            f"--profile={_profile(tmp_path)}", "--configs=27", "--max-epochs=9",
            "--price-per-slot-hour=3", "--max-gpus=8", "--samples=100",
        ],
        capsys,
    )  # fmt: skip
    assert code in (0, 1), err
    assert "SEER plan" in out and "measured / predicted" in out and "best: trial" in out
    assert list(scratch.iterdir()) == []  # and removed when the run ends (it was left behind)


def test_tune_runs_the_plan_that_plan_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A wide epoch spread on a tight budget: SEER's plan that holds at p95 (what `plan` prints)
    # is narrower than the one that holds only in expectation, so a `tune` that planned on its
    # own would run another plan than the one the user read.
    profile = _profile(tmp_path, {**PROFILE, "epoch_cv": 0.3})
    common = [
        "--objective=max-accuracy", "--deadline=4h", "--budget=20", f"--profile={profile}",
        "--configs=81", "--max-epochs=9", "--price-per-slot-hour=3", "--max-gpus=8",
        "--samples=100",
    ]  # fmt: skip
    assert main(["plan", *common, f"--out={tmp_path / 'plan.json'}"]) in (0, 1)
    code, _, err = _tune(
        ["--backend=replay", *common, f"--run-out={tmp_path / 'run.json'}"], capsys
    )
    assert code in (0, 1), err
    planned = json.loads((tmp_path / "plan.json").read_text())
    assert [r["n_trials"] for r in planned["seer_plan"]["rungs"]] == [5, 2]  # p95, not 9/3/1
    assert json.loads((tmp_path / "run.json").read_text())["plan"] == planned["plan"]


def test_local_asks_for_confirmation_and_needs_yes_without_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args = [
        "--backend=local", "--deadline=1h", "--budget=5", f"--profile={_profile(tmp_path)}",
        f"--script={DIGITS_TRAIN}", "--slots=2", "--cpu", "--configs=2",
        "--reduction-factor=2", "--max-epochs=2",
    ]  # fmt: skip
    code, out, err = _tune(args, capsys)
    assert code == 2
    assert "pass --yes" in err
    assert "time  mean" in out  # the plan and its prediction came first
    code, _, err = _tune([a for a in args if not a.startswith("--script")], capsys)
    assert code == 2 and "needs --script" in err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_min_cost_on_local_slots_runs_the_digits_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIGITS_REPEATS", "1")
    monkeypatch.chdir(tmp_path)
    profile = _profile(tmp_path, {"epoch_seconds": 5, "scaling": "linear", "startup_seconds": 15})
    code, out, err = _tune(
        [
            "--backend=local", "--yes", "--deadline=30m", "--budget=5", f"--profile={profile}",
            f"--script={DIGITS_TRAIN}", "--slots=2", "--cpu", "--configs=2",
            "--reduction-factor=2", "--max-epochs=2", "--price-per-slot-hour=3",
            "--samples=50", f"--storage=sqlite:///{tmp_path / 'tune.db'}",
            f"--run-out={tmp_path / 'run.json'}",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "measured / predicted" in out and "best: trial" in out
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["dollars"] > 0 and record["leases"][0]["queue_s"] == 0


def test_skypilot_needs_s3_checkpoints_and_a_confirmation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    args = [
        "--backend=skypilot", "--deadline=6h", "--budget=500", f"--profile={_profile(tmp_path)}",
        f"--script={DIGITS_TRAIN}", "--configs=9", "--max-epochs=9", "--no-sky",
        "--instance=p3.8xlarge", "--checkpoints=s3://bucket/prefix", "--samples=100",
    ]  # fmt: skip
    code, out, err = _tune(args, capsys)
    assert code == 2 and "pass --yes" in err
    assert "p3.8xlarge" in out and "time  mean" in out  # planned and shown before asking
    code, _, err = _tune([*args[:-2], "--checkpoints=./local", "--samples=100"], capsys)
    assert code == 2 and "s3://" in err


def test_spot_mix_on_replay_puts_stages_on_spot_and_reclaims_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "instance_type,accelerator,gpus,dollars_per_hour,market,region,source,date\n"
        "g1,V100,1,3.06,on-demand,,test,2026-12\n"
        "g1,V100,1,0.92,spot,,test,2026-12\n"
    )
    out_json = tmp_path / "run.json"
    code, out, err = _tune(
        [
            "--backend=replay", "--spot-mix", f"--prices={prices}", "--instance=g1",
            "--spot-interruptions=0.5", "--deadline=5h", "--budget=500",
            f"--profile={_profile(tmp_path)}", "--configs=27", "--max-epochs=9",
            "--max-gpus=27", "--samples=200", f"--run-out={out_json}",
            f"--png={tmp_path / 'plan.png'}",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "effective $/h" in out and "spot/on-demand mix" in out and "all on-demand" in out
    assert "reclaims expected" in out  # each spot stage's expected recovery, also charted
    assert (tmp_path / "plan.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    record = json.loads(out_json.read_text())
    markets = {stage["instance"]["market"] for stage in record["plan"]["stages"]}
    assert "spot" in markets
    assert record["preemptions"] > 0 and record["wall_seconds"] <= 5 * 3600
    code, _, err = _tune(
        ["--backend=local", "--spot-mix", "--deadline=1h", "--budget=5",
         f"--profile={_profile(tmp_path)}", f"--script={DIGITS_TRAIN}", "--slots=2", "--cpu"],
        capsys,
    )  # fmt: skip
    assert code == 2 and "needs a cloud" in err
