"""``optuna-seer profile`` prints contention as slowdowns people read, not a Python dict."""

from __future__ import annotations

import io
from pathlib import Path

from optuna_seer.cli.profile_command import _print_and_save_profile
from optuna_seer.planning.profile import Profile


def test_contention_is_printed_as_slowdown_factors(tmp_path: Path) -> None:
    profile = Profile(epoch_seconds=5, scaling="linear", contention={2: 1.1991895726676498, 4: 2.5})
    out = io.StringIO()
    assert _print_and_save_profile(profile, tmp_path / "profile.json", out) == 0
    (line,) = [line for line in out.getvalue().splitlines() if line.startswith("contention")]
    assert line.endswith(": 1 launch 1.00x, 2 launches 1.20x, 4 launches 2.50x")
    assert "{" not in line and "1.1991" not in line


def test_no_contention_line_without_a_measurement(tmp_path: Path) -> None:
    out = io.StringIO()
    _print_and_save_profile(Profile(epoch_seconds=5, scaling="linear"), tmp_path / "p.json", out)
    assert not [line for line in out.getvalue().splitlines() if line.startswith("contention")]
