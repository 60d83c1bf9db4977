"""Every ``sky ...`` command the docs and the launchers show exists in the installed SkyPilot.

Collects the SkyPilot commands from the code of README.md and docs/*.md (fenced blocks and
inline code) and from everything in launchers/ (the templates' comments, the tune script),
then runs ``sky <command> --help`` for each through SkyPilot's own click group (the one the
``sky`` console script calls; in-process, so the check costs no process start per command)
and requires exit status 0, and every long option shown with it (``--resize``, ``--secret``,
``--provision`` …) to be one that help lists. No cloud is involved: ``--help`` parses only.
"""

from __future__ import annotations

from pathlib import Path
import re
from typing import Any

import pytest

from tests.fake_sky import REPO_ROOT

# SkyPilot's command groups: their commands are "<group> <command>".
GROUPS = ("jobs", "gpus", "api", "serve", "storage", "volumes")
COMMAND = re.compile(
    r"(?:^|[\s`'\"(=])sky\s+((?:" + "|".join(GROUPS) + r")\s+)?([a-z][a-z-]*)",
    re.MULTILINE,
)
FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.DOTALL)
INLINE = re.compile(r"``?([^`\n]+)``?")


def code_text(path: Path) -> str:
    """What of ``path`` is code: fenced blocks and inline code of Markdown; all of a
    launcher (commands sit in YAML comments and the script's docstring)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".md":
        return text
    fenced = FENCE.findall(text)
    prose = FENCE.sub("", text)
    return "\n".join([*fenced, *INLINE.findall(prose)])


# Where a shown command ends: a pipe, a separator, a comment, a closing bracket or backtick.
COMMAND_END = re.compile(r"[|;#&)`]")
LONG_OPTION = re.compile(r"(?:^|\s)(--[a-z][a-z0-9-]*)")


def documented_options() -> dict[tuple[tuple[str, ...], str], list[str]]:
    """Each long option shown after a ``sky`` command (``(("launch",), "--resize")``) → where."""
    found: dict[tuple[tuple[str, ...], str], list[str]] = {}
    for path in documented_files():
        text = code_text(path).replace("\\\n", " ")  # a command continued on the next line
        for match in COMMAND.finditer(text):
            group, command = match.group(1), match.group(2)
            key = (group.strip(), command) if group else (command,)
            rest = text[match.end() :].split("\n", 1)[0]
            rest = COMMAND_END.split(rest, 1)[0]
            for option in LONG_OPTION.findall(rest):
                found.setdefault((key, option), []).append(str(path.relative_to(REPO_ROOT)))
    return found


def documented_files() -> list[Path]:
    return [
        REPO_ROOT / "README.md",
        *sorted((REPO_ROOT / "docs").glob("*.md")),
        *sorted(p for p in (REPO_ROOT / "launchers").iterdir() if p.is_file()),
    ]


def documented_commands() -> dict[tuple[str, ...], list[str]]:
    """Each ``sky`` command shown (``("jobs", "launch")``, ``("logs",)``) → where."""
    found: dict[tuple[str, ...], list[str]] = {}
    for path in documented_files():
        for group, command in COMMAND.findall(code_text(path)):
            key = (group.strip(), command) if group else (command,)
            found.setdefault(key, []).append(str(path.relative_to(REPO_ROOT)))
    return found


@pytest.fixture(scope="module")
def sky_cli(sky_home_dir: Path) -> Any:
    # What the ``sky`` console script runs (sky.cli:cli calls this click group).
    from sky.client.cli.command import cli

    return cli


def run_help(cli: Any, command: tuple[str, ...]) -> Any:
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [*command, "--help"], catch_exceptions=True)


def test_the_docs_show_the_commands_a_user_needs() -> None:
    shown = documented_commands()
    # The ones a cloud run needs, so the collector finds them (an empty scan passes nothing).
    for needed in [("launch",), ("logs",), ("down",), ("status",), ("jobs", "launch")]:
        assert needed in shown, sorted(shown)


@pytest.mark.parametrize("command", sorted(documented_commands()), ids=" ".join)
def test_every_sky_command_in_the_docs_exists(sky_cli: Any, command: tuple[str, ...]) -> None:
    result = run_help(sky_cli, command)
    where = documented_commands()[command]
    assert result.exit_code == 0, (
        f"`sky {' '.join(command)} --help` exited {result.exit_code} (shown in {where}): "
        f"{result.output[-500:]}"
    )


def test_a_command_skypilot_lacks_is_caught(sky_cli: Any) -> None:
    # What docs/cloud.md once showed: the check must be able to fail.
    assert run_help(sky_cli, ("rsync-down",)).exit_code != 0
    assert run_help(sky_cli, ("launch",)).exit_code == 0


def lists_option(help_text: str, option: str) -> bool:
    """Whether ``help_text`` lists ``option`` itself (not only a longer one it begins)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text) is not None


def test_the_docs_show_the_options_a_user_needs() -> None:
    shown = documented_options()
    for needed in [(("launch",), "--secret"), (("launch",), "--env"), (("launch",), "--resize")]:
        assert needed in shown, sorted(shown)


@pytest.mark.parametrize(
    ("command", "option"),
    sorted(documented_options()),
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_every_option_the_docs_show_is_one_skypilot_has(
    sky_cli: Any, command: tuple[str, ...], option: str
) -> None:
    result = run_help(sky_cli, command)
    where = documented_options()[(command, option)]
    assert result.exit_code == 0 and lists_option(result.output, option), (
        f"`sky {' '.join(command)}` has no option {option} (shown in {where}): "
        f"{result.output[-800:]}"
    )


def test_an_option_skypilot_lacks_is_caught(sky_cli: Any) -> None:
    shown = run_help(sky_cli, ("launch",)).output
    assert lists_option(shown, "--resize") and lists_option(shown, "--secret")
    assert not lists_option(shown, "--resize-to") and not lists_option(shown, "--resiz")
    # A longer option is not the one shown: --idle-minutes-to-autostop is not --idle.
    assert not lists_option(shown, "--idle")
