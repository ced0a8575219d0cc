"""The first ten minutes: help for every command, examples that parse, --version, colour and progress."""

from __future__ import annotations

import os
import pty
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from imgtool import __version__
from imgtool.cli import cli
from tests.helpers.cli import ImgtoolCli

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "examples" / "sample.tar")
SAMPLE_11 = f"oci:{ROOT / 'examples' / 'sample-oci'}:1.1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUMMARY_LIMIT = 60  # what fits in the command list of an 80-column terminal without "..."


def _tree(command: click.Command, path: str = "imgtool") -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from _tree(command.commands[name], f"{path} {name}")


COMMANDS = list(_tree(cli))
IDS = [path for path, _ in COMMANDS]


def _examples(help_text: str) -> list[str]:
    """The indented lines under an ``Example:`` or ``Examples:`` heading, up to a blank line."""
    lines = help_text.splitlines()
    found: list[str] = []
    for number, line in enumerate(lines):
        if line.strip() in ("Example:", "Examples:"):
            for following in lines[number + 1 :]:
                if not following.strip():
                    break
                found.append(following.strip())
    return found


def _example_argv(example: str) -> list[str]:
    """The imgtool command line of an example: no trailing comment, pipe or redirection."""
    text = example.split("  #", 1)[0]
    text = re.split(r"\s[|>]\s", text, maxsplit=1)[0]
    return shlex.split(text)


