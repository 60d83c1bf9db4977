"""SEER inside Optuna: the pruner and sampler, ranking, the ledger and the study's storage keys.

The only package that reads or writes Optuna's storage on SEER's behalf; it knows no backend.
"""
