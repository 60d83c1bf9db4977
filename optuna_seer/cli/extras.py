"""Refuse a command up front when an optional extra it needs is not installed.

A command that needs matplotlib (``--png``) or torch (``profile``) checks for it before it
does any work, and says which extra to install, in one line (``optuna-seer`` exits with 2),
instead of computing a plan and dying with a ``ModuleNotFoundError`` at the end.
"""

from __future__ import annotations

import importlib

from optuna_seer._install import install_hint

EXTRAS = {"matplotlib": "plot", "torch": "worker", "lightning": "lightning", "sklearn": "examples"}
"""The optuna-seer extra that installs each optional module."""

DISTRIBUTIONS = {"sklearn": "scikit-learn"}
"""The package to ``pip install`` for a module whose name differs from it."""


class MissingExtraError(ImportError):
    """An optional module a command needs is not installed; the message says what to install."""


def require_module(module: str, needed_by: str) -> None:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that has it.

    Example:
        >>> require_module("json", "the example")
        >>> require_module("no_such_module_xyz", "--png")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        optuna_seer.cli.extras.MissingExtraError: --png needs no_such_module_xyz, which is ...
    """
    try:
        importlib.import_module(module)
    except ImportError:
        install = install_hint(EXTRAS.get(module), DISTRIBUTIONS.get(module, module))
        raise MissingExtraError(
            f"{needed_by} needs {module}, which is not installed: {install}."
        ) from None
