"""Run a training entrypoint in a worker: ``python -m optuna_seer.worker.entrypoint TARGET``.

``TARGET`` is one of

* ``path/to/script.py``: run as ``__main__`` (the script calls :func:`trial_context`);
* ``path/to/file.py:function``: load the file as a module (its ``__main__`` block does not
  run) and call ``function()``;
* ``package.module:function``: import the module and call ``function()``.

Backends start this module (under ``torchrun`` for several workers) with the ``SEER_*``
variables set, so a user's training code never needs a launcher of its own. When the backend
names its driver (``SEER_DRIVER_PID``, set by ``LocalBackend``), a watchdog ends the launch
as soon as the driver dies (:mod:`optuna_seer.worker.driver_watch`).

Example:
    >>> resolve_target("examples/lightning_digits.py:train")  # doctest: +SKIP
    <function train at ...>
"""

from __future__ import annotations

from collections.abc import Callable
import importlib
import importlib.util
import os
from pathlib import Path
import runpy
import sys

from optuna_seer.worker.driver_watch import watch_driver

_LOADED_AS = "__seer_entrypoint__"


def resolve_target(target: str) -> Callable[[], object]:
    """The zero-argument callable that runs ``target``.

    Raises:
        ValueError: ``target`` does not name a script or a function that exists.
    """
    if not isinstance(target, str) or not target:
        raise ValueError(
            f"entrypoint {target!r} must be 'script.py', 'file.py:function' or "
            "'package.module:function'."
        )
    location, _, function = target.rpartition(":") if ":" in target else (target, "", "")
    if not function:
        script = Path(target)
        if not script.is_file():
            raise ValueError(f"entrypoint script {target!r} does not exist.")
        return lambda: runpy.run_path(str(script), run_name="__main__")
    if location.endswith(".py"):
        path = Path(location).resolve()
        if not path.is_file():
            raise ValueError(f"entrypoint file {location!r} does not exist.")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(_LOADED_AS, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_LOADED_AS] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(location)
        except ImportError as exc:
            raise ValueError(f"entrypoint module {location!r} cannot be imported: {exc}") from None
    found = getattr(module, function, None)
    if not callable(found):
        raise ValueError(f"entrypoint {target!r}: {location} has no function {function!r}.")
    return found  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m optuna_seer.worker.entrypoint TARGET")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    watch_driver()  # before the training code is imported: a dead driver ends us at once
    resolve_target(args[0])()


if __name__ == "__main__":
    main()
