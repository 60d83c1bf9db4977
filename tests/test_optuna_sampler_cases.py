"""SeerSampler passes Optuna's own reusable sampler test cases."""

from __future__ import annotations

from collections.abc import Callable

import optuna
import pytest

# Optuna's reusable sampler cases ship with Optuna 5; the oldest-Optuna run skips them.
pytest.importorskip("optuna.testing.pytest_samplers")
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    RelativeSamplerTestCase,
)

from optuna_seer import SeerSampler


class TestSeerSamplerOverTPE(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], optuna.samplers.BaseSampler]:
        return lambda: SeerSampler(optuna.samplers.TPESampler(n_startup_trials=3, seed=0))


class TestSeerSamplerOverRandom(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], optuna.samplers.BaseSampler]:
        return lambda: SeerSampler(optuna.samplers.RandomSampler(seed=0))


class TestSeerSamplerOverMultivariateTPE(RelativeSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], optuna.samplers.BaseSampler]:
        return lambda: SeerSampler(
            optuna.samplers.TPESampler(multivariate=True, n_startup_trials=0, seed=0)
        )
