"""Docs that cannot rot: every ```python block in README.md and docs/*.md is a test.

Each block is one test, named ``<file>:<line of its opening fence>`` (``README.md:94``). It is
run with ``exec`` as a script (``__name__ == "__main__"``), in a fresh namespace and a fresh
temporary directory that stands for a checkout's root: ``examples/`` there is a copy of the
repository's, so ``train="examples/lightning_digits.py:train"`` works, and ``HOME`` is another
fresh directory, so SkyPilot, Lightning and the rest write nothing real. Tracebacks name the
Markdown file and its line.

Markers are HTML comments (GitHub does not show them) on the lines right above a fence:

* ``<!-- not-run: REASON -->``: the block cannot run here (a real cloud, a GPU, a fragment of a
  training script that only runs inside a launched worker). It is collected as skipped with
  REASON, so the reason shows in the test report. A reason is required.
* ``<!-- slow -->`` (or ``<!-- slow: why -->``): a heavy but runnable block (real training
  processes); it runs under ``-m slow``.
* ``<!-- continues -->``: the block continues the previous python block of its file, which
  runs first (with whatever it continues) in the same namespace and directory. Blocks are
  otherwise self-contained. Continuing a not-run block needs ``not-run`` too; continuing a
  slow block makes the block slow.
* ``<!-- output -->`` above a plain fence: the fence holds what the previous python block of
  the file prints; the test compares it line by line (trailing spaces ignored).

Every python block, run or not, must also parse, and its top-level imports must resolve
(:func:`test_imports_resolve`), so a not-run block keeps naming a real API.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
import re
import shutil
import textwrap

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^( {0,3})```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(not-run|slow|continues|output)\s*(?::\s*(.*?))?\s*-->\s*$")


@dataclass
class Block:
    """One fenced block of a Markdown file."""

    doc: str  # the file, relative to the repository: "README.md", "docs/planning.md"
    line: int  # its opening fence, 1-based
    lang: str
    code: str
    markers: dict[str, str] = field(default_factory=dict)  # marker -> its text ("" if none)
    previous: Block | None = None  # the previous python block of the file ("continues")
    output: str | None = None  # what it prints, from an "output" fence below it

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    def chain(self) -> list[Block]:
        """The blocks to run, in order: those it continues, then itself."""
        blocks = [self]
        while "continues" in blocks[0].markers:
            previous = blocks[0].previous
            assert previous is not None
            blocks.insert(0, previous)
        return blocks

    @property
    def not_run(self) -> str | None:
        return self.markers.get("not-run")

    @property
    def slow(self) -> bool:
        return any("slow" in block.markers for block in self.chain())


def parse_blocks(doc: str, text: str) -> list[Block]:
    """The fenced blocks of one Markdown text, with their markers, checked for sense."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, lang = opening.groups()
        markers: dict[str, str] = {}
        above = index - 1
        while above >= 0 and (marker := _MARKER.match(lines[above])) is not None:
            markers[marker.group(1)] = marker.group(2) or ""
            above -= 1
        end = index + 1
        while end < len(lines) and not re.match(r"^ {0,3}```\s*$", lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{doc}:{index + 1}: the fence opened here is never closed")
        body = [line.removeprefix(indent) for line in lines[index + 1 : end]]
        blocks.append(Block(doc, index + 1, lang, textwrap.dedent("\n".join(body)), markers))
        index = end + 1
    previous: Block | None = None
    for block in blocks:
        where = f"{block.id}: "
        if block.lang != "python":
            if "output" in block.markers:
                if previous is None:
                    raise ValueError(where + "an output fence needs a python block above it")
                previous.output = block.code
            elif block.markers:
                raise ValueError(where + f"markers {sorted(block.markers)} on a non-python fence")
            continue
        if "output" in block.markers:
            raise ValueError(where + "<!-- output --> belongs above the fence of what it prints")
        if "not-run" in block.markers and not block.markers["not-run"]:
            raise ValueError(where + "say why: <!-- not-run: REASON -->")
        if "continues" in block.markers:
            if previous is None:
                raise ValueError(where + "continues, but no python block comes before it")
            if previous.not_run is not None and block.not_run is None:
                raise ValueError(where + f"continues {previous.id}, which is not run")
        block.previous = previous
        previous = block
    return blocks


def doc_blocks() -> list[Block]:
    """Every python block of README.md and docs/*.md."""
    return [
        block
        for path in DOCS
        for block in parse_blocks(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        if block.lang == "python"
    ]


def _params() -> list[object]:
    params: list[object] = []
    for block in doc_blocks():
        marks: list[pytest.MarkDecorator] = []
        if block.not_run is not None:
            marks.append(pytest.mark.skip(reason=f"{block.id} not run here: {block.not_run}"))
        elif block.slow:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(block, marks=marks, id=block.id))
    return params


def _tree(block: Block) -> ast.Module:
    """The block's syntax tree, with the Markdown file's line numbers (for tracebacks)."""
    return ast.parse("\n" * block.line + block.code, filename=str(ROOT / block.doc))


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh working directory standing for a checkout's root, with a fresh ``HOME``."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(
        ROOT / "examples", work / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    yield work


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


@pytest.mark.parametrize("block", _params())
def test_doc_block(block: Block, checkout: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "__main__"}
    for step in block.chain():
        capsys.readouterr()  # what earlier blocks printed is theirs
        exec(compile(_tree(step), str(ROOT / step.doc), "exec"), namespace)
    if block.output is not None:
        printed = capsys.readouterr().out
        assert _lines(printed) == _lines(block.output), (
            f"{block.id} prints something else than the output fence below it shows:\n{printed}"
        )


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in doc_blocks()])
def test_imports_resolve(block: Block, checkout: Path) -> None:
    """Run or not, a block parses and imports only what exists."""
    imports: list[ast.stmt] = [
        node for node in _tree(block).body if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    exec(compile(ast.Module(body=imports, type_ignores=[]), str(ROOT / block.doc), "exec"), {})


def test_markers() -> None:
    """The marker rules, on a small document."""
    text = textwrap.dedent(
        """\
        <!-- slow: trains -->
        ```python
        x = 1
        ```
        <!-- output -->
        ```
        1
        ```
        <!-- continues -->
        ```python
        print(x)
        ```
        <!-- not-run: needs AWS credentials -->
        ```python
        import sky
        ```
        """
    )
    first, output, second, third = parse_blocks("doc.md", text)
    assert first.markers == {"slow": "trains"} and first.output == "1" and output.lang == ""
    assert second.chain() == [first, second] and second.slow and second.id == "doc.md:10"
    assert third.not_run == "needs AWS credentials" and not third.slow
    for bad in (
        "<!-- not-run -->\n```python\n```\n",
        "<!-- continues -->\n```python\n```\n",
        "```python\n",
        "<!-- slow -->\n```bash\n```\n",
        "<!-- not-run: x -->\n```python\n```\n<!-- continues -->\n```python\n```\n",
    ):
        with pytest.raises(ValueError):
            parse_blocks("bad.md", bad)
