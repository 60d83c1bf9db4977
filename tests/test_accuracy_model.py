"""The accuracy model (recorded curves as a prior) and the planner's opt-in accuracy objective."""

from __future__ import annotations

import numpy as np
import pytest

from optuna_seer import Budget, Workload, plan_seer
from optuna_seer.planning.accuracy_model import AccuracyModel, percentile_proxy
from optuna_seer.planning.seer import AUTO_REDUCTION_FACTORS

BUDGET = Budget(deadline=7200.0, dollars=24.0, price_per_gpu_hour=3.0)
WORKLOAD = Workload(epoch_seconds=60.0, scaling="resnet50", max_epochs=40, startup_seconds=30.0)


def _crossing_curves(n: int = 120, epochs: int = 40, seed: int = 0) -> list[list[float]]:
    """Half the configurations start fast and plateau low, half start slow and end high: the
    early ranking is the reverse of the final one."""
    rng = np.random.default_rng(seed)
    curves = []
    for i in range(n):
        late = i % 2 == 0
        final = rng.uniform(0.85, 0.95) if late else rng.uniform(0.6, 0.8)
        rate = 0.08 if late else 0.9
        e = np.arange(1, epochs + 1)
        curves.append(list(final * (1 - np.exp(-rate * e))))
    return curves


def _consistent_curves(n: int = 120, epochs: int = 40, seed: int = 1) -> list[list[float]]:
    """Every configuration keeps its rank at every epoch."""
    rng = np.random.default_rng(seed)
    finals = rng.uniform(0.5, 0.95, n)
    return [list(f * (1 - np.exp(-0.2 * np.arange(1, epochs + 1)))) for f in finals]


def test_wider_is_better_when_curves_never_cross() -> None:
    model = AccuracyModel(_consistent_curves())
    widths = [model.expected_best([n, max(1, n // 3)], [4, 40]).mean for n in (3, 9, 27, 81)]
    assert widths == sorted(widths)
    assert widths[-1] > widths[0] + 0.05


def test_early_elimination_is_penalised_when_curves_cross() -> None:
    model = AccuracyModel(_crossing_curves())
    early = model.expected_best([81, 27, 9, 3], [1, 4, 13, 40])
    late = model.expected_best([27, 3], [20, 40])
    assert late.mean > early.mean + 5 * max(late.stderr, early.stderr)


def test_planner_objective_follows_the_model_and_default_is_unchanged() -> None:
    model = AccuracyModel(_crossing_curves())
    default = plan_seer(BUDGET, WORKLOAD, max_configs=150)
    chosen = plan_seer(BUDGET, WORKLOAD, max_configs=150, accuracy=model)
    assert default == plan_seer(BUDGET, WORKLOAD, max_configs=150, accuracy=None)
    assert chosen.rungs[0].resource > default.rungs[0].resource  # later first cut
    assert chosen.n_configs < default.n_configs  # narrower: breadth was the wrong bet
    expected = [
        model.expected_best([r.n_trials for r in p.rungs], [r.resource for r in p.rungs]).mean
        for p in (default, chosen)
    ]
    assert expected[1] > expected[0]
    assert chosen.predicted_cost <= BUDGET.dollars and chosen.predicted_seconds <= 7200.0


def test_auto_eta_searches_the_reduction_factor() -> None:
    widest = plan_seer(BUDGET, WORKLOAD, "auto", max_configs=10_000)
    assert widest.reduction_factor in AUTO_REDUCTION_FACTORS
    for eta in AUTO_REDUCTION_FACTORS:  # without a model: the most configurations over all η
        assert plan_seer(BUDGET, WORKLOAD, eta, max_configs=10_000).n_configs <= widest.n_configs
    model = AccuracyModel(_crossing_curves())
    auto = plan_seer(BUDGET, WORKLOAD, "auto", max_configs=150, accuracy=model)
    best_fixed = max(
        model.expected_best([r.n_trials for r in p.rungs], [r.resource for r in p.rungs]).mean
        for p in (
            plan_seer(BUDGET, WORKLOAD, eta, max_configs=150, accuracy=model)
            for eta in AUTO_REDUCTION_FACTORS
        )
    )
    shape = ([r.n_trials for r in auto.rungs], [r.resource for r in auto.rungs])
    assert model.expected_best(*shape).mean == pytest.approx(best_fixed)


def test_scores_replace_the_final_value_and_divergence_is_the_worst() -> None:
    curves = [[0.5, 0.9], [0.4, float("nan")], [0.3, 0.8]]
    model = AccuracyModel(curves, scores=[0.1, 0.2, 0.7])
    # Best by validation is configuration 0, whose held-out score is 0.1: searching wider
    # finds it more often, and scores worse (a random one scores 1/3 on average).
    assert model.expected_best([3], [2]).mean < model.expected_best([1], [2]).mean
    assert AccuracyModel(curves).expected_best([3], [2]).mean == pytest.approx(0.9, abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"curves": []}, "one or more curves"),
        ({"curves": [[float("nan")]]}, "non-finite"),
        ({"curves": [[0.1], [0.2]], "scores": [0.1]}, "one each"),
        ({"curves": [[0.1]], "draws": 1}, "draws=1"),
    ],
)
def test_model_refuses_bad_input(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        AccuracyModel(**kwargs)  # type: ignore[arg-type]


def test_model_refuses_rungs_that_do_not_halve() -> None:
    model = AccuracyModel([[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="must never grow"):
        model.expected_best([3, 9], [1, 3])
    with pytest.raises(ValueError, match="equally long"):
        model.expected_best([3], [1, 3])
    with pytest.raises(TypeError, match="AccuracyModel"):
        plan_seer(BUDGET, WORKLOAD, accuracy="curves")  # type: ignore[arg-type]


def test_percentile_proxy() -> None:
    assert percentile_proxy(3) == 0.75
    with pytest.raises(ValueError, match="width=0"):
        percentile_proxy(0)
