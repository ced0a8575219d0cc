"""Running imgtool's CLI in-process with click's own ``CliRunner``, through the error funnel the
installed ``imgtool`` command runs (:func:`imgtool.cli.main`): one-line errors, exit codes 1, 2 and
130, ``--debug`` tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import click
from click.testing import CliRunner

from imgtool.cli import main

Stream = Literal["stdout", "stderr"]


class _Installed(click.Command):
    """What ``CliRunner`` invokes: the command line as the ``imgtool`` script runs it.

    ``CliRunner.invoke`` calls a command's ``main``; click's own ``Command.main`` would handle errors
    click's way, so this one hands the arguments to :func:`imgtool.cli.main`, which runs the group
    inside imgtool's funnel. The streams named in ``terminals`` claim to be a terminal, as the
    user's would.
    """

    def __init__(self, terminals: Collection[Stream] = ()) -> None:
        super().__init__("imgtool")
        self._terminals = frozenset(terminals)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> NoReturn:
        for name in self._terminals:
            stream = getattr(sys, name)  # CliRunner's capturing stream, in place while it invokes
            stream.isatty = lambda: True
        main(list(args or ()))
        raise AssertionError("imgtool.cli.main returned instead of exiting")  # pragma: no cover


@dataclass(frozen=True)
class Run:
    """What one run of the CLI gave: its exit code and the exact bytes of stdout and stderr."""

    code: int
    stdout_bytes: bytes
    stderr_bytes: bytes

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.stderr_bytes.decode("utf-8", "replace")


class ImgtoolCli:
    """``imgtool_cli("inspect", ref)``: run the CLI in-process as a user would, stdout and stderr apart.

    An exception that escapes the funnel is raised in the test (it would be a traceback for a user),
    not turned into an exit code.
    """

    def __init__(self, terminals: Collection[Stream] = ()) -> None:
        self._entry = _Installed(terminals)
        # click keeps the escape sequences of what it echoes only to a terminal; CliRunner decides
        # that for both streams at once, and imgtool colours only stdout.
        self._colour = "stdout" in terminals

    def __call__(self, *args: str) -> Run:
        result = CliRunner().invoke(self._entry, list(args), catch_exceptions=False, color=self._colour)
        return Run(result.exit_code, result.stdout_bytes, result.stderr_bytes)

    def on_terminal(self, *streams: Stream) -> ImgtoolCli:
        """The same CLI with ``streams`` (``"stdout"``, ``"stderr"``) claiming to be a terminal."""
        return ImgtoolCli(streams)
