"""Measured provisioning kept in the profile: ``optuna-seer profile`` records it (from a
``provisioning --out`` file or from the studies' launches), old profiles still load, and
``plan``/``simulate``/``tune``/``report`` given the profile draw a new cluster's delay from
it."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from optuna_seer._optuna import storage_of, trial_id_of
from optuna_seer.cli.main import main
from optuna_seer.integration.keys import TRIAL_LAUNCHES
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.provisioning import ProvisioningModel
from optuna_seer.profiling.harness import load_profile

OLD_PROFILE = {"epoch_seconds": 600, "scaling": "amdahl:0.95", "epoch_cv": 0.05,
               "startup_seconds": 60}  # fmt: skip
LAUNCHES = [
    {"queue_s": 600.0, "boot_s": 1800.0, "setup_s": 600.0},
    {"queue_s": 0.5, "boot_s": 0.0, "setup_s": 0.0},  # placed on a cluster already up
    {"queue_s": 300.0, "boot_s": 1500.0, "setup_s": 300.0},
]


def _past_runs(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    study = optuna.create_study(storage=url, study_name="past")
    trial = study.ask()
    storage_of(study).set_trial_system_attr(trial_id_of(trial), TRIAL_LAUNCHES, LAUNCHES)
    study.tell(trial, 1.0)
    return url


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_profile_keeps_measured_provisioning_and_old_files_still_load(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps(OLD_PROFILE))
    assert load_profile(old).provisioning is None
    assert "provisioning" not in load_profile(old).to_dict()  # older readers load what we write
    model = ProvisioningModel.measured(LAUNCHES[::2])
    profile = Profile.from_dict({**OLD_PROFILE, "provisioning": model.to_dict()})
    assert profile.provisioning == model
    again = Profile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again.provisioning == model and again.to_dict() == profile.to_dict()
    with pytest.raises(ValueError, match="the profile's provisioning has unknown keys"):
        Profile.from_dict({**OLD_PROFILE, "provisioning": {"boot": 3}})
    with pytest.raises(ValueError, match=r"provisioning samples=.* must be \[queue_s, boot_s\]"):
        Profile.from_dict({**OLD_PROFILE, "provisioning": {"samples": [["a", 1]]}})
    with pytest.raises(TypeError, match="must be a ProvisioningModel"):
        Profile(epoch_seconds=1, scaling="linear", provisioning={"queue_s": 1})  # type: ignore[arg-type]


def test_profile_records_the_delays_and_the_next_plan_uses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _past_runs(tmp_path)
    old, measured = tmp_path / "profile.json", tmp_path / "measured.json"
    old.write_text(json.dumps(OLD_PROFILE))
    code, out, err = _run(
        ["profile", f"--update={old}", f"--from-study={url}", "--study-name=past",
         f"--out={measured}"], capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "2 measured launches" in out
    model = load_profile(measured).provisioning
    assert model is not None and model.samples == ((600.0, 2400.0), (300.0, 1800.0))
    assert load_profile(measured).epoch_seconds == 600  # the rest of the profile is kept

    # The same through a file written by 'optuna-seer provisioning'.
    file, via_file = tmp_path / "provisioning.json", tmp_path / "via-file.json"
    assert main(["provisioning", f"--storage={url}", "--study=past", f"--out={file}"]) == 0
    capsys.readouterr()
    code, _, err = _run(
        ["profile", f"--update={old}", f"--provisioning={file}", f"--out={via_file}"], capsys
    )
    assert code == 0, err
    assert load_profile(via_file).provisioning == model

    plan = [
        "plan", "--deadline=24h", "--configs=9", "--max-epochs=9", "--instance=p3.2xlarge",
        "--no-sky", "--max-gpus=9", "--samples=100", "--objective=min-cost",
    ]  # fmt: skip
    code, constants, err = _run([*plan, f"--profile={old}", f"--out={tmp_path / 'a.json'}"], capsys)
    assert code == 0, err
    assert "the --queue/--boot/--provisioning-cv constants" in constants
    code, from_profile, err = _run(
        [*plan, f"--profile={measured}", f"--out={tmp_path / 'b.json'}"], capsys
    )
    assert code == 0, err
    assert (
        "provisioning (2 measured launches)" in from_profile and "from the profile" in from_profile
    )
    fast = json.loads((tmp_path / "a.json").read_text())["prediction"]["jct_p50_s"]
    slow = json.loads((tmp_path / "b.json").read_text())["prediction"]["jct_p50_s"]
    assert slow - fast >= 2100 - 180  # at least one cluster's measured delay (min 2,100 s)

    # --provisioning on the command line wins over the profile's.
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"queue_s": 0, "boot_s": 0, "cv": 0, "samples": [[1, 2]]}))
    code, out, _ = _run([*plan, f"--profile={measured}", f"--provisioning={flat}"], capsys)
    assert code == 0 and f"from --provisioning {flat}" in out and "1 measured launches" in out

    code, out, err = _run(
        ["simulate", f"--plan={tmp_path / 'a.json'}", f"--profile={measured}", "--samples=100"],
        capsys,
    )
    assert code == 0, err
    assert "provisioning (2 measured launches)" in out and "from the profile" in out
    sim_p50 = out.split("time  mean")[1].split("p50 ")[1].split()[0]
    hours, minutes, seconds = (int(part) for part in sim_p50.split(":"))
    assert hours * 3600 + minutes * 60 + seconds >= fast + 2100 - 180


def test_tune_on_replay_draws_the_profiles_measured_delays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ProvisioningModel.measured(LAUNCHES[::2])
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({**OLD_PROFILE, "provisioning": model.to_dict()}))
    run = tmp_path / "run.json"
    code, out, err = _run(
        [
            "tune", "--backend=replay", "--deadline=8h", "--budget=500", f"--profile={profile}",
            "--configs=9", "--max-epochs=3", "--instance=p3.2xlarge", "--no-sky",
            "--max-gpus=9", "--samples=100", f"--run-out={run}",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "provisioning (2 measured launches)" in out and "from the profile" in out
    leases = json.loads(run.read_text())["leases"]
    assert leases and {(lease["queue_s"], lease["boot_s"]) for lease in leases} <= {
        (600.0, 2400.0),
        (300.0, 1800.0),
    }


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--study-name=past"], "add --from-study STORAGE_URL"),
        (["--from-study=sqlite:///x.db"], "needs --study-name NAME"),
        (["--update=old.json"], "adds measured provisioning: give --provisioning FILE"),
        (["--provisioning=p.json", "--from-study=sqlite:///x.db", "--study-name=a"], "pass one"),
        (["--provisioning=missing.json"], "cannot read provisioning missing.json"),
        (["--provisioning=empty.json"], "holds no measured launches"),
        (["--provisioning=bad.json"], "--provisioning bad.json: provisioning has unknown keys"),
    ],
)
def test_profile_provisioning_errors_are_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    match: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.json").write_text(json.dumps(OLD_PROFILE))
    (tmp_path / "empty.json").write_text(json.dumps({"queue_s": 60, "boot_s": 120}))
    (tmp_path / "bad.json").write_text(json.dumps({"boot": 1}))
    (tmp_path / "p.json").write_text(json.dumps({"samples": [[1, 2]]}))
    code, _, err = _run(["profile", "--out=new.json", *argv], capsys)
    assert code == 2 and match in err, err
    assert not (tmp_path / "new.json").exists()


def test_report_simulates_with_the_profiles_measured_delays_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ProvisioningModel.measured(LAUNCHES[::2])
    old, measured = tmp_path / "old.json", tmp_path / "measured.json"
    old.write_text(json.dumps(OLD_PROFILE))
    measured.write_text(json.dumps({**OLD_PROFILE, "provisioning": model.to_dict()}))
    plan_file, run = tmp_path / "plan.json", tmp_path / "run.json"
    code, _, err = _run(
        ["plan", "--deadline=24h", "--configs=9", "--max-epochs=9", "--instance=p3.2xlarge",
         "--no-sky", "--max-gpus=9", "--samples=100", "--objective=min-cost",
         f"--profile={old}", f"--out={plan_file}"], capsys,
    )  # fmt: skip
    assert code == 0, err
    run.write_text(json.dumps({"wall_seconds": 20000.0, "dollars": 50.0}))
    report = ["report", f"--plan={plan_file}", f"--measured={run}", "--samples=100"]

    def predicted_p50(out: str) -> int:
        row = next(line for line in out.splitlines() if line.startswith("time"))
        hours, minutes, seconds = (int(part) for part in row.split()[1].split(":"))
        return hours * 3600 + minutes * 60 + seconds

    code, constants, err = _run([*report, f"--profile={old}"], capsys)
    assert code == 0, err
    assert "the --queue/--boot/--provisioning-cv constants" in constants.splitlines()[0]
    code, from_profile, err = _run([*report, f"--profile={measured}"], capsys)
    assert code == 0, err
    first = from_profile.splitlines()[0]
    assert "provisioning (2 measured launches)" in first and "from the profile" in first
    # The measured delays (2,100 s or more per cluster) are in the predicted time.
    assert predicted_p50(from_profile) >= predicted_p50(constants) + 2100 - 180
    # --provisioning on the command line wins over the profile's.
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"queue_s": 0, "boot_s": 0, "cv": 0, "samples": [[1, 2]]}))
    code, out, _ = _run([*report, f"--profile={measured}", f"--provisioning={flat}"], capsys)
    assert code == 0 and f"from --provisioning {flat}" in out.splitlines()[0]
    assert predicted_p50(out) < predicted_p50(from_profile)
