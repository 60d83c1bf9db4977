"""``optuna-seer plan --help`` shows the defaults a plan is made with when not told."""

from __future__ import annotations

import pytest

from optuna_seer.cli.main import main


@pytest.mark.parametrize(
    ("option", "default"),
    [
        ("--configs", "81"),
        ("--max-epochs", "27"),
        ("--max-gpus", "64"),
        ("--reduction-factor", "3"),
        ("--min-resource", "1"),
        ("--quantile", "0.95"),
        ("--objective", "min-cost"),
    ],
)
def test_plan_help_shows_the_default(
    option: str,
    default: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    after = text.split(f" {option} ", 1)[1]
    help_of = after.split(" --", 1)[0]
    assert f"(default: {default})" in help_of, help_of
