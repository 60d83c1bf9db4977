"""SkyPilot backend: trials as SkyPilot tasks on clusters this driver launches and tears down.

``import sky`` happens on first use, so importing this package does not need SkyPilot.
:data:`TEMPLATES_DIR` holds the packaged task YAMLs (``trial.yaml``, ``driver.yaml``) to copy.
"""

from optuna_seer.backends.skypilot.backend import SkyPilotBackend
from optuna_seer.backends.skypilot.tasks import TEMPLATES_DIR

__all__ = ["TEMPLATES_DIR", "SkyPilotBackend"]
