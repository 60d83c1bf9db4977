"""The optuna-seer command: plan (both objectives), simulate, report, profile."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

import optuna_seer
from optuna_seer.cli import main
from optuna_seer.profile import Profile

ROOT = Path(optuna_seer.__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(
        json.dumps(
            {
                "epoch_seconds": 600,
                "scaling": {"1": 1.0, "2": 1.77, "4": 2.93, "8": 4.29},
                "epoch_cv": 0.05,
                "startup_seconds": 30,
            }
        )
    )
    return path


def test_plan_min_cost_writes_table_json_png(
    tmp_path: Path, profile_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "plan.json", tmp_path / "plan.png"
    code = main(
        [
            "plan", "--deadline", "12h", "--budget", "400", "--profile", str(profile_path),
            "--objective", "min-cost", "--configs", "27", "--max-epochs", "9", "--no-sky",
            "--samples", "200", "--out", str(out), "--png", str(png),
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "RubberBand plan" in text and "GPUs/trial" in text and "p95" in text
    record = json.loads(out.read_text())
    assert record["objective"] == "min-cost"
    assert record["prediction"]["jct_p95_s"] <= 12 * 3600
    assert png.read_bytes().startswith(PNG_MAGIC)

    code = main(
        ["simulate", "--plan", str(out), "--profile", str(profile_path), "--samples", "300",
         "--png", str(tmp_path / "sim.png")]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "P(finish by 12:00:00)" in text
    assert (tmp_path / "sim.png").read_bytes().startswith(PNG_MAGIC)

    measured = tmp_path / "run.json"
    measured.write_text(
        json.dumps(
            {
                "wall_seconds": record["prediction"]["jct_p50_s"] * 1.05,
                "dollars": record["prediction"]["cost_p50"],
            }
        )
    )
    code = main(["report", "--plan", str(out), "--measured", str(measured)])
    text = capsys.readouterr().out
    assert code == 0 and "predicted p50" in text and "1.050" in text


def test_plan_max_accuracy_uses_seer(
    tmp_path: Path, profile_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "plan", "--deadline", "12h", "--budget", "400", "--profile", str(profile_path),
            "--objective", "max-accuracy", "--instance", "p3.8xlarge", "--no-sky",
            "--samples", "100", "--out", str(tmp_path / "seer.json"),
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "SEER plan" in text and "p3.8xlarge" in text
    assert "seer_plan" in json.loads((tmp_path / "seer.json").read_text())


def test_plan_on_local_slots(profile_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "plan", "--deadline", "20h", "--profile", str(profile_path), "--configs", "9",
            "--max-epochs", "9", "--price-per-slot-hour", "0.5", "--max-gpus", "2",
            "--billing", "exact", "--queue", "0", "--boot", "0", "--samples", "100",
        ]
    )  # fmt: skip
    assert code == 0 and "local-slot" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--deadline", "1m"], 1, "infeasible"),
        (["--deadline", "12h", "--budget", "5"], 1, "over budget"),
        (["--deadline", "12h", "--objective", "max-accuracy"], 2, "--budget"),
        (["--deadline", "12h", "--instance", "p99.mega", "--no-sky"], 2, "p99.mega"),
        (["--deadline", "12h", "--billing", "weekly"], 2, "billing"),
    ],
)
def test_plan_errors_are_clear(
    profile_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    full = ["plan", "--profile", str(profile_path), "--samples", "50", "--no-sky", *argv]
    assert main(full) == code
    assert message in capsys.readouterr().err


def test_bad_duration_is_an_argparse_error(
    profile_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--profile", str(profile_path), "--deadline", "soon"])
    assert caught.value.code == 2
    assert "soon" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_profile_command_measures_real_gloo_training(tmp_path: Path) -> None:
    out = tmp_path / "profile.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "optuna_seer.cli", "profile", "--out", str(out),
         "--workers", "1,2", "--epochs", "2", "--repeats", "1"],
        env=env, capture_output=True, text=True, timeout=380,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    profile = Profile.load(out)
    assert [m.workers for m in profile.measurements] == [1, 2]
    assert all(len(m.epoch_seconds) == 2 for m in profile.measurements)
    assert profile.epoch_seconds > 0 and profile.startup_on(1) > 0 and profile.startup_on(2) > 0
    assert "2 worker(s)" in done.stdout


def test_report_reads_a_seer_ledger_from_storage(
    tmp_path: Path, profile_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    import optuna

    from optuna_seer.ledger import charge_trial, start_clock

    plan_path = tmp_path / "plan.json"
    argv = [
        "plan", "--deadline", "20h", "--profile", str(profile_path), "--configs", "9",
        "--max-epochs", "9", "--price-per-slot-hour", "2.0", "--samples", "50",
        "--out", str(plan_path),
    ]  # fmt: skip
    assert main(argv) == 0
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="seer", storage=storage)
    start_clock(study, time.time() - 100.0)
    trial = study.ask()
    frozen = study._storage.get_trial(trial._trial_id)
    charge_trial(study._storage, frozen, 1800.0, time.time())  # half a slot-hour
    study.tell(trial, 1.0)
    capsys.readouterr()
    assert main(["report", "--plan", str(plan_path), "--storage", storage, "--study", "seer"]) == 0
    text = capsys.readouterr().out
    assert "$1.0000" in text  # 1800 slot-seconds at $2/slot-hour
    assert "0:01:40" in text  # started 100 s before the trial finished


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_plan_on_spot_prices_from_a_local_moto_server(
    tmp_path: Path, profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--market spot asks EC2 (here a real moto server on 127.0.0.1 standing in for AWS)."""
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        out = tmp_path / "spot.json"
        code = main(
            ["plan", "--deadline", "12h", "--profile", str(profile_path), "--configs", "9",
             "--max-epochs", "9", "--market", "spot", "--instance", "g5.xlarge", "--no-sky",
             "--spot-interruptions", "0.05", "--samples", "100", "--out", str(out)]
        )  # fmt: skip
    finally:
        server.stop()
    assert code == 0
    stage = json.loads(out.read_text())["plan"]["stages"][0]
    assert stage["instance"]["market"] == "spot"
    assert stage["instance"]["source"] == "aws-describe-spot-price-history"
