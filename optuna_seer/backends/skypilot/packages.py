"""What cloud nodes install: a wheel of the driver's own optuna-seer and its Optuna version.

optuna-seer is not on a package index, and a node that ran other code than the driver would
break the storage and checkpoint contracts between them. So nodes never ``pip install
optuna-seer``: :func:`write_node_packages` packs the ``optuna_seer`` package this process
imported (a checkout, an editable install or a wheel install alike) into a wheel whose local
version is the hash of its files (``0.1.0+g1a2b3c4d``), and writes a ``requirements.txt``
beside it that installs that wheel with the extras nodes need and pins the driver's Optuna
(``optuna==5.1.0``). :class:`~optuna_seer.backends.skypilot.SkyPilotBackend` mounts the
directory on every node (SkyPilot ``file_mounts``) and the trial template's ``setup`` runs
``pip install -r requirements.txt`` there.

By hand (for ``sky launch launchers/driver.yaml`` or a debug launch of ``trial.yaml``, which
read the directory ``.seer-node`` of the workdir)::

    python -m optuna_seer.backends.skypilot.packages .seer-node            # trial nodes
    python -m optuna_seer.backends.skypilot.packages .seer-driver \\
        --extras sky,s3 --pin optuna,skypilot                               # the driver

The wheel is built with the standard library only (a wheel is a zip archive with a
``RECORD`` of its files' hashes), so the driver needs no build tools.
"""

from __future__ import annotations

import argparse
import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import hashlib
import importlib.metadata
from pathlib import Path
import zipfile

DISTRIBUTION = "optuna-seer"
# optuna_seer/ itself: this module is optuna_seer/backends/skypilot/packages.py.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
NODE_EXTRAS = ("lightning", "s3", "gcs", "grpc")
"""What a trial node needs beyond the core: the Lightning worker, S3 and GCS checkpoints (the
stores the worker side opens through fsspec), the gRPC storage client."""
REQUIREMENTS = "requirements.txt"
_SKIPPED_PARTS = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}
# A fixed timestamp makes the archive depend on the files only.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class NodePackages:
    """The directory nodes install from: the wheel, its version and the pinned Optuna."""

    directory: Path
    wheel: Path
    version: str
    optuna_version: str
    requirements: tuple[str, ...]


def package_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """``(archive name, file)`` of every file of the ``optuna_seer`` package at ``root``
    (default: the one imported here), sorted; bytecode and caches left out.

    Example:
        >>> names = [name for name, _ in package_files()]
        >>> "optuna_seer/__init__.py" in names, "optuna_seer/launchers/trial.yaml" in names
        (True, True)
    """
    root = PACKAGE_ROOT if root is None else root
    found: list[tuple[str, Path]] = []
    # Path.rglob does not enter linked directories; walk by hand so optuna_seer/launchers (a
    # link to the top-level launchers/) is packed as an installed wheel has it.
    pending = [(root, "optuna_seer")]
    while pending:
        directory, prefix = pending.pop()
        for path in directory.iterdir():
            if path.name in _SKIPPED_PARTS:
                continue
            if path.is_dir():
                pending.append((path, f"{prefix}/{path.name}"))
            elif path.suffix not in _SKIPPED_SUFFIXES and path.is_file():
                found.append((f"{prefix}/{path.name}", path))
    return sorted(found)


def content_hash(files: Iterable[tuple[str, Path]]) -> str:
    """The first 8 hex digits of the SHA-256 over every file's name and bytes."""
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:8]


