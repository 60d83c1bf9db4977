"""Benchmarks: SEER against Optuna's pruners on replayed learning curves (``run.py``)."""
