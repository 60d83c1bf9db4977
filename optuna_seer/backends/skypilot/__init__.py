"""SkyPilot backend: trials as SkyPilot tasks on clusters this driver launches and tears down.

``import sky`` happens on first use, so importing this package does not need SkyPilot.
:data:`TEMPLATES_DIR` holds the packaged task YAMLs (``trial.yaml``, ``driver.yaml``) to copy.

Both names load on first use: ``python -m optuna_seer.backends.skypilot.packages`` (the
documented way to write a driver's packages) imports this package first, and a package that
had already imported ``packages`` makes ``runpy`` warn that the module "may result in
unpredictable behaviour".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna_seer._lazy import lazy_names

if TYPE_CHECKING:
    from optuna_seer.backends.skypilot.backend import SkyPilotBackend
    from optuna_seer.backends.skypilot.tasks import TEMPLATES_DIR

__all__ = ["TEMPLATES_DIR", "SkyPilotBackend"]

_LAZY = {
    "SkyPilotBackend": "optuna_seer.backends.skypilot.backend",
    "TEMPLATES_DIR": "optuna_seer.backends.skypilot.tasks",
}


__getattr__, __dir__ = lazy_names(__name__, _LAZY, __all__, globals())