def _parse(argv: list[str]) -> click.Context:
    """Parse an imgtool command line as ``main`` would, down to the leaf command, without running it.

    Each context is made with its parent, as click does, so settings such as ``-h`` are inherited.
    """
    assert argv[0] == "imgtool"
    rest = argv[1:]
    ctx = cli.make_context("imgtool", list(rest))
    command: click.Command = cli
    while isinstance(command, click.Group):
        assert rest and rest[0] in command.commands, (
            f"{argv}: no subcommand of {ctx.command_path} at {rest[:1]}"
        )
        name, rest = rest[0], rest[1:]
        command = command.commands[name]
        ctx = command.make_context(name, list(rest), parent=ctx)
    return ctx


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_has_a_short_summary(path: str, command: click.Command) -> None:
    assert command.help, f"{path} has no help"
    first = command.help.strip().splitlines()[0]
    assert first.strip(), path
    assert len(first) <= SUMMARY_LIMIT, f"{path}: summary of {len(first)} characters: {first!r}"
    assert first.endswith("."), path


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_help_has_examples_that_parse(
    path: str, command: click.Command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert command.help
    examples = _examples(command.help)
    assert examples, f"{path} --help has no Example section"
    monkeypatch.chdir(tmp_path)  # a click.Path in an example must not meet a real file
    for example in examples:
        assert example.startswith("imgtool "), example
        try:
            ctx = _parse(_example_argv(example))
        except click.ClickException as exc:
            pytest.fail(f"{example!r} does not parse: {exc.format_message()}")
        if not isinstance(command, click.Group):
            assert ctx.command is command, f"an example of {path} runs {ctx.command_path}: {example}"


@pytest.mark.parametrize("path", IDS)
def test_help_option_prints_usage_and_examples(imgtool_cli: ImgtoolCli, path: str) -> None:
    args = path.split()[1:]
    for flag in ("--help", "-h"):
        run = imgtool_cli(*args, flag)
        assert run.code == 0, run.stderr
        assert run.stdout.startswith(f"Usage: {path} "), run.stdout
        assert "Example" in run.stdout
        assert not run.stderr


def test_command_list_is_not_truncated(imgtool_cli: ImgtoolCli) -> None:
    for args in ((), ("diff",)):
        run = imgtool_cli(*args, "--help")
        listing = run.stdout.split("Commands:", 1)[1]
        assert "..." not in listing, listing


def test_no_arguments_shows_the_command_list(imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli()
    assert run.code == 0
    assert run.stdout.startswith("Usage: imgtool ")
    listing = run.stdout.split("Commands:", 1)[1]
    for name in cli.commands:
        assert re.search(rf"^  {re.escape(name)}\s", listing, re.MULTILINE), name
    assert not run.stderr


def test_group_without_subcommand_shows_its_list(imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("diff")
    assert run.code == 0
    assert "layers" in run.stdout and "images" in run.stdout


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(imgtool_cli: ImgtoolCli, flag: str) -> None:
    run = imgtool_cli(flag)
    assert (run.code, run.stdout, run.stderr) == (0, f"imgtool {__version__}\n", "")


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "imgtool", "--version"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert (result.returncode, result.stdout) == (0, f"imgtool {__version__}\n")


def test_usage_error_exits_2_with_a_hint(imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("ls", SAMPLE, "--layer", "x")
    assert run.code == 2
    assert run.stderr.startswith("imgtool: error: ")
    assert "(see 'imgtool ls --help')" in run.stderr


# -- colour ------------------------------------------------------------------------------------


def _on_terminal(*args: str, env: dict[str, str] | None = None) -> str:
    """Run imgtool with stdout on a pseudo-terminal; returns what the terminal received."""
    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environment.update(PYTHONPATH=str(ROOT), TERM="xterm", **(env or {}))
    with subprocess.Popen(
        [sys.executable, "-m", "imgtool", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env=environment,
    ) as proc:
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_piped_output_has_no_colour(imgtool_cli: ImgtoolCli) -> None:
    for args in (
        ("verify", SAMPLE),
        ("diff", "layers", SAMPLE, "2", "-v"),
        ("diff", "images", SAMPLE, SAMPLE_11),
        ("which-layer", SAMPLE, "/etc/app/*"),
    ):
        run = imgtool_cli(*args)
        assert run.stdout.strip(), args
        assert not ANSI.search(run.stdout), args
        assert "\x1b" not in run.stderr, args


def test_terminal_output_is_coloured() -> None:
    shown = _on_terminal("verify", SAMPLE)
    assert "\x1b[32mok\x1b[0m" in shown
    shown = _on_terminal("diff", "layers", SAMPLE, "2", "-v")
    assert "\x1b[33mmodified\x1b[0m" in shown and "\x1b[32madded\x1b[0m" in shown


def test_no_color_turns_colour_off_on_a_terminal() -> None:
    shown = _on_terminal("verify", SAMPLE, env={"NO_COLOR": "1"})
    assert "ok" in shown and not ANSI.search(shown)


def test_json_is_never_coloured_even_on_a_terminal() -> None:
    shown = _on_terminal("verify", SAMPLE, "--json")
    assert '"status": "ok"' in shown and "\x1b" not in shown


def test_colour_when_stdout_claims_a_terminal(
    imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    run = imgtool_cli.on_terminal("stdout")("which-layer", SAMPLE, "/opt/app/share/install.log")
    assert "\x1b[31mdeleted\x1b[0m" in run.stdout
    run = imgtool_cli.on_terminal("stdout")("diff", "images", SAMPLE, SAMPLE_11, "--json")
    assert "\x1b" not in run.stdout


# -- progress ----------------------------------------------------------------------------------


def test_no_progress_bar_when_stderr_is_not_a_terminal(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    run = imgtool_cli("flatten", SAMPLE, "-o", str(tmp_path / "rootfs"))
    assert run.code == 0
    assert run.stderr == f"imgtool: wrote 39 paths (4.6 KB of file data) to {tmp_path / 'rootfs'}\n"


def test_progress_bar_on_a_terminal(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    run = imgtool_cli.on_terminal("stderr")("flatten", SAMPLE, "-o", str(tmp_path / "rootfs"))
    assert run.code == 0
    assert "\rindexing layers" in run.stderr
    assert "100.0%" in run.stderr
    assert run.stderr.endswith(f"imgtool: wrote 39 paths (4.6 KB of file data) to {tmp_path / 'rootfs'}\n")
    assert not run.stdout


def test_quiet_and_json_draw_no_progress_bar_on_a_terminal(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    on_terminal = imgtool_cli.on_terminal("stderr")
    run = on_terminal("flatten", SAMPLE, "-o", str(tmp_path / "rootfs"), "-q")
    assert (run.code, run.stderr) == (0, "")
    for args in (
        ("verify", SAMPLE, "--json"),
        ("ls", SAMPLE, "--json"),
        ("diff", "layers", SAMPLE, "--json"),
    ):
        run = on_terminal(*args)
        assert (run.code, run.stderr) == (0, ""), args


def test_table_formats_are_tabulates() -> None:
    from tabulate import tabulate_formats

    from imgtool.console.output import TABLE_FORMATS

    assert tuple(sorted(tabulate_formats)) == TABLE_FORMATS


def test_every_long_help_text_belongs_to_a_command() -> None:
    from imgtool.console.helptext import HELP

    assert set(HELP) == {path.removeprefix("imgtool ") for path in IDS[1:]}
    for path, command in COMMANDS[1:]:
        assert command.help is not None
        summary, long_help = command.help.split("\n", 1)
        assert "\n" not in summary and long_help == HELP[path.removeprefix("imgtool ")], path


def test_a_command_without_long_help_is_refused() -> None:
    from imgtool.console.helptext import attach

    group = click.Group("imgtool", commands=[click.Command("undocumented", help="Do a thing.")])
    with pytest.raises(KeyError, match="no long help for command 'undocumented'"):
        attach(group)
