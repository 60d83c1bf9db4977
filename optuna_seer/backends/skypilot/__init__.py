"""SkyPilot backend: trials as SkyPilot tasks on clusters this driver launches and tears down.

``import sky`` happens on first use, so importing this package does not need SkyPilot.
"""

from optuna_seer.backends.skypilot.backend import SkyPilotBackend

__all__ = ["SkyPilotBackend"]
