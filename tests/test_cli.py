"""The optuna-seer command: plan (both objectives), simulate, report, profile."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

import optuna_seer
from optuna_seer.cli.main import main
from optuna_seer.planning.profile import Profile
from optuna_seer.profiling.harness import load_profile

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


def test_png_without_matplotlib_names_the_extra_to_install(
    tmp_path: Path,
    profile_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from optuna_seer.cli.plots import PLOT_EXTRA, PlottingUnavailableError, plot_timeline

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    code = main(
        [
            "plan", "--deadline", "20h", "--profile", str(profile_path), "--configs", "9",
            "--max-epochs", "9", "--price-per-slot-hour", "0.5", "--max-gpus", "2",
            "--samples", "50", "--png", str(tmp_path / "plan.png"),
        ]
    )  # fmt: skip
    assert code == 2
    assert f"pip install '.[{PLOT_EXTRA}]' in an optuna-seer clone" in capsys.readouterr().err
    assert not (tmp_path / "plan.png").exists()
    with pytest.raises(PlottingUnavailableError, match="matplotlib"):
        plot_timeline(None, tmp_path / "timeline.png")  # type: ignore[arg-type]


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
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU processes (gloo) anywhere: a 1-GPU machine refuses 2
    done = subprocess.run(
        [sys.executable, "-m", "optuna_seer.cli", "profile", "--out", str(out),
         "--workers", "1,2", "--epochs", "2", "--repeats", "1"],
        env=env, capture_output=True, text=True, timeout=380,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    profile = load_profile(out)
    assert [m.workers for m in profile.measurements] == [1, 2]
    assert all(len(m.epoch_seconds) == 2 for m in profile.measurements)
    assert profile.epoch_seconds > 0 and profile.startup_on(1) > 0 and profile.startup_on(2) > 0
    assert "2 worker(s)" in done.stdout


def test_report_reads_a_seer_ledger_from_storage(
    tmp_path: Path, profile_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    import optuna

    from optuna_seer.integration.ledger import charge_trial, start_clock

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


def _seer_study(storage: str, name: str) -> object:
    import optuna

    from optuna_seer import Budget, SeerPruner, SeerSampler, Workload
    from optuna_seer.planning.cost_model import ClusterLimits

    pruner = SeerPruner(
        Budget(deadline=600.0, dollars=1.0, price_per_gpu_hour=3.6),
        Workload(epoch_seconds=5.0, scaling="linear", max_epochs=9, startup_seconds=10.0),
        limits=ClusterLimits(max_gpus=2),
        max_configs=9,
    )
    return optuna.create_study(
        storage=storage, study_name=name, sampler=SeerSampler(), pruner=pruner
    )


def test_report_from_storage_alone_uses_the_stored_prediction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report --storage --study` (no plan file): the prediction stored with the run, against
    the study's clock and ledger; cost compared as the ledger charges it (per use)."""
    import time

    import optuna

    from optuna_seer.integration.keys import TRIAL_STOP_REASON
    from optuna_seer.integration.ledger import charge_trial, start_clock
    from optuna_seer.integration.prediction import store_prediction
    from optuna_seer.planning.prices import PriceQuote
    from optuna_seer.planning.simulator import simulate
    from optuna_seer.planning.stage_plan import ElasticPlan

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = _seer_study(storage, "run")
    assert isinstance(study, optuna.Study)
    seer = study.pruner.plan  # type: ignore[attr-defined]
    plan = ElasticPlan.from_seer(seer, PriceQuote("local-slot", "cpu", 1, 3.6))
    profile = Profile(epoch_seconds=5.0, scaling="linear", startup_seconds=10.0)
    record = store_prediction(study, plan, profile, simulate(plan, profile, samples=20))
    assert record["jct_p50_s"] == pytest.approx(seer.predicted_seconds)
    start_clock(study, time.time() - record["jct_p50_s"])
    trial = study.ask()
    used_slot_seconds = record["used_cost"] / 0.001  # $3.6/slot-hour = $0.001/slot-second
    charge_trial(study._storage, study._storage.get_trial(trial._trial_id), used_slot_seconds,
                 time.time())  # fmt: skip
    study.tell(trial, 1.0)
    capsys.readouterr()
    assert main(["report", "--storage", storage, "--study", "run"]) == 0
    text = capsys.readouterr().out
    assert "stored with the run" in text and "SEER's ledger" in text
    time_row, cost_row = (
        line.split() for line in text.splitlines() if line[:6] in ("time  ", "cost  ")
    )
    assert float(cost_row[-1]) == pytest.approx(1.0, abs=1e-3)
    assert 0.99 < float(time_row[-1]) < 1.2

    other = f"sqlite:///{tmp_path / 'other.db'}"
    study = _seer_study(other, "plain")
    assert isinstance(study, optuna.Study)
    start_clock(study, time.time() - 10.0)
    trial = study.ask()
    study._storage.set_trial_system_attr(trial._trial_id, TRIAL_STOP_REASON, "deadline: 5 s")
    study.tell(trial, 1.0)
    assert main(["report", "--storage", other, "--study", "plain"]) == 0
    text = capsys.readouterr().out
    assert "deterministic model" in text and "1 trial(s) were stopped by the deadline" in text
    assert main(["report", "--storage", other]) == 2
    assert "--storage URL --study NAME" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "local"], "--script"),
        (["--backend", "local", "--script", "x.py:train"], "no such file"),
        (["--backend", "local", "--script", "EX", "--epochs", "3"], "two counts"),
        (["--backend", "local", "--script", "EX", "--env", "NOEQUALS"], "KEY=VALUE"),
        (["--backend", "local", "--script", "EX", "--params", "[1]"], "JSON object"),
        (["--workers", "2", "4"], "must include 1"),
        (["--contention", "2"], "--backend local"),
    ],
)
def test_profile_bad_arguments_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    example = f"{ROOT / 'examples' / 'torch_digits.py'}:train"
    argv = [example if a == "EX" else a for a in argv]
    assert main(["profile", "--out", str(tmp_path / "p.json"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_profile_local_backend_measures_the_users_trial(tmp_path: Path) -> None:
    """Real launches of examples/torch_digits.py:train through LocalBackend (torchrun DDP
    over gloo at 2 workers), reporting to a scratch SQLite study."""
    out = tmp_path / "profile.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU processes (gloo) anywhere: a 1-GPU machine refuses 2
    done = subprocess.run(
        [sys.executable, "-m", "optuna_seer.cli", "profile", "--backend", "local",
         "--script", f"{ROOT / 'examples' / 'torch_digits.py'}:train",
         "--workers", "1", "2", "--epochs", "1", "2", "--env", "DIGITS_REPEATS=1",
         "--log-dir", str(tmp_path / "logs"), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    profile = load_profile(out)
    assert [m.workers for m in profile.measurements] == [1, 2]
    assert all(len(m.startup_seconds) == 1 for m in profile.measurements)
    assert profile.epoch_seconds > 0 and profile.startup_on(1) > 0
    assert "torch_digits.py:train" in profile.source
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert len(logs) == 4  # one fresh trial per launch: 2 worker counts x 2 epoch counts
    assert "2 worker(s)" in done.stdout
