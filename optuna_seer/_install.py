"""The one place that says how to install an optional extra (for error messages and hints).

optuna-seer is on no package index: it is installed from a clone (``pip install .``,
``pip install '.[s3]'``). Asking pip for ``optuna-seer`` with an extra would look the name
up on PyPI and fail, so every "install X" hint is built here, pointing at the clone and,
where one bare package is what is missing, at that package with the range the extra asks for.
"""

from __future__ import annotations

EXTRA_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "worker": ("torch>=2.6",),
    "lightning": ("torch>=2.6", "lightning>=2.6", "pytorch-lightning>=2.6"),
    "plot": ("matplotlib>=3.7",),
    "dashboard": ("optuna-dashboard>=0.15",),
    "grpc": ("grpcio>=1.60", "protobuf>=5", "cryptography>=41"),
    "sky": ("grpcio>=1.60", "protobuf>=5", "cryptography>=41", "skypilot>=0.9"),
    "s3": ("fsspec>=2023.9", "s3fs>=2023.9"),
    "gcs": ("fsspec>=2023.9", "gcsfs>=2023.9"),
    "examples": (
        "torch>=2.6",
        "lightning>=2.6",
        "pytorch-lightning>=2.6",
        "matplotlib>=3.7",
        "scikit-learn>=1.3",
    ),
}
"""The third-party requirements of each user-facing extra in ``pyproject.toml`` (its own
``optuna-seer[...]`` references expanded); ``tests/test_install_hint.py`` keeps them in step."""


def _requirement(package: str) -> str:
    """``package`` with the version range an extra asks for, if one does."""
    for requirements in EXTRA_REQUIREMENTS.values():
        for requirement in requirements:
            if requirement.split(">=")[0] == package:
                return requirement
    return package


def install_hint(extra: str | None, *packages: str) -> str:
    """How to install ``extra`` from an optuna-seer clone, or else the bare ``packages``.

    ``packages`` are the distributions that are actually missing (a one-package fix for users
    who did not install from a clone); each gets the range its extra asks for.

    Example:
        >>> install_hint("s3", "s3fs")
        "pip install '.[s3]' in an optuna-seer clone (or pip install 's3fs>=2023.9')"
        >>> install_hint("sky")
        "pip install '.[sky]' in an optuna-seer clone"
        >>> install_hint(None, "pyyaml")
        "pip install 'pyyaml'"
    """
    bare = " ".join(f"'{_requirement(package)}'" for package in packages)
    if extra is None:
        return f"pip install {bare}"
    if extra not in EXTRA_REQUIREMENTS:
        raise ValueError(f"optuna-seer has no extra {extra!r}")
    hint = f"pip install '.[{extra}]' in an optuna-seer clone"
    return f"{hint} (or pip install {bare})" if packages else hint
