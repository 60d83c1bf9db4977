"""Extremes on the ``optuna-seer`` command line and in its files: never a traceback, never a hang.

Every case calls :func:`optuna_seer.cli.main.main` in-process under a ``SIGALRM`` time bound
(:data:`CASE_SECONDS`). A result is good when the exit code is 0 (valid input: nothing on
stderr, no warning), or 2 (refused) or 1 (infeasible, over budget, a failed launch) with
exactly one line on stderr and no "Traceback".

First, one regression test per case the reliability issue measured (each failed before the
fix: a hang, a ``ZeroDivisionError``, an ``OverflowError``, a ``RecursionError``, a
``KeyError``, a negative deadline accepted). Then Hypothesis fuzzes every sub-command's
numeric, duration and path arguments and the profile, plan and measured-run files (random
JSON, deep nesting, huge/NaN/inf/negative numbers, wrong types). Numbers are drawn from the
extremes (zero, negative, NaN, inf, far past every limit) and from small valid values: a
valid job that is merely large (a million samples) takes long by design and is not drawn.
``profile`` is fuzzed with its measurements replaced by instant fakes (the real probe and
``LocalBackend`` launches are tested in ``tests/test_profile*.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import contextlib
from dataclasses import dataclass
import io
import json
import math
from pathlib import Path
import signal
import tempfile
from types import FrameType
from typing import Any
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from optuna_seer.cli.main import main
from optuna_seer.planning.budget import Budget
from optuna_seer.planning.plan import Plan, format_seconds
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Measurement, Profile
from optuna_seer.planning.rubberband import PlanningProblem, SuccessiveHalvingJob
from optuna_seer.planning.seer import plan_seer
from optuna_seer.planning.workload import Workload
from optuna_seer.profiling.harness import MAX_JSON_DEPTH, parse_json

CASE_SECONDS = 8.0
"""Each command gets this long; the slowest valid case here takes well under a second."""

PROFILE: dict[str, Any] = {
    "epoch_seconds": 600,
    "scaling": {"1": 1.0, "2": 1.77, "4": 2.93, "8": 4.29},
    "epoch_cv": 0.05,
    "startup_seconds": 30,
}
FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ------------------------------------------------------------------ running one command
class _TooSlow(BaseException):
    """Raised by the alarm: a ``BaseException`` so that no ``except Exception`` eats it."""


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str
    warned: tuple[str, ...]


def run_cli(argv: Sequence[str], seconds: float = CASE_SECONDS) -> Outcome:
    """``main(argv)`` with stdout/stderr captured, warnings recorded, under a time bound."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise _TooSlow

    previous = signal.signal(signal.SIGALRM, alarm)
    out, err = io.StringIO(), io.StringIO()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            warnings.simplefilter("always")
            try:
                code = main(list(argv))
            except SystemExit as exit_:  # argparse refuses before the handler runs
                code = (
                    exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
                )
    except _TooSlow:
        pytest.fail(f"optuna-seer {' '.join(argv)!r:.300} ran past {seconds} s (a hang)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(tuple(argv), code, out.getvalue(), err.getvalue(), tuple(map(str, caught)))


def assert_clean(result: Outcome) -> None:
    """Exit 0 with nothing on stderr, or 1/2 with exactly one line there; no traceback."""
    shown = f"{' '.join(result.argv)!r:.400}\nstderr: {result.err!r:.600}"
    assert "Traceback" not in result.err, shown
    assert not result.warned, f"{shown}\nwarnings: {result.warned}"
    assert result.code in (0, 1, 2), f"exit code {result.code}: {shown}"
    if result.code == 0:
        assert result.err == "", shown
    else:
        lines = result.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("optuna-seer"), shown


def refused(argv: Sequence[str], *names: str) -> str:
    """Run ``argv``; it must exit 2 with one line naming every one of ``names``."""
    result = run_cli(argv)
    assert_clean(result)
    assert result.code == 2, f"{result.code}: {result.err!r}"
    for name in names:
        assert name in result.err, f"{name!r} not in {result.err!r}"
    return result.err


# ---------------------------------------------------------------------------- fixtures
def _write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A valid profile, plan (with its prediction) and measured run."""
    root = tmp_path_factory.mktemp("extremes")
    profile = _write(root / "profile.json", PROFILE)
    plan = root / "plan.json"
    result = run_cli([*_plan_argv(profile), "--out", str(plan)])
    assert result.code == 0, result.err
    measured = _write(root / "run.json", {"wall_seconds": 5400, "dollars": 12.5})
    return {"root": root, "profile": profile, "plan": plan, "measured": measured}


def _plan_argv(profile: Path | str) -> list[str]:
    return [
        "plan", "--deadline", "6h", "--profile", str(profile), "--configs", "9",
        "--max-epochs", "9", "--price-per-slot-hour", "2", "--samples", "20", "--max-gpus", "8",
    ]  # fmt: skip


def _deep(depth: int, innermost: Any = 1) -> str:
    return "[" * depth + json.dumps(innermost) + "]" * depth


# ------------------------------------------------- the cases the issue measured on main
def test_a_huge_slot_price_is_refused_at_once_not_planned_forever(files: dict[str, Path]) -> None:
    # Before: rubberband_planner looped forever on infinite costs.
    argv = [*_plan_argv(files["profile"]), "--price-per-slot-hour", "1e308"]
    err = refused(argv, "--price-per-slot-hour", "1e+308", "1e+06")
    assert "> 0" in err


def test_a_zero_slot_price_is_refused(files: dict[str, Path]) -> None:
    # Before: ZeroDivisionError in the RubberBand summary (static cost / plan cost).
    refused([*_plan_argv(files["profile"]), "--price-per-slot-hour", "0"], "0.0", "> 0")


@pytest.mark.parametrize("price", [0.0, 1e308, math.inf, math.nan])
def test_the_planners_refuse_free_and_overflowing_prices(price: float) -> None:
    profile = Profile(epoch_seconds=60.0, scaling="linear")
    job = SuccessiveHalvingJob.geometric(9, 3, 9)
    quotes: tuple[PriceQuote, ...]
    try:
        quotes = (PriceQuote("slot", "cpu", 1, price),)
    except ValueError:  # PriceQuote itself refuses inf and NaN
        return
    with pytest.raises(ValueError, match=r"dollars_per_hour of slot=.*at most 1e\+06"):
        PlanningProblem(job, profile, quotes, 3600.0)
    with pytest.raises(ValueError, match="price_per_gpu_hour"):
        Budget("1h", 10.0, price)


def test_a_deadline_past_the_planners_range_is_refused(files: dict[str, Path]) -> None:
    # Before: OverflowError in format_seconds.
    refused([*_plan_argv(files["profile"]), "--deadline", "1e300"], "1e300", "1e+13")
    refused([*_plan_argv(files["profile"]), "--deadline", "99999999999999d"], "1e+13")
    job, profile = (
        SuccessiveHalvingJob.geometric(9, 3, 9),
        Profile(epoch_seconds=60.0, scaling="linear"),
    )
    with pytest.raises(ValueError, match=r"deadline_s=1e\+300 must be at most 1e\+13"):
        PlanningProblem(job, profile, (PriceQuote("slot", "cpu", 1, 1.0),), 1e300)


def test_format_seconds_and_printing_a_plan_never_overflow() -> None:
    # Before: OverflowError for anything past timedelta's range, print(plan) at 1e15 s.
    assert format_seconds(1e300) == "1e+300 s"
    assert format_seconds(math.inf) == "inf s" and format_seconds(math.nan) == "nan s"
    assert format_seconds(-100) == "-0:01:40" and format_seconds(5430) == "1:30:30"
    budget = Budget("12h", 400.0, 3.0)
    plan = plan_seer(budget, Workload(epoch_seconds=600, scaling="amdahl:0.95", max_epochs=27))
    far = Plan.from_dict({**plan.to_dict(), "deadline_s": 1e15})
    assert "1e+15 s deadline" in str(far)


def test_a_seer_plan_with_the_longest_deadline_prints(files: dict[str, Path]) -> None:
    result = run_cli(
        [*_plan_argv(files["profile"]), "--deadline", "1e13", "--objective", "max-accuracy",
         "--budget", "100"]
    )  # fmt: skip
    assert_clean(result)
    assert result.code == 0 and "115740740 days" in result.out


def test_a_profile_whose_training_overflows_is_refused_by_both_planners() -> None:
    with pytest.raises(ValueError, match=r"takes 1\.62e\+302 s on one GPU .*1e\+13 s"):
        plan_seer(
            Budget("1h", 10.0, 1.0), Workload(epoch_seconds=6e300, scaling="linear", max_epochs=27)
        )
    job = SuccessiveHalvingJob.geometric(9, 3, 27)
    with pytest.raises(ValueError, match="epoch_seconds"):
        PlanningProblem(
            job,
            Profile(epoch_seconds=6e300, scaling="linear"),
            (PriceQuote("slot", "cpu", 1, 1.0),),
            3600.0,
        )


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 100_000])
def test_deeply_nested_json_is_refused_in_every_file(files: dict[str, Path], depth: int) -> None:
    # Before: RecursionError from json (100,000 levels), or deep inside a repr (900).
    root = files["root"]
    deep = _write(root / f"deep-{depth}.json", _deep(depth))
    deep_dict = _write(root / f"deep-dict-{depth}.json", '{"a":' * depth + "1" + "}" * depth)
    for path in (deep, deep_dict):
        refused([*_plan_argv(path)], "profile", str(path), "nests JSON")
        refused(["simulate", "--plan", str(path), "--profile", str(files["profile"])], "plan")
        refused(["report", "--plan", str(files["plan"]), "--measured", str(path)], "--measured")
    with pytest.raises(ValueError, match="nests JSON"):
        parse_json(_deep(depth), "text")


def test_a_report_on_a_plan_with_an_empty_prediction_names_what_is_missing(
    files: dict[str, Path],
) -> None:
    # Before: KeyError 'jct_p50_s'.
    record = json.loads(files["plan"].read_text())
    root = files["root"]
    for name, prediction, names in (
        ("empty", {}, ("jct_p50_s", "--profile")),
        ("zero-time", {**record["prediction"], "jct_p50_s": 0}, ("jct_p50_s=0", "> 0")),
        ("string-cost", {**record["prediction"], "cost_p50": "5"}, ("cost_p50='5'",)),
        ("list", [1, 2], ("prediction=[1, 2]",)),
    ):
        plan = _write(root / f"plan-{name}.json", {**record, "prediction": prediction})
        refused(["report", "--plan", str(plan), "--measured", str(files["measured"])], *names)


@pytest.mark.parametrize("deadline", [-100, 0, 1e300, "12h", True])
def test_simulate_refuses_a_plan_file_with_an_invalid_deadline(
    files: dict[str, Path], deadline: object
) -> None:
    # Before: deadline_s -100 was simulated and printed as "-1 day, 23:58:20".
    record = json.loads(files["plan"].read_text())
    plan = _write(files["root"] / "plan-deadline.json", {**record, "deadline_s": deadline})
    refused(
        ["simulate", "--plan", str(plan), "--profile", str(files["profile"]), "--samples", "5"],
        "deadline_s",
    )


def test_argparse_errors_are_one_line_without_usage(files: dict[str, Path]) -> None:
    # Before: argparse printed its usage, then the error: two lines or more.
    refused(["plan", "--deadline", "soon", "--profile", str(files["profile"])], "soon")
    refused(["tune"], "tune")
    refused([], "command")


def test_a_message_with_a_line_break_is_printed_on_one_line(files: dict[str, Path]) -> None:
    odd = files["root"] / "two\nlines.json"
    refused([*_plan_argv(odd)], "two lines.json")


# ------------------------------------------------------------------- value strategies
def _texts(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from(values)


HUGE = "9" * 40
NUMBER = st.one_of(
    _texts("0", "-0", "-1", "1e-320", "1e308", "1e309", "-1e308", "nan", "NaN", "inf", "-inf",
           HUGE, "-" + HUGE, "", " ", "abc", "0x10", "1_0", "1e3"),
    st.floats().map(repr),
    st.floats(0.0, 10.0).map(repr),
)  # fmt: skip
# Whole numbers: degenerate, far past every limit, or small and valid.
WHOLE = st.one_of(
    _texts("0", "-1", HUGE, "-" + HUGE, "1e3", "1.5", "nan", "", "abc", "100000000", str(2**63)),
    st.integers(-3, 12).map(str),
)
DURATION = st.one_of(
    _texts("0", "0s", "-1h", "1e300", "1e13", "1e14", "inf", "nan", "99999999999999d", "", "h",
           "1h30m", "12h", "90s", "1e-300", "5e-324", "1d" * 50, "1" * 400 + "s"),
    st.floats().map(repr),
    st.tuples(st.integers(-10, 10**20), st.sampled_from("smhd")).map(lambda t: f"{t[0]}{t[1]}"),
)  # fmt: skip
WORD = st.one_of(_texts("", "exact", "per-second", "per-hour", "per-fortnight", "x" * 300),
                 st.text(max_size=12))  # fmt: skip


def _options(choices: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[list[str]]:
    """Some of ``choices``' options, each with a drawn value (as ``--opt=value``, so that a
    value starting with ``-`` is not taken for an option)."""
    return st.dictionaries(
        st.sampled_from(sorted(choices)), st.just(""), min_size=1, max_size=4
    ).flatmap(
        lambda chosen: st.tuples(*(choices[name] for name in sorted(chosen))).map(
            lambda values: [f"{n}={v}" for n, v in zip(sorted(chosen), values)]
        )
    )


CLOUD_OPTIONS = {
    "--queue": DURATION,
    "--boot": DURATION,
    "--provisioning-cv": NUMBER,
    "--billing": WORD,
    "--transfer-per-gb": NUMBER,
    "--storage-per-gb-month": NUMBER,
    "--spot-interruptions": NUMBER,
    "--samples": WHOLE,
    "--seed": st.one_of(WHOLE, _texts(str(10**30), "-5")),
}
PLAN_OPTIONS = {
    **CLOUD_OPTIONS,
    "--deadline": DURATION,
    "--budget": NUMBER,
    "--configs": WHOLE,
    "--reduction-factor": WHOLE,
    "--max-epochs": WHOLE,
    "--min-resource": WHOLE,
    "--quantile": NUMBER,
    "--price-per-slot-hour": NUMBER,
    "--max-gpus": WHOLE,
    "--objective": _texts("min-cost", "max-accuracy", "fastest", ""),
    "--market": _texts("spot", "on-demand", "bazaar"),
}


def _paths(root: Path, files: dict[str, Path]) -> st.SearchStrategy[str]:
    """Path arguments: the valid file, missing ones, a directory, an empty name, a device."""
    return st.sampled_from(
        [str(files["profile"]), str(root / "missing.json"), str(root), "", "/dev/null",
         str(root / "no" / "dir" / "x.json"), "-"]
    )  # fmt: skip


# ------------------------------------------------------------- fuzz: the command line
@FUZZ
@given(data=st.data())
def test_fuzz_plan_arguments(files: dict[str, Path], data: st.DataObject) -> None:
    extra = data.draw(_options(PLAN_OPTIONS), label="options")
    if data.draw(st.booleans(), label="out"):
        out = data.draw(
            st.sampled_from([str(files["root"]), str(files["root"] / "new.json"), "", "/x/y.json"])
        )
        extra.append(f"--out={out}")
    assert_clean(run_cli([*_plan_argv(files["profile"]), *extra]))


@FUZZ
@given(data=st.data())
def test_fuzz_plan_path_arguments(files: dict[str, Path], data: st.DataObject) -> None:
    profile = data.draw(_paths(files["root"], files), label="profile")
    prices = data.draw(st.sampled_from(["", str(files["profile"]), str(files["root"] / "p.csv")]))
    argv = [*_plan_argv(profile)]
    if prices:
        argv = [a for a in argv if a not in ("--price-per-slot-hour", "2")]
        argv += ["--prices", prices, "--no-sky"]
    assert_clean(run_cli(argv))


@FUZZ
@given(data=st.data())
def test_fuzz_simulate_arguments(files: dict[str, Path], data: st.DataObject) -> None:
    options = {**CLOUD_OPTIONS, "--deadline": DURATION}
    extra = data.draw(_options(options), label="options")
    paths = _paths(files["root"], files)
    plan = data.draw(st.one_of(st.just(str(files["plan"])), paths), label="plan")
    profile = data.draw(st.one_of(st.just(str(files["profile"])), paths), label="profile")
    argv = ["simulate", "--plan", plan, "--profile", profile, "--samples", "20", *extra]
    assert_clean(run_cli(argv))


@FUZZ
@given(data=st.data())
def test_fuzz_report_arguments(files: dict[str, Path], data: st.DataObject) -> None:
    paths = _paths(files["root"], files)
    argv = ["report"]
    for option, default in (("--plan", files["plan"]), ("--measured", files["measured"])):
        choice = data.draw(st.one_of(st.just(str(default)), paths, st.none()), label=option)
        if choice is not None:
            argv += [option, choice]
    if data.draw(st.booleans(), label="profile"):
        argv += ["--profile", str(files["profile"])]
    if data.draw(st.booleans(), label="storage"):
        storage = data.draw(
            st.sampled_from(["", "nosuch://x", "sqlite:///" + str(files["root"] / "r.db"), "x"])
        )
        argv += ["--storage", storage, "--study", data.draw(st.text(max_size=8), label="study")]
    argv += data.draw(st.one_of(st.just([]), _options(CLOUD_OPTIONS)), label="cloud")
    assert_clean(run_cli(argv))


def _fake_measurements(workers: Sequence[int], **_: object) -> tuple[Measurement, ...]:
    return tuple(Measurement(w, (60.0 / w**0.9, 61.0 / w**0.9), (5.0,)) for w in workers)


@contextlib.contextmanager
def _instant_profiling() -> Iterator[None]:
    """``optuna-seer profile`` with its measurements faked: no process is started."""
    import optuna_seer.cli.profile_command as command
    import optuna_seer.profiling.probe as probe

    def on_backend(backend: object, spec: object, *, workers: Sequence[int], **_: object) -> Any:
        return _fake_measurements(workers)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(probe, "measure_local_ddp", lambda workers, **kw: _fake_measurements(workers))
        patch.setattr(command, "measure_on_backend", on_backend)
        patch.setattr(command, "measure_contention", lambda *a, **kw: 1.25)
        yield


PROFILE_OPTIONS: dict[str, st.SearchStrategy[str]] = {
    "--workers": st.one_of(WHOLE, _texts("1,2", "1,0", "1,2,4", "2", "1," + HUGE, ",", "1,,2")),
    "--epochs": WHOLE,
    "--repeats": WHOLE,
    "--launches": WHOLE,
    "--contention": WHOLE,
    "--slots": WHOLE,
    "--timeout": DURATION,
    "--checkpoint-gb": NUMBER,
    "--scaling-model": _texts("table", "amdahl", "cubic"),
    "--params": st.one_of(
        _texts("{}", '{"lr": 0.01}', "[1]", "", "{", _deep(5000), '{"lr": NaN}'),
        st.text(max_size=10),
    ),
    "--env": _texts("A=1", "=1", "A", "", "A=" + "x" * 50),
}


@FUZZ
@given(data=st.data(), local=st.booleans())
def test_fuzz_profile_arguments(files: dict[str, Path], data: st.DataObject, local: bool) -> None:
    extra = data.draw(_options(PROFILE_OPTIONS), label="options")
    with tempfile.TemporaryDirectory() as scratch:
        out = str(Path(scratch) / "profile.json")
        argv = ["profile", "--out", out, *extra]
        if local:
            script = Path(scratch) / "train.py"
            script.write_text("def train(ctx):\n    pass\n", encoding="utf-8")
            argv += ["--backend", "local", "--script", f"{script}:train"]
            if not any(a.startswith("--params") for a in extra):
                argv.append("--params={}")
        with _instant_profiling():
            result = run_cli(argv)
        assert_clean(result)
        if result.code == 0:  # what it wrote plans
            assert_clean(run_cli(_plan_argv(out)))


# ------------------------------------------------------------------- fuzz: the files
EXTREME_JSON = st.one_of(
    st.sampled_from(
        [None, True, False, "", "x", "12h", 0, -1, -100, 1e308, -1e308, 5e-324, 10**30,
         10**400, [], {}, [1], {"1": 1}]
    ),
    st.floats(),  # NaN and ±Infinity are written as JSON's NaN / Infinity
    st.integers(-(10**6), 10**6),
)  # fmt: skip
JSONISH = st.recursive(
    st.one_of(EXTREME_JSON, st.text(max_size=6)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def _paths_in(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``data`` (the root too)."""
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths_in(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths_in(value, (*prefix, index))
    return found


def _replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(data))
    holder = copy
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return copy


