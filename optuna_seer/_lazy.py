"""Names a package loads on first use (PEP 562): its ``__getattr__`` and ``__dir__``.

A package whose public names pull in heavy or optional dependencies (Optuna's storages,
SkyPilot, torch) lists them as ``{name: module}`` and gets the two module hooks from
:func:`lazy_names`; the first access imports the module and caches the value in the
package's namespace, so later accesses cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
import importlib
from typing import Any


def lazy_names(
    package: str,
    lazy: Mapping[str, str],
    public: Sequence[str],
    namespace: MutableMapping[str, Any],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``lazy`` maps a name to the module that
    defines it, ``namespace`` is the package's ``globals()``."""

    def getattr_(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(public))

    return getattr_, dir_
