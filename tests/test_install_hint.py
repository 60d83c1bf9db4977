"""Every "install X" hint points at what works: optuna-seer is on no package index.

``pip install 'optuna-seer[s3]'`` would ask PyPI for a package that is not there; the hints say
``pip install '.[s3]'`` in a clone (or the bare package that is missing), all through
:func:`optuna_seer._install.install_hint`. A missing module is simulated by
``sys.modules[name] = None``.
"""

from __future__ import annotations

from pathlib import Path
import re
import subprocess
import sys

import pytest

from optuna_seer._install import EXTRA_REQUIREMENTS, install_hint

REPO = Path(__file__).resolve().parent.parent


def _expanded(extras: dict[str, list[str]], extra: str) -> tuple[str, ...]:
    out: list[str] = []
    for requirement in extras[extra]:
        own = re.fullmatch(r"optuna-seer\[(.+)\]", requirement)
        if own:
            for name in own.group(1).split(","):
                out += [r for r in _expanded(extras, name) if r not in out]
        elif requirement not in out:
            out.append(requirement)
    return tuple(out)


def test_the_hints_know_the_extras_of_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    user_facing = {name for name in extras if name not in ("test", "lint", "dev")}
    assert set(EXTRA_REQUIREMENTS) == user_facing
    for name in user_facing:
        assert EXTRA_REQUIREMENTS[name] == _expanded(extras, name), name


def test_install_hint_names_the_clone_and_the_bare_package() -> None:
    assert install_hint("s3", "s3fs") == (
        "pip install '.[s3]' in an optuna-seer clone (or pip install 's3fs>=2023.9')"
    )
    assert install_hint("sky") == "pip install '.[sky]' in an optuna-seer clone"
    assert install_hint(None, "scikit-learn") == "pip install 'scikit-learn>=1.3'"
    with pytest.raises(ValueError, match="no extra"):
        install_hint("nope")


def _assert_works(message: str, extra: str) -> None:
    assert "optuna-seer[" not in message  # not on PyPI: that install fails
    assert f"pip install '.[{extra}]' in an optuna-seer clone" in message


def test_aws_spot_prices_without_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_seer.pricing.sources import aws_spot_quotes

    monkeypatch.setitem(sys.modules, "botocore", None)
    with pytest.raises(RuntimeError) as caught:
        aws_spot_quotes(["p3.2xlarge"], region="us-east-1")
    _assert_works(str(caught.value), "s3")
    assert "'botocore'" in str(caught.value)


def test_skypilot_backend_without_skypilot(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_seer.cli.tune_command import _skypilot_factory

    monkeypatch.setitem(sys.modules, "optuna_seer.backends.skypilot.backend", None)
    with pytest.raises(ValueError) as caught:
        _skypilot_factory(8)
    _assert_works(str(caught.value), "sky")


def test_seer_callback_without_lightning(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_seer.worker.lightning import default_namespace

    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)
    with pytest.raises(ModuleNotFoundError) as caught:
        default_namespace()
    _assert_works(str(caught.value), "lightning")


@pytest.mark.parametrize(
    ("url", "extra", "package"), [("s3", "s3", "s3fs"), ("gs", "gcs", "gcsfs")]
)
def test_remote_checkpoints_without_their_filesystem(url: str, extra: str, package: str) -> None:
    # In a fresh interpreter: once an earlier test has imported the filesystem, fsspec keeps
    # its class registered, and hiding the module no longer makes fsspec's import fail.
    pytest.importorskip("fsspec")
    script = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "from optuna_seer.storage.retry import RetryPolicy\n"
        "from optuna_seer.worker import remote_checkpoints\n"
        "try:\n"
        f"    remote_checkpoints._filesystem({url!r}, {{}}, RetryPolicy())\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    message = run.stdout.strip()
    _assert_works(message, extra)
    assert f"'{package}>=2023.9'" in message


def test_proxy_credential_without_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    from optuna_seer.storage.tunnel import ProxyCredential

    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(ImportError) as caught:
        ProxyCredential.generate()
    _assert_works(str(caught.value), "grpc")


def test_no_source_hint_names_the_package_index() -> None:
    hinted = [
        str(path.relative_to(REPO))
        for folder in ("optuna_seer", "scripts", "examples", "launchers")
        for path in sorted((REPO / folder).rglob("*.py"))
        if "pip install 'optuna-seer[" in path.read_text()
        or "pip install optuna-seer[" in path.read_text()
    ]
    assert hinted == []
