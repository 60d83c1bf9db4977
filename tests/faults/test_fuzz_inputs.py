"""Malformed configurations, plans, profiles, templates and reports: each is refused early
with an error that names the bad value or key, never a traceback from deep inside.

The core dataclasses (Budget, Workload, ScalingCurve, plan_seer arguments, single Plan fields)
are fuzzed in ``tests/test_bad_input_fuzz.py``; this file covers what lies around them: the
other constructors, the ``optuna-seer`` command line, plan/profile/report files as users
write or truncate them, and the SkyPilot templates. Every case has a pytest id, so
``pytest -v`` lists them (and ``test_there_are_enough_cases`` counts them).
"""

from __future__ import annotations

from collections.abc import Callable
import copy
from dataclasses import dataclass
import json
import math
from pathlib import Path
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
import optuna
import pytest

from optuna_seer import Budget, ClusterLimits, Plan, SeerPruner, SeerSampler, Workload, plan_seer
from optuna_seer.backends.local import LocalBackend
from optuna_seer.cli.main import main
from optuna_seer.execution.tuner import ElasticTuner
from optuna_seer.integration.keys import STUDY_PLAN, STUDY_STARTED_AT
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.stage_plan import ElasticPlan
from optuna_seer.profiling.harness import load_profile
from optuna_seer.worker.context import trial_context