def installed_version(name: str, default: str = "0") -> str:
    """The installed version of distribution ``name`` (``default`` when absent)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return default


def _requires() -> list[str]:
    try:
        return list(importlib.metadata.requires(DISTRIBUTION) or [])
    except importlib.metadata.PackageNotFoundError:
        return ["optuna>=4.2", "numpy>=1.24", "tqdm>=4.60"]


def _metadata(version: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {DISTRIBUTION}", f"Version: {version}"]
    requires = _requires()
    extras = sorted({r.partition('extra == "')[2].partition('"')[0] for r in requires} - {""})
    lines += [f"Provides-Extra: {extra}" for extra in extras]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    return "\n".join(lines) + "\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(directory: Path, root: Path | None = None) -> tuple[Path, str]:
    """Write a wheel of the ``optuna_seer`` package (the imported one, or the one at ``root``)
    into ``directory``; its path and version (``<release>+g<content hash>``)."""
    files = package_files(root)
    release = installed_version(DISTRIBUTION, "0.0.0").partition("+")[0]
    version = f"{release}+g{content_hash(files)}"
    dist_info = f"optuna_seer-{version}.dist-info"
    wheel = directory / f"optuna_seer-{version}-py3-none-any.whl"
    directory.mkdir(parents=True, exist_ok=True)
    records: list[str] = []
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
            records.append(_record_line(name, data))

        for name, path in files:
            add(name, path.read_bytes())
        add(f"{dist_info}/METADATA", _metadata(version).encode())
        wheel_file = "Wheel-Version: 1.0\nGenerator: optuna-seer\nRoot-Is-Purelib: true\n"
        add(f"{dist_info}/WHEEL", (wheel_file + "Tag: py3-none-any\n").encode())
        records.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=_ZIP_TIME)
        archive.writestr(info, "\n".join(records) + "\n")
    return wheel, version


def write_node_packages(
    directory: str | Path,
    extras: Sequence[str] = NODE_EXTRAS,
    pins: Sequence[str] = ("optuna",),
    root: Path | None = None,
) -> NodePackages:
    """Fill ``directory`` with the wheel of this optuna-seer and a ``requirements.txt`` that
    installs it (with ``extras``) and pins the versions this process has of ``pins``
    (default: Optuna; a driver node also pins ``skypilot``).

    Raises:
        ValueError: An extra is not one optuna-seer declares; the message lists them.
    """
    declared = _declared_extras()
    unknown = [extra for extra in extras if declared and extra not in declared]
    if unknown:
        raise ValueError(
            f"extras {unknown} are not optuna-seer extras; choose from {sorted(declared)}."
        )
    directory = Path(directory)
    for old in directory.glob("optuna_seer-*.whl"):
        old.unlink()
    wheel, version = build_wheel(directory, root)
    optuna_version = installed_version("optuna")
    missing = [name for name in pins if installed_version(name, "") == ""]
    if missing:
        raise ValueError(f"cannot pin {missing}: not installed here (pins={list(pins)}).")
    suffix = f"[{','.join(extras)}]" if extras else ""
    requirements = (
        f"./{wheel.name}{suffix}",
        *(f"{name}=={installed_version(name)}" for name in pins),
    )
    (directory / REQUIREMENTS).write_text(
        "# Written by optuna_seer.backends.skypilot.packages: the driver's own optuna-seer\n"
        "# and the Optuna version it runs. Install from this directory:\n"
        "#   cd <this directory> && pip install -r requirements.txt\n"
        + "\n".join(requirements)
        + "\n",
        encoding="utf-8",
    )
    return NodePackages(directory, wheel, version, optuna_version, requirements)


def _declared_extras() -> set[str]:
    """The extras optuna-seer declares (empty when its metadata is not installed)."""
    lines = _metadata("0").splitlines()
    return {line.split(": ", 1)[1] for line in lines if line.startswith("Provides-Extra: ")}


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m optuna_seer.backends.skypilot.packages DIR [--extras a,b]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="where to write the wheel and requirements.txt")
    parser.add_argument(
        "--extras",
        default=",".join(NODE_EXTRAS),
        help=f"optuna-seer extras the nodes install (default: {','.join(NODE_EXTRAS)})",
    )
    parser.add_argument(
        "--pin",
        default="optuna",
        help="distributions pinned to the versions installed here (default: optuna)",
    )
    args = parser.parse_args(argv)
    extras = tuple(e for e in args.extras.split(",") if e)
    pins = tuple(p for p in args.pin.split(",") if p)
    packages = write_node_packages(args.directory, extras, pins)
    print(f"{packages.wheel}\n" + "\n".join(packages.requirements))  # CLI output


if __name__ == "__main__":
    main()