def _documents(valid: Any) -> st.SearchStrategy[str]:
    """JSON text: ``valid`` with one value replaced by an extreme or random one (or a key
    dropped), random JSON, deep nesting, or text that is not JSON."""
    paths = _paths_in(valid)
    mutated = st.tuples(st.sampled_from(paths), st.one_of(EXTREME_JSON, JSONISH)).map(
        lambda edit: json.dumps(_replaced(valid, *edit))
    )
    dropped = st.sampled_from([p for p in paths if p]).map(
        lambda path: json.dumps(_replaced(valid, path[:-1], _without(valid, path)))
    )
    deep = st.integers(MAX_JSON_DEPTH - 2, 3000).map(lambda depth: _deep(depth, valid))
    return st.one_of(
        mutated,
        mutated,
        dropped,
        JSONISH.map(json.dumps),
        deep,
        st.text(max_size=20),
        st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    )


def _without(valid: Any, path: tuple[Any, ...]) -> Any:
    holder = valid
    for key in path[:-1]:
        holder = holder[key]
    holder = json.loads(json.dumps(holder))
    del holder[path[-1]]
    return holder


def _file_case(files: dict[str, Path], text: str, build: Callable[[Path], list[str]]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "fuzzed.json"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        assert_clean(run_cli(build(path)))


@FUZZ
@given(text=_documents(PROFILE))
def test_fuzz_profile_files(files: dict[str, Path], text: str) -> None:
    _file_case(files, text, _plan_argv)
    _file_case(
        files,
        text,
        lambda p: [
            "simulate",
            "--plan",
            str(files["plan"]),
            "--profile",
            str(p),
            "--samples",
            "20",
        ],
    )


@FUZZ
@given(data=st.data())
def test_fuzz_plan_files(files: dict[str, Path], data: st.DataObject) -> None:
    valid = json.loads(files["plan"].read_text())
    text = data.draw(_documents(valid), label="plan")
    _file_case(
        files,
        text,
        lambda p: [
            "simulate",
            "--plan",
            str(p),
            "--profile",
            str(files["profile"]),
            "--samples",
            "20",
        ],
    )
    _file_case(
        files, text, lambda p: ["report", "--plan", str(p), "--measured", str(files["measured"])]
    )


@FUZZ
@given(text=_documents({"wall_seconds": 5400, "dollars": 12.5}))
def test_fuzz_measured_files(files: dict[str, Path], text: str) -> None:
    _file_case(
        files, text, lambda p: ["report", "--plan", str(files["plan"]), "--measured", str(p)]
    )
