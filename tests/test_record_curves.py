"""The curve recorder: the generated ``synthetic`` task is fixed by its seed, and the harder
curve set loads as the benchmark's replays read it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import curves as recorded
from benchmarks.record_curves import load_synthetic, main, split

HARDER = recorded.CURVES_DIR / "harder"


def test_synthetic_task_is_generated_from_a_fixed_seed_with_a_larger_validation_set() -> None:
    a, b = load_synthetic(), load_synthetic()
    assert np.array_equal(a.data, b.data) and np.array_equal(a.target, b.target)
    tensors = split("synthetic", 0)
    assert [len(t) for t in tensors] == [1500, 1500, 500, 500, 500, 500]


def test_harder_curves_have_500_configurations_and_500_validation_examples() -> None:
    assert recorded.available(HARDER) == ["breast_cancer", "digits", "synthetic", "wine"]
    for name in ("breast_cancer", "digits", "synthetic", "wine"):
        harder = recorded.load(name, HARDER)
        assert len(harder.curves) == 500 and harder.epochs == 40
    for name in ("breast_cancer", "digits", "wine"):
        default = recorded.load(name)
        assert recorded.load(name, HARDER).configs[:150] == default.configs  # then more
    synthetic = recorded.load("synthetic", HARDER)
    # 500 validation examples: accuracies are multiples of 1/500.
    values = {round(v * 500, 6) % 1 for c in synthetic.curves for v in c.val_acc}
    assert values == {0.0}


def test_recorder_writes_a_small_synthetic_recording(tmp_path: Path) -> None:
    main(["--datasets", "synthetic", "--configs", "2", "--epochs", "2", "--out", str(tmp_path)])
    curves = recorded.load("synthetic", tmp_path)
    assert len(curves.curves) == 2 and curves.epochs == 2


def test_gap_closed_table_reads_run_results() -> None:
    import json

    from benchmarks.gap_closed import gap_closed, table

    assert gap_closed(0.98, 0.97, 1.0) == pytest.approx(1 / 3)
    assert gap_closed(0.97, 1.0, 1.0) is None  # no gap to close
    results = json.loads((Path("benchmarks") / "results" / "results.json").read_text())["results"]
    text = table(results)
    assert text.count("\n") == 2 + len(results)  # header, rule, a row per cell, the means
    assert "seer (gap closed)" in text and "%)" in text
    assert text.splitlines()[-1].startswith("| **all cells** |")


def test_paired_table_marks_only_shortfalls_the_seeds_make_certain() -> None:
    from benchmarks.gap_closed import paired_interval, paired_table

    mean, low, high = paired_interval([-0.01] * 9 + [-0.02])
    assert mean == pytest.approx(-0.011) and low < mean < high < 0
    assert paired_interval([0.0] * 5) == (0.0, 0.0, 0.0)

    def runs(values: list[float]) -> list[dict[str, object]]:
        return [{"seed": i, "test_acc": v} for i, v in enumerate(values)]

    def cell(sha: list[float], seer: list[float], pool: list[float]) -> dict[str, object]:
        arms = {"optuna-sha": sha, "seer": seer, "seer-pool": pool}
        return {
            "dataset": "d",
            "scenario": {"name": "s"},
            "summary": {n: {"test_mean": sum(v) / len(v)} for n, v in arms.items()},
            "runs": {n: runs(v) for n, v in arms.items()},
        }

    sha = [0.95, 0.96, 0.97, 0.95, 0.96]
    clear_loss = cell(sha, [v + 0.01 for v in sha], [v - 0.02 for v in sha])
    noise = cell(sha, sha, [0.96, 0.95, 0.97, 0.96, 0.95])
    rows = paired_table([clear_loss, noise]).splitlines()[2:]
    assert rows[0].count(" *") == 2  # seer-pool below the best pruner, and 0.03 below seer
    assert "+0.0100 [+0.0100, +0.0100] |" in rows[0]  # seer above it on every seed
    assert " *" not in rows[1]  # +-0.01 per seed both ways: the seeds cannot tell
