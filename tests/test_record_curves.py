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
    for name in ("breast_cancer", "digits", "wine"):
        harder = recorded.load(name, HARDER)
        assert len(harder.curves) == 500 and harder.epochs == 40
        default = recorded.load(name)
        assert harder.configs[:150] == default.configs  # the same configurations, then more
    synthetic = recorded.load("synthetic", HARDER)
    assert len(synthetic.curves) == 100
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