BUDGET = Budget(deadline="1h", dollars=10.0, price_per_gpu_hour=3.0)
WORKLOAD = Workload(epoch_seconds=60.0, scaling="amdahl:0.9", max_epochs=9, gpus_per_node=4)
VALID_PLAN: dict[str, Any] = plan_seer(BUDGET, WORKLOAD).to_dict()
VALID_PROFILE: dict[str, Any] = {"epoch_seconds": 60.0, "scaling": "amdahl:0.9"}
# What an error message says when it teaches what would be valid.
TEACHES = re.compile(
    r"must|valid|expected|give|need|should|pass|is not|not a|one of|choose|invalid|"
    r"cannot|unknown|only|lacks|missing|e\.g\.|known:|no such file",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Bad:
    """One malformed input: ``call(tmp_path)`` must raise one of ``errors`` naming one of
    ``names``."""

    id: str
    call: Callable[[Path], object]
    names: tuple[str, ...]
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _plan_with(edit: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(VALID_PLAN)
    edit(data)
    return data


def _profile_with(**changes: object) -> dict[str, Any]:
    return {**VALID_PROFILE, **changes}


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        sampler=SeerSampler(),
        pruner=SeerPruner(BUDGET, WORKLOAD),
        direction="maximize",
    )


def _tuner(tmp_path: Path, **overrides: Any) -> ElasticTuner:
    study = overrides.pop("study", None) or _study(tmp_path)
    options: dict[str, Any] = {
        "backend": LocalBackend(slots=2, gpus=(), log_dir=tmp_path / "logs"),
        "train": "examples/lightning_digits.py:train",
        "checkpoints": tmp_path / "ckpt",
        "search_space": lambda trial: trial.suggest_float("lr", 1e-3, 1e-1, log=True),
        "workload": WORKLOAD,
        "progress": False,
    }
    options.update(overrides)
    return ElasticTuner(study, **options)


def _node_env(**changes: str | None) -> dict[str, str]:
    env = {
        "SEER_STUDY": "s",
        "SEER_STORAGE": "sqlite:///unused.db",
        "SEER_TRIAL": "0",
        "SEER_RUNG": "0",
        "SEER_TARGET_EPOCHS": "1",
        "SEER_CHECKPOINT_URI": "/tmp/unused",
    }
    for key, value in changes.items():
        if value is None:
            env.pop(key)
        else:
            env[key] = value
    return env


# ------------------------------------------------------------------------- configurations
CONFIGURATIONS = [
    Bad("limits-max-gpus-0", lambda _: ClusterLimits(max_gpus=0), ("max_gpus",)),
    Bad("limits-max-gpus-str", lambda _: ClusterLimits(max_gpus="8"), ("max_gpus",)),  # type: ignore[arg-type]
    Bad("limits-max-gpus-float", lambda _: ClusterLimits(max_gpus=2.5), ("max_gpus",)),  # type: ignore[arg-type]
    Bad(
        "limits-provisioning-negative",
        lambda _: ClusterLimits(provisioning_seconds=-1.0),
        ("provisioning_seconds",),
    ),
    Bad(
        "limits-provisioning-nan",
        lambda _: ClusterLimits(provisioning_seconds=math.nan),
        ("provisioning_seconds",),
    ),
    Bad(
        "limits-provisioning-str",
        lambda _: ClusterLimits(provisioning_seconds="60"),  # type: ignore[arg-type]
        ("provisioning_seconds",),
    ),
    Bad("pruner-plan-is-a-path", lambda _: SeerPruner(plan="plan.json"), ("plan",)),  # type: ignore[arg-type]
    Bad("pruner-budget-without-workload", lambda _: SeerPruner(BUDGET), ("workload",)),
    Bad(
        "pruner-plan-and-budget",
        lambda _: SeerPruner(BUDGET, WORKLOAD, plan=Plan.from_dict(VALID_PLAN)),
        ("plan",),
    ),
    Bad("pruner-clock-not-callable", lambda _: SeerPruner(BUDGET, WORKLOAD, clock=3.0), ("clock",)),  # type: ignore[arg-type]
    Bad(
        "pruner-reduction-factor-1",
        lambda _: SeerPruner(BUDGET, WORKLOAD, reduction_factor=1),
        ("reduction_factor",),
    ),
    Bad(
        "pruner-limits-dict",
        lambda _: SeerPruner(BUDGET, WORKLOAD, limits={"max_gpus": 4}),
        ("limits",),
    ),  # type: ignore[arg-type]
    Bad("sampler-base-is-a-name", lambda _: SeerSampler("tpe"), ("base_sampler", "tpe")),  # type: ignore[arg-type]
    Bad("sampler-clock-not-callable", lambda _: SeerSampler(clock="now"), ("clock",)),  # type: ignore[arg-type]
    Bad("local-slots-0", lambda _: LocalBackend(slots=0), ("slots",)),
    Bad("local-slots-str", lambda _: LocalBackend(slots="2"), ("slots",)),  # type: ignore[arg-type]
    Bad("local-slots-bool", lambda _: LocalBackend(slots=True), ("slots",)),
    Bad("local-env-not-str", lambda _: LocalBackend(slots=1, env={"A": 1}), ("A", "env")),  # type: ignore[dict-item]
    Bad("tuner-study-is-a-name", lambda p: _tuner(p, study="digits"), ("study",)),
    Bad("tuner-backend-none", lambda p: _tuner(p, backend=None), ("backend",)),
    Bad("tuner-checkpoints-empty", lambda p: _tuner(p, checkpoints=""), ("checkpoints",)),
    Bad("tuner-drift-negative", lambda p: _tuner(p, drift_tolerance=-0.5), ("drift_tolerance",)),
    Bad("tuner-poll-zero", lambda p: _tuner(p, poll_seconds=0), ("poll_seconds",)),
    Bad(
        "tuner-retries-negative",
        lambda p: _tuner(p, max_launch_retries=-1),
        ("max_launch_retries",),
    ),
    Bad("tuner-train-int", lambda p: _tuner(p, train=42), ("train", "42")),
    Bad(
        "tuner-search-space-dict", lambda p: _tuner(p, search_space={"lr": 0.1}), ("search_space",)
    ),
    Bad("tuner-workload-dict", lambda p: _tuner(p, workload={"epoch_seconds": 1}), ("workload",)),
    Bad(
        "node-env-missing-study",
        lambda _: trial_context(_node_env(SEER_STUDY=None), fetch=False),
        ("SEER_STUDY",),
        (ValueError, TypeError, RuntimeError),
    ),
    Bad(
        "node-env-trial-not-a-number",
        lambda _: trial_context(_node_env(SEER_TRIAL="seven"), fetch=False),
        ("SEER_TRIAL", "seven"),
        (ValueError, TypeError, RuntimeError),
    ),
    Bad(
        "node-env-params-not-json",
        lambda _: trial_context(_node_env(SEER_PARAMS="{lr: 0.1"), fetch=False),
        ("SEER_PARAMS",),
        (ValueError, TypeError, RuntimeError),
    ),
]

# ------------------------------------------------------------------------------- plans
PLANS = [
    Bad(
        "plan-missing-rungs",
        lambda _: Plan.from_dict(_plan_with(lambda d: d.pop("rungs"))),
        ("rungs",),
    ),
    Bad(
        "plan-missing-reduction-factor",
        lambda _: Plan.from_dict(_plan_with(lambda d: d.pop("reduction_factor"))),
        ("reduction_factor",),
    ),
    Bad(
        "plan-rung-missing-cost",
        lambda _: Plan.from_dict(_plan_with(lambda d: d["rungs"][0].pop("cost"))),
        ("cost",),
    ),
    Bad(
        "plan-unknown-key",
        lambda _: Plan.from_dict(_plan_with(lambda d: d.update(colour="red"))),
        ("colour",),
    ),
    Bad(
        "plan-rung-unknown-key",
        lambda _: Plan.from_dict(_plan_with(lambda d: d["rungs"][1].update(gpu="A100"))),
        ("gpu",),
    ),
    Bad(
        "plan-deadline-negative",
        lambda _: Plan.from_dict(_plan_with(lambda d: d.update(deadline_s=-3600.0))),
        ("deadline_s",),
    ),
    Bad(
        "plan-budget-nan",
        lambda _: Plan.from_dict(_plan_with(lambda d: d.update(budget_dollars=math.nan))),
        ("budget_dollars",),
    ),
    Bad(
        "plan-price-string",
        lambda _: Plan.from_dict(_plan_with(lambda d: d.update(price_per_gpu_second="0.001"))),
        ("price_per_gpu_second",),
    ),
    Bad(
        "plan-rungs-not-monotone",
        lambda _: Plan.from_dict(
            _plan_with(lambda d: d["rungs"][-1].update(resource=d["rungs"][0]["resource"]))
        ),
        ("rung",),
    ),
    Bad(
        "plan-rung-trials-grow",
        lambda _: Plan.from_dict(
            _plan_with(lambda d: d["rungs"][-1].update(n_trials=d["rungs"][0]["n_trials"] + 5))
        ),
        ("trials",),
    ),
    Bad(
        "plan-rung-ends-before-start",
        lambda _: Plan.from_dict(_plan_with(lambda d: d["rungs"][0].update(end_s=-1.0))),
        ("end_s",),
    ),
    Bad(
        "plan-rung-index-gap",
        lambda _: Plan.from_dict(_plan_with(lambda d: d["rungs"][1].update(index=5))),
        ("indices", "index"),
    ),
    Bad(
        "plan-rungs-empty",
        lambda _: Plan.from_dict(_plan_with(lambda d: d.update(rungs=[]))),
        ("rungs", "Rung"),
    ),
    Bad(
        "plan-rungs-not-a-list",
        lambda _: Plan.from_dict(_plan_with(lambda d: d.update(rungs=5))),
        ("rungs",),
    ),
    Bad(
        "plan-rung-not-a-dict",
        lambda _: Plan.from_dict(_plan_with(lambda d: d["rungs"].__setitem__(0, "rung-0"))),
        ("rung-0", "rung 0"),
    ),
    Bad("plan-is-a-list", lambda _: Plan.from_dict([VALID_PLAN]), ("list",)),  # type: ignore[arg-type]
]

# ---------------------------------------------------------------------------- profiles
PROFILES = [
    Bad(
        "profile-missing-epoch-seconds",
        lambda _: Profile.from_dict({"scaling": "linear"}),
        ("epoch_seconds",),
    ),
    Bad(
        "profile-missing-scaling", lambda _: Profile.from_dict({"epoch_seconds": 60}), ("scaling",)
    ),
    Bad(
        "profile-speedup-above-workers",
        lambda _: Profile.from_dict(_profile_with(scaling={"1": 1.0, "2": 3.0})),
        ("3.0", "2"),
    ),
    Bad(
        "profile-speedup-table-decreasing",
        lambda _: Profile.from_dict(_profile_with(scaling={"1": 1.0, "2": 1.8, "4": 1.5})),
        ("1.5", "4"),
    ),
    Bad(
        "profile-epoch-zero",
        lambda _: Profile.from_dict(_profile_with(epoch_seconds=0)),
        ("epoch_seconds",),
    ),
    Bad(
        "profile-epoch-negative",
        lambda _: Profile.from_dict(_profile_with(epoch_seconds=-5)),
        ("epoch_seconds",),
    ),
    Bad(
        "profile-epoch-string",
        lambda _: Profile.from_dict(_profile_with(epoch_seconds="600")),
        ("epoch_seconds",),
    ),
    Bad(
        "profile-cv-string",
        lambda _: Profile.from_dict(_profile_with(epoch_cv="low")),
        ("epoch_cv",),
    ),
    Bad(
        "profile-startup-worker-zero",
        lambda _: Profile.from_dict(_profile_with(startup_seconds={"0": 5.0})),
        ("startup_seconds",),
    ),
    Bad(
        "profile-contention-alone-not-1",
        lambda _: Profile.from_dict(_profile_with(contention={"1": 2.0})),
        ("contention",),
    ),
    Bad("profile-unknown-key", lambda _: Profile.from_dict(_profile_with(gpu="A100")), ("gpu",)),
    Bad("profile-format-2", lambda _: Profile.from_dict(_profile_with(format=2)), ("format",)),
    Bad(
        "profile-measurement-missing-workers",
        lambda _: Profile.from_dict(_profile_with(measurements=[{"epoch_seconds": [1.0]}])),
        ("workers",),
    ),
    Bad(
        "profile-measurement-not-a-dict",
        lambda _: Profile.from_dict(_profile_with(measurements=["1 worker: 60 s"])),
        ("measurements", "1 worker: 60 s"),
    ),
    Bad(
        "profile-measurement-no-epochs",
        lambda _: Profile.from_dict(
            _profile_with(measurements=[{"workers": 1, "epoch_seconds": []}])
        ),
        ("epoch",),
    ),
    Bad(
        "profile-measurement-workers-string",
        lambda _: Profile.from_dict(
            _profile_with(measurements=[{"workers": "two", "epoch_seconds": [1.0]}])
        ),
        ("workers", "two"),
    ),
    Bad(
        "profile-measurements-not-a-list",
        lambda _: Profile.from_dict(_profile_with(measurements=5)),
        ("measurements",),
    ),
    Bad(
        "profile-file-truncated",
        lambda p: load_profile(_write(p / "p.json", '{"epoch_seconds": 6')),
        ("p.json",),
    ),
    Bad(
        "profile-file-a-list",
        lambda p: load_profile(_write(p / "p.json", "[60, 0.9]")),
        ("p.json",),
    ),
    Bad("profile-file-missing", lambda p: load_profile(p / "nowhere.json"), ("nowhere.json",)),
    Bad(
        "profile-file-not-utf8",
        lambda p: load_profile(_write_bytes(p / "p.json", b'{"epoch_seconds": \xff}')),
        ("p.json",),
    ),
]


def _script(tmp_path: Path) -> str:
    return str(_write(tmp_path / "train.py", "def fit():\n    pass\n")) + ":fit"


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------- templates
def _sky_backend(tmp_path: Path, **overrides: Any) -> object:
    from optuna_seer.backends.skypilot.backend import SkyPilotBackend

    options: dict[str, Any] = {
        "script": "train.py",
        "resources": "A100:8",
        "clouds": ["aws"],
        "checkpoints": "s3://bucket/seer",
        "storage": "grpc://10.0.0.2:13000",
        "price_per_gpu_hour": 2.0,
        "workdir": str(tmp_path),
    }
    options.update(overrides)
    return SkyPilotBackend(**options)


def _template(tmp_path: Path, text: str) -> object:
    return _sky_backend(tmp_path, template=_write(tmp_path / "trial.yaml", text))


def _render(tmp_path: Path, nodes: int, gpus: int) -> object:
    from optuna_seer.backends.base import LaunchSpec
    from optuna_seer.backends.skypilot.backend import SkyPilotBackend
    from optuna_seer.planning.placement import TrialSlot

    backend = _sky_backend(tmp_path)
    assert isinstance(backend, SkyPilotBackend)
    spec = LaunchSpec(
        study_name="s",
        storage="grpc://10.0.0.2:13000",
        trial_number=0,
        params={},
        rung=0,
        target_epochs=1,
        workers=max(1, nodes * gpus),
        checkpoint_uri="s3://bucket/seer/s/trial-0",
    )
    return backend.trial_task(spec, TrialSlot("seer-x-0", nodes=nodes, gpus_per_node=gpus))


TEMPLATES = [
    Bad("sky-accelerator-count-0", lambda p: _sky_backend(p, resources="A100:0"), ("A100:0",)),
    Bad(
        "sky-accelerator-count-word",
        lambda p: _sky_backend(p, resources="A100:eight"),
        ("A100:eight",),
    ),
    Bad("sky-accelerator-empty", lambda p: _sky_backend(p, resources=""), ("accelerators",)),
    Bad(
        "sky-accelerator-two-colons",
        lambda p: _sky_backend(p, resources="A100:8:spot"),
        ("A100:8:spot",),
    ),
    Bad(
        "sky-resources-with-infra",
        lambda p: _sky_backend(p, resources={"accelerators": "A100:8", "infra": "aws"}),
        ("infra",),
    ),
    Bad("sky-cloud-unknown", lambda p: _sky_backend(p, clouds=["nosuchcloud"]), ("nosuchcloud",)),
    Bad("sky-clouds-a-string", lambda p: _sky_backend(p, clouds="aws"), ("clouds",)),
    Bad(
        "sky-candidate-order",
        lambda p: _sky_backend(p, candidate_order="random"),
        ("candidate_order",),
    ),
    Bad(
        "sky-checkpoints-not-s3",
        lambda p: _sky_backend(p, checkpoints="/data/ckpt"),
        ("checkpoints",),
    ),
    Bad("sky-max-gpus-0", lambda p: _sky_backend(p, max_gpus=0), ("max_gpus",)),
    Bad("sky-node-size-too-big", lambda p: _sky_backend(p, node_sizes=[16]), ("16",)),
    Bad("sky-proxy-port", lambda p: _sky_backend(p, proxy_port=70000), ("proxy_port", "70000")),
    Bad("sky-autostop-0", lambda p: _sky_backend(p, autostop_minutes=0), ("autostop_minutes",)),
    Bad(
        "sky-price-negative",
        lambda p: _sky_backend(p, price_per_gpu_hour=-1.0),
        ("price_per_gpu_hour",),
    ),
    Bad(
        "sky-template-missing", lambda p: _sky_backend(p, template=p / "nope.yaml"), ("nope.yaml",)
    ),
    Bad(
        "sky-template-invalid-yaml",
        lambda p: _template(p, "run: [echo\nenvs: {a: 1\n"),
        ("trial.yaml",),
    ),
    Bad("sky-template-a-list", lambda p: _template(p, "- run: echo\n"), ("trial.yaml",)),
    Bad("sky-template-no-run", lambda p: _template(p, "name: t\n"), ("run",)),
    Bad("sky-template-envs-a-list", lambda p: _template(p, "envs: [A, B]\nrun: echo\n"), ("envs",)),
    Bad(
        "sky-template-secrets-a-string",
        lambda p: _template(p, "secrets: SEER_STORAGE\nrun: echo\n"),
        ("secrets",),
    ),
    Bad("sky-template-typo", lambda p: _template(p, "num_node: 2\nrun: echo\n"), ("num_node",)),
    Bad("sky-template-run-a-number", lambda p: _template(p, "run: 42\n"), ("run",)),
    Bad(
        "sky-template-setup-a-list",
        lambda p: _template(p, "setup: [pip, install]\nrun: echo\n"),
        ("setup",),
    ),
    Bad(
        "sky-render-negative-nodes",
        lambda p: _render(p, nodes=-1, gpus=8),
        ("num_nodes", "-1", "nodes"),
    ),
    Bad(
        "sky-render-zero-gpus",
        lambda p: _render(p, nodes=1, gpus=0),
        ("gpus_per_node", "A100:0", "0"),
    ),
]


# ----------------------------------------------------------------------------- reports
def _study_for_report(tmp_path: Path, **attrs: Any) -> str:
    url = f"sqlite:///{tmp_path / 'run.db'}"
    study = optuna.create_study(storage=url, study_name="run")
    for key, value in attrs.items():
        study._storage.set_study_system_attr(study._study_id, key, value)
    return url


REPORTS = [
    Bad(
        "report-study-without-plan",
        lambda p: _report_from_study(p, {STUDY_STARTED_AT: 0.0}),
        ("run",),
    ),
    Bad(
        "report-study-plan-malformed",
        lambda p: _report_from_study(p, {STUDY_STARTED_AT: 0.0, STUDY_PLAN: {"rungs": "x"}}),
        ("rungs", "plan"),
    ),
]


def _report_from_study(tmp_path: Path, attrs: dict[str, Any]) -> object:
    url = _study_for_report(tmp_path, **attrs)
    study = optuna.load_study(study_name="run", storage=url)
    trial = study.ask()
    study.tell(trial, 1.0)
    return _report_plan(url)


def _report_plan(url: str) -> object:
    """What ``optuna-seer report --storage`` does with the study's stored plan."""
    from optuna_seer.cli.report_command import measured_from_study

    _, _, attrs = measured_from_study(url, "run")
    if STUDY_PLAN not in attrs:
        raise ValueError("study 'run' holds no SEER plan; pass --plan plan.json.")
    return Plan.from_dict(attrs[STUDY_PLAN])


ALL = CONFIGURATIONS + PLANS + PROFILES + TEMPLATES + REPORTS


def _assert_teaches(error: BaseException, names: tuple[str, ...]) -> None:
    text = str(error)
    assert any(name in text for name in names), f"{text!r} names none of {names}"
    assert TEACHES.search(text), f"{text!r} does not say what would be valid"


# Gaps in modules this file's author may not edit (their owners' to fix): strict xfails, so
# a fix shows up as an XPASS to remove from here.
@pytest.mark.parametrize("case", ALL, ids=lambda case: case.id)
def test_malformed_input_is_refused_with_a_message_naming_it(
    case: Bad, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if case.id.startswith("sky-"):
        request.getfixturevalue("sky_home_dir")
    with pytest.raises(case.errors) as caught:
        case.call(tmp_path)
    _assert_teaches(caught.value, case.names)


# -------------------------------------------------------------------------- command line
@dataclass(frozen=True)
class BadCli:
    id: str
    argv: Callable[[Path], list[str]]
    names: tuple[str, ...]


def _files(tmp_path: Path) -> dict[str, str]:
    """A valid profile and plan file, and broken ones, under ``tmp_path``."""
    quote = PriceQuote("local-slot", "cpu", 1, 3.0)
    elastic = ElasticPlan.from_seer(Plan.from_dict(VALID_PLAN), quote)
    plan = {
        "format": 1,
        "plan": elastic.to_dict(),
        "deadline_s": 3600.0,
        "prediction": {"jct_p50_s": 3000.0, "cost_p50": 5.0},
    }
    good_plan = json.dumps(plan)
    return {
        "profile": str(_write(tmp_path / "profile.json", json.dumps(VALID_PROFILE))),
        "bad_profile": str(
            _write(tmp_path / "bad_profile.json", json.dumps(_profile_with(epoch_seconds=-1)))
        ),
        "plan": str(_write(tmp_path / "plan.json", good_plan)),
        "truncated_plan": str(
            _write(tmp_path / "truncated.json", good_plan[: len(good_plan) // 2])
        ),
        "empty_plan": str(_write(tmp_path / "empty.json", "")),
        "stageless_plan": str(
            _write(tmp_path / "stageless.json", json.dumps({"format": 1, "plan": {"rungs": []}}))
        ),
        "measured_truncated": str(_write(tmp_path / "run.json", '{"wall_seconds": 12')),
        "measured_list": str(_write(tmp_path / "run_list.json", "[12, 0.5]")),
    }


PLAN_ARGS = ["plan", "--deadline", "1h", "--price-per-slot-hour", "3", "--samples", "20"]

CLI = [
    BadCli(
        "cli-plan-deadline-word",
        lambda p: ["plan", "--deadline", "soon", "--profile", _files(p)["profile"]],
        ("soon",),
    ),
    BadCli(
        "cli-plan-deadline-negative",
        lambda p: ["plan", "--deadline=-1h", "--profile", _files(p)["profile"]],
        ("-1h",),
    ),
    BadCli(
        "cli-plan-budget-negative",
        lambda p: [*PLAN_ARGS, "--budget", "-5", "--profile", _files(p)["profile"]],
        ("-5",),
    ),
    BadCli(
        "cli-plan-budget-nan",
        lambda p: [*PLAN_ARGS, "--budget", "nan", "--profile", _files(p)["profile"]],
        ("nan",),
    ),
    BadCli(
        "cli-plan-objective",
        lambda p: [*PLAN_ARGS, "--objective", "fastest", "--profile", _files(p)["profile"]],
        ("fastest",),
    ),
    BadCli(
        "cli-plan-profile-missing",
        lambda p: [*PLAN_ARGS, "--profile", str(p / "nowhere.json")],
        ("nowhere.json",),
    ),
    BadCli(
        "cli-plan-profile-invalid",
        lambda p: [*PLAN_ARGS, "--profile", _files(p)["bad_profile"]],
        ("epoch_seconds",),
    ),
    BadCli(
        "cli-plan-configs-0",
        lambda p: [*PLAN_ARGS, "--configs", "0", "--profile", _files(p)["profile"]],
        ("configs", "0"),
    ),
    BadCli(
        "cli-plan-reduction-factor-1",
        lambda p: [*PLAN_ARGS, "--reduction-factor", "1", "--profile", _files(p)["profile"]],
        ("reduction", "1"),
    ),
    BadCli(
        "cli-plan-quantile-2",
        lambda p: [*PLAN_ARGS, "--quantile", "2", "--profile", _files(p)["profile"]],
        ("quantile", "2"),
    ),
    BadCli(
        "cli-plan-samples-0",
        lambda p: [*PLAN_ARGS, "--samples", "0", "--profile", _files(p)["profile"]],
        ("samples", "0"),
    ),
    BadCli(
        "cli-plan-max-gpus-0",
        lambda p: [*PLAN_ARGS, "--max-gpus", "0", "--profile", _files(p)["profile"]],
        ("max_gpus", "max-gpus", "0"),
    ),
    BadCli(
        "cli-plan-billing-unknown",
        lambda p: [*PLAN_ARGS, "--billing", "per-fortnight", "--profile", _files(p)["profile"]],
        ("per-fortnight",),
    ),
    BadCli(
        "cli-plan-instance-unknown",
        lambda p: [
            "plan",
            "--deadline",
            "1h",
            "--no-sky",
            "--instance",
            "p99.huge",
            "--profile",
            _files(p)["profile"],
        ],
        ("p99.huge",),
    ),
    BadCli(
        "cli-plan-prices-missing",
        lambda p: [
            "plan",
            "--deadline",
            "1h",
            "--prices",
            str(p / "prices.csv"),
            "--profile",
            _files(p)["profile"],
        ],
        ("prices.csv",),
    ),
    BadCli(
        "cli-plan-max-accuracy-no-budget",
        lambda p: [*PLAN_ARGS, "--objective", "max-accuracy", "--profile", _files(p)["profile"]],
        ("--budget",),
    ),
    BadCli(
        "cli-simulate-plan-truncated",
        lambda p: [
            "simulate",
            "--plan",
            _files(p)["truncated_plan"],
            "--profile",
            _files(p)["profile"],
        ],
        ("truncated.json",),
    ),
    BadCli(
        "cli-simulate-plan-empty",
        lambda p: [
            "simulate",
            "--plan",
            _files(p)["empty_plan"],
            "--profile",
            _files(p)["profile"],
        ],
        ("empty.json",),
    ),
    BadCli(
        "cli-simulate-plan-no-stages",
        lambda p: [
            "simulate",
            "--plan",
            _files(p)["stageless_plan"],
            "--profile",
            _files(p)["profile"],
        ],
        ("stages",),
    ),
    BadCli(
        "cli-simulate-plan-is-profile",
        lambda p: ["simulate", "--plan", _files(p)["profile"], "--profile", _files(p)["profile"]],
        ("profile.json",),
    ),
    BadCli(
        "cli-simulate-samples-word",
        lambda p: [
            "simulate",
            "--plan",
            _files(p)["plan"],
            "--profile",
            _files(p)["profile"],
            "--samples",
            "many",
        ],
        ("many",),
    ),
    BadCli(
        "cli-simulate-queue-word",
        lambda p: [
            "simulate",
            "--plan",
            _files(p)["plan"],
            "--profile",
            _files(p)["profile"],
            "--queue",
            "later",
        ],
        ("later",),
    ),
    BadCli(
        "cli-profile-workers-0",
        lambda p: ["profile", "--out", str(p / "o.json"), "--workers", "0,2"],
        ("0,2",),
    ),
    BadCli(
        "cli-profile-workers-word",
        lambda p: ["profile", "--out", str(p / "o.json"), "--workers", "two"],
        ("two",),
    ),
    BadCli(
        "cli-profile-workers-without-1",
        lambda p: ["profile", "--out", str(p / "o.json"), "--workers", "2", "4"],
        ("--workers",),
    ),
    BadCli(
        "cli-profile-backend-unknown",
        lambda p: ["profile", "--out", str(p / "o.json"), "--backend", "slurm"],
        ("slurm",),
    ),
    BadCli(
        "cli-profile-local-no-script",
        lambda p: ["profile", "--out", str(p / "o.json"), "--backend", "local"],
        ("--script",),
    ),
    BadCli(
        "cli-profile-local-epochs-reversed",
        lambda p: [
            "profile",
            "--out",
            str(p / "o.json"),
            "--backend",
            "local",
            "--script",
            _script(p),
            "--epochs",
            "3",
            "1",
        ],
        ("--epochs",),
    ),
    BadCli(
        "cli-profile-local-params-not-json",
        lambda p: [
            "profile",
            "--out",
            str(p / "o.json"),
            "--backend",
            "local",
            "--script",
            _script(p),
            "--params",
            "{lr: 0.1",
        ],
        ("--params", "{lr: 0.1"),
    ),
    BadCli(
        "cli-profile-local-env-no-equals",
        lambda p: [
            "profile",
            "--out",
            str(p / "o.json"),
            "--backend",
            "local",
            "--script",
            _script(p),
            "--params",
            "{}",
            "--env",
            "DEBUG",
        ],
        ("DEBUG",),
    ),
    BadCli(
        "cli-profile-probe-two-epochs",
        lambda p: ["profile", "--out", str(p / "o.json"), "--epochs", "1", "3"],
        ("--epochs",),
    ),
    BadCli("cli-report-nothing", lambda p: ["report"], ("--plan", "--storage")),
    BadCli(
        "cli-report-measured-truncated",
        lambda p: [
            "report",
            "--plan",
            _files(p)["plan"],
            "--measured",
            _files(p)["measured_truncated"],
        ],
        ("run.json",),
    ),
    BadCli(
        "cli-report-measured-list",
        lambda p: ["report", "--plan", _files(p)["plan"], "--measured", _files(p)["measured_list"]],
        ("run_list.json",),
    ),
    BadCli(
        "cli-report-plan-truncated",
        lambda p: [
            "report",
            "--plan",
            _files(p)["truncated_plan"],
            "--measured",
            _files(p)["measured_list"],
        ],
        ("truncated.json",),
    ),
    BadCli(
        "cli-report-study-unknown",
        lambda p: ["report", "--storage", _study_for_report(p), "--study", "nosuchstudy"],
        ("nosuchstudy",),
    ),
    BadCli(
        "cli-report-study-not-seer",
        lambda p: ["report", "--storage", _study_for_report(p), "--study", "run"],
        ("run",),
    ),
    BadCli(
        "cli-report-storage-bad-dialect",
        lambda p: ["report", "--storage", "nosuchdialect://u:pw@host/db", "--study", "run"],
        ("nosuchdialect",),
    ),
    BadCli("cli-unknown-subcommand", lambda p: ["optimise"], ("optimise",)),
]


@pytest.mark.parametrize("case", CLI, ids=[c.id for c in CLI])
def test_malformed_command_line_exits_non_zero_with_one_message(
    case: BadCli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = case.argv(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses before main's handler runs
        code = exit_.code if isinstance(exit_.code, int) else 2
    err = capsys.readouterr().err
    assert code != 0, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    last = lines[-1]
    # One line, from argparse (no usage) or from main's handler.
    assert len(lines) == 1 and last.startswith("optuna-seer"), err
    assert any(name in last for name in case.names), f"{last!r} names none of {case.names}"
    assert TEACHES.search(last) or "invalid choice" in last, f"{last!r} does not teach"


def test_there_are_enough_cases() -> None:
    # Issue #6 item 6: at least 50 malformed inputs across all five kinds.
    kinds = [CONFIGURATIONS, PLANS, PROFILES, TEMPLATES, REPORTS, CLI]
    assert all(kinds) and sum(map(len, kinds)) >= 50
    ids = [c.id for c in ALL] + [c.id for c in CLI]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- generated JSON garbage
JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**6), 10**6),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [*VALID_PROFILE, "epoch_cv", "startup_seconds", "contention", "measurements"]
        ),
        JSONISH,
        max_size=4,
    )
)
def test_generated_profiles_are_accepted_or_refused_cleanly(changes: dict[str, Any]) -> None:
    try:
        profile = Profile.from_dict({**VALID_PROFILE, **changes})
    except (ValueError, TypeError) as error:
        assert any(key in str(error) for key in changes), f"{error!r} names none of {changes}"
    else:  # the garbage happened to be valid: it round-trips
        assert Profile.from_dict(profile.to_dict()).to_dict() == profile.to_dict()


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.dictionaries(st.sampled_from([*VALID_PLAN, "extra"]), JSONISH, max_size=3).map(
            lambda changes: {**VALID_PLAN, **changes}
        ),
        st.tuples(
            st.integers(0, len(VALID_PLAN["rungs"]) - 1),
            st.sampled_from([*VALID_PLAN["rungs"][0], "extra"]),
            JSONISH,
        ).map(lambda edit: _plan_with(lambda d: d["rungs"][edit[0]].update({edit[1]: edit[2]}))),
        JSONISH,
    )
)
def test_generated_plans_are_accepted_or_refused_cleanly(data: Any) -> None:
    try:
        plan = Plan.from_dict(data)
    except (ValueError, TypeError):
        pass  # which key it names is checked case by case above
    else:
        assert Plan.from_dict(plan.to_dict()) == plan


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=40))
def test_generated_plan_files_are_refused_by_the_command_line(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        plan = _write(Path(scratch) / "plan.json", text)
        profile = _write(Path(scratch) / "profile.json", json.dumps(VALID_PROFILE))
        try:
            code = main(
                ["simulate", "--plan", str(plan), "--profile", str(profile), "--samples", "5"]
            )
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
    assert code != 0
