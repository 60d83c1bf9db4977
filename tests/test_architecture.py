"""The layering of docs/architecture.md holds, and its checks can fail.

``lint-imports`` (run by scripts/test.sh) enforces the contracts in pyproject.toml; these tests
add an allow-list for the planning core (standard library and numpy, nothing else) and show that
a deliberate violation breaks the contracts.
"""

from __future__ import annotations

import ast
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "optuna_seer"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def imported_roots(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved to the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.add("optuna_seer.planning")
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module", sorted((PACKAGE / "planning").glob("*.py")), ids=lambda p: p.name
)
def test_the_planning_core_imports_only_the_standard_library_and_numpy(module: Path) -> None:
    allowed_roots = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    bad = sorted(
        name
        for name in imported_roots(module)
        if not name.startswith("optuna_seer.planning") and name.split(".")[0] not in allowed_roots
    )
    assert not bad, f"{module.name} imports {bad}; the planning core may use stdlib and numpy only"


def test_importing_the_package_loads_no_tuner_backend_or_torch() -> None:
    code = (
        "import sys, optuna_seer\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'sky', 'boto3',"
        " 'pytorch_lightning', 'matplotlib') or m.startswith(('optuna_seer.execution',"
        " 'optuna_seer.backends', 'optuna_seer.worker'))]\n"
        "print(len(optuna_seer.__all__)); print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split("\n")
    assert out[1] == "[]", out
    assert int(out[0]) <= 32  # a short, curated public API


def test_the_architecture_page_counts_the_public_names() -> None:
    import optuna_seer

    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    said = re.search(r"`optuna_seer.__all__`, (\d+) names", page)
    assert said is not None, "docs/architecture.md no longer says how many names it exports"
    assert int(said.group(1)) == len(optuna_seer.__all__)


def test_a_lazy_public_name_resolves() -> None:
    import optuna_seer

    assert optuna_seer.ElasticTuner.__name__ == "ElasticTuner"
    with pytest.raises(AttributeError, match="no attribute 'rank_key'"):
        optuna_seer.rank_key  # noqa: B018


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed")
def test_a_planning_module_that_imports_optuna_breaks_the_contracts(tmp_path: Path) -> None:
    """The contracts are not vacuous: one import of Optuna in the core makes lint-imports fail."""
    shutil.copytree(PACKAGE, tmp_path / "optuna_seer", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")

    def lint() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LINT_IMPORTS), "--no-cache"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )

    assert lint().returncode == 0
    budget = tmp_path / "optuna_seer" / "planning" / "budget.py"
    budget.write_text(budget.read_text(encoding="utf-8") + "\nimport optuna  # noqa\n")
    broken = lint()
    assert broken.returncode != 0
    assert "The planning core is pure" in broken.stdout and "BROKEN" in broken.stdout


OPTUNA_PRIVATE = {"_storage", "_study_id", "_trial_id", "_backend", "_file_path", "_host", "_port"}
# Attributes of that name on our own objects (not Optuna's): (file, expression).
OURS = {("worker/context.py", "context._storage")}


def test_only_the_adapter_touches_optunas_private_attributes() -> None:
    """``optuna_seer/_optuna.py`` is the one module an Optuna release that renames them breaks."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "_optuna.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in OPTUNA_PRIVATE
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and (relative, ast.unparse(node)) not in OURS
            ):
                found.append(f"{relative}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "use optuna_seer._optuna instead of:\n" + "\n".join(found)
