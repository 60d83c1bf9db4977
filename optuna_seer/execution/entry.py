"""The training program a tuner launches, and its search space.

:func:`entrypoint_of` turns a script path, ``"file.py:function"``, ``"module:function"`` or a
module-level function into the target ``optuna_seer.worker.entrypoint`` runs on a worker;
:func:`search_space_of` finds the ``search_space(trial)`` function next to that code.
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
import importlib.util
import inspect
from pathlib import Path
import sys
from typing import Any

import optuna

SearchSpace = Callable[[optuna.Trial], Any]
"""``callable(trial)`` that suggests a trial's parameters."""

TrainTarget = str | Path | Callable[[], Any]
"""A script path, ``"file.py:function"``, ``"module:function"`` or a module-level function."""


def entrypoint_of(train: TrainTarget) -> str:
    """The ``optuna_seer.worker.entrypoint`` target for a script path or a module-level function.

    Example:
        >>> entrypoint_of("json:dumps")
        'json:dumps'
    """
    if isinstance(train, Path):
        train = str(train)
    if isinstance(train, str):
        path = train.rpartition(":")[0] if ":" in train else train
        if path.endswith(".py") and not Path(path).is_file():
            raise ValueError(f"train={train!r}: no such file.")
        if path.endswith(".py"):
            return str(Path(path).resolve()) + train[len(path) :]
        return train
    if callable(train):
        qualname = getattr(train, "__qualname__", "")
        if not qualname or "<" in qualname or "." in qualname:
            raise ValueError(
                f"train={train!r} must be a module-level function (workers import it by name)."
            )
        try:
            source = inspect.getfile(train)
        except TypeError:
            raise ValueError(f"train={train!r} is not defined in a Python file.") from None
        return f"{Path(source).resolve()}:{qualname}"
    raise TypeError(
        f"train={train!r} must be a script path, 'file.py:function', 'module:function' or a "
        "module-level function."
    )


def search_space_of(train: TrainTarget) -> SearchSpace:
    """The ``search_space(trial)`` function defined next to the training code ``train``.

    A script (``"train.py"`` or ``"train.py:function"``) is executed as a module to find it;
    a module or a function is looked up where it is defined.

    Raises:
        ValueError: There is no callable ``search_space`` there.
    """
    module: Any
    if callable(train) and not isinstance(train, (str, Path)):
        module = sys.modules.get(train.__module__)
    else:
        target = str(train)
        location = target.rpartition(":")[0] if ":" in target else target
        if location.endswith(".py"):
            spec = importlib.util.spec_from_file_location("__seer_search_space__", location)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(location)
    found = getattr(module, "search_space", None)
    if not callable(found):
        raise ValueError(
            f"no search space: pass search_space=callable(trial) or define a function "
            f"search_space(trial) next to the training code ({train!r})."
        )
    return found  # type: ignore[no-any-return]
