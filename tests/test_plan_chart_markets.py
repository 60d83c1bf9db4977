"""The plan chart marks each stage's market and a spot stage's expected recovery, from the
library (the figure's objects) and from ``plan``/``simulate --spot-mix --png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from optuna_seer.cli import plan_commands
from optuna_seer.cli.main import main
from optuna_seer.cli.plots import plan_chart
from optuna_seer.planning.prices import PriceQuote
from optuna_seer.planning.profile import Profile
from optuna_seer.planning.simulator import CloudModel, simulate
from optuna_seer.planning.spot import expected_recovery
from optuna_seer.planning.stage_plan import ElasticPlan, Stage

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ON_DEMAND = PriceQuote("g4", "V100", 4, 12.24)
SPOT = PriceQuote("g4", "V100", 4, 3.67, market="spot")
PROFILE = Profile(epoch_seconds=600, scaling="amdahl:0.95", epoch_cv=0.05, startup_seconds=60)
PRICES = (
    "instance_type,accelerator,gpus,dollars_per_hour,market,region,source,date\n"
    "g1,V100,1,3.06,on-demand,,test,2026-12\n"
    "g1,V100,1,0.92,spot,,test,2026-12\n"
    "g4,V100,4,12.24,on-demand,,test,2026-12\n"
    "g4,V100,4,3.67,spot,,test,2026-12\n"
)


def _texts(figure: Any) -> tuple[list[str], list[str], list[str], list[Any]]:
    """The Gantt axis's tick labels, legend entries, bar labels and bars."""
    gantt = figure.axes[0]
    ticks = [t.get_text() for t in gantt.get_yticklabels()]
    legend = [t.get_text() for t in gantt.get_legend().get_texts()]
    labels = [t.get_text() for t in gantt.texts]
    return ticks, legend, labels, list(gantt.patches)


def test_the_chart_names_each_stages_market_and_the_spot_recovery() -> None:
    import matplotlib.pyplot as plt

    plan = ElasticPlan((Stage(9, 1, 1, ON_DEMAND, 9), Stage(3, 3, 2, SPOT, 6)))
    cloud = CloudModel(queue_seconds=60, boot_seconds=120, spot_rates=(("g4", 0.5),))
    result = simulate(plan, PROFILE, cloud, samples=200)
    recovery = expected_recovery(plan, PROFILE, cloud, samples=200)
    assert recovery[0].dollars == 0 and recovery[1].reclaims > 0 and recovery[1].dollars > 0
    figure = plan_chart(plan, result, 3 * 3600, 100.0, "plan", recovery)
    try:
        ticks, legend, labels, bars = _texts(figure)
        assert ticks == ["rung 0 · on-demand", "rung 1 · spot"]
        assert legend == ["on-demand", "spot"]
        assert "on-demand" in labels[0] and "recovery" not in labels[0]
        assert "spot" in labels[1] and f"recovery ≈ ${recovery[1].dollars:,.2f}" in labels[1]
        assert [bar.get_hatch() for bar in bars[:2]] == [None, "//"]
        assert "spot recovery" in figure.axes[0].get_title()
    finally:
        plt.close(figure)
    # An all-on-demand plan names its one market and no recovery.
    plain = ElasticPlan((Stage(9, 1, 1, ON_DEMAND, 9),))
    figure = plan_chart(plain, simulate(plain, PROFILE, samples=20), None, None, "plan")
    try:
        ticks, legend, labels, _ = _texts(figure)
        assert ticks == ["rung 0 · on-demand"] and legend == ["on-demand"]
        assert "recovery" not in labels[0] + figure.axes[0].get_title()
    finally:
        plt.close(figure)
    with pytest.raises(ValueError, match="recovery has 1 entries for a plan of 2 stages"):
        plan_chart(plan, result, None, None, "plan", recovery[:1])


