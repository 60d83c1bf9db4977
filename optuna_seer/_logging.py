"""Loggers under Optuna's logger tree, so ``optuna.logging.set_verbosity`` governs optuna-seer too.

Optuna's library root logger is ``"optuna"``; its handler and level apply to every logger named
``"optuna.<something>"``. optuna-seer's modules log through ``get_logger(__name__)``, which
returns ``"optuna.optuna_seer.<module>"``: silenced, made verbose and formatted with Optuna's
own messages.

Example:
    >>> get_logger("optuna_seer.execution.tuner").name
    'optuna.optuna_seer.execution.tuner'
"""

from __future__ import annotations

import logging


def get_logger(name: str) -> logging.Logger:
    """The logger for module ``name`` (pass ``__name__``), a child of Optuna's root logger."""
    return logging.getLogger(f"optuna.{name}")