def test_bar_labels_stay_inside_the_chart_when_the_plan_is_short() -> None:
    # 'optuna-seer plan --deadline 12h' for a 30-minute plan: the bars are slivers at the left,
    # and labels centred on them ran over the rung names left of the axes.
    import matplotlib.pyplot as plt

    plan = ElasticPlan((Stage(81, 1, 1, ON_DEMAND, 1), Stage(27, 3, 1, ON_DEMAND, 1)))
    result = simulate(plan, Profile(epoch_seconds=10, scaling="linear"), samples=20)
    figure = plan_chart(plan, result, 12 * 3600, 400.0, "plan")
    try:
        renderer = figure.canvas.get_renderer()
        gantt = figure.axes[0]
        inside = gantt.get_window_extent(renderer)
        assert len(gantt.texts) == 2
        for text in gantt.texts:
            box = text.get_window_extent(renderer)
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1, text.get_text()
    finally:
        plt.close(figure)


def test_plan_spot_mix_png_marks_markets_and_simulate_keeps_the_rates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    charts: list[tuple[Any, ...]] = []
    real = plan_commands.write_plan_chart

    def recording(*args: Any) -> None:
        charts.append(args)
        real(*args)

    monkeypatch.setattr(plan_commands, "write_plan_chart", recording)
    prices, profile = tmp_path / "prices.csv", tmp_path / "profile.json"
    prices.write_text(PRICES)
    profile.write_text(json.dumps(PROFILE.to_dict()))
    png, out = tmp_path / "plan.png", tmp_path / "plan.json"
    code = main(
        [
            "plan", "--deadline=1h10m", "--budget=400", f"--profile={profile}", "--configs=27",
            "--max-epochs=9", f"--prices={prices}", "--instance=g1", "--instance=g4",
            "--spot-mix", "--spot-interruptions=0.3", "--boot=5m", "--max-gpus=32",
            "--samples=200", f"--png={png}", f"--out={out}",
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    assert "spot/on-demand mix" in text and "reclaims expected" in text
    assert png.read_bytes().startswith(PNG_MAGIC)
    record = json.loads(out.read_text())
    markets = [stage["instance"]["market"] for stage in record["plan"]["stages"]]
    assert "spot" in markets and record["spot_rates"] == {"g1": 0.3, "g4": 0.3}
    (path, plan, result, deadline, budget, title, recovery) = charts[-1]
    assert path == png and "spot/on-demand mix" in title
    figure = plan_chart(plan, result, deadline, budget, title, recovery)
    try:
        ticks, legend, labels, _ = _texts(figure)
        assert ticks == [f"rung {i} · {m}" for i, m in enumerate(markets)]
        assert set(legend) == set(markets)
        for label, market in zip(labels, markets):
            assert market in label and ("recovery ≈ $" in label) == (market == "spot")
    finally:
        plt.close(figure)

    # simulate reclaims the saved plan's spot stages at the rates it was planned with.
    code = main(["simulate", f"--plan={out}", f"--profile={profile}", "--samples=200",
                 "--boot=5m", f"--png={tmp_path / 'sim.png'}"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "reclaims expected" in text and " 0.00 reclaims" not in text
    assert charts[-1][-1] is not None and any(r.dollars > 0 for r in charts[-1][-1])


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--objective=max-accuracy"], "--objective min-cost"),
        (["--market=spot"], "without --market spot"),
        (["--price-per-slot-hour=2"], "not --price-per-slot-hour"),
        (["--pareto"], "drop --spot-mix"),
    ],
)
def test_spot_mix_refuses_what_it_cannot_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], match: str
) -> None:
    prices, profile = tmp_path / "prices.csv", tmp_path / "profile.json"
    prices.write_text(PRICES)
    profile.write_text(json.dumps(PROFILE.to_dict()))
    code = main(
        ["plan", "--deadline=3h", "--budget=400", f"--profile={profile}", f"--prices={prices}",
         "--instance=g1", "--spot-mix", "--samples=50", *extra]
    )  # fmt: skip
    assert code == 2 and match in capsys.readouterr().err
