"""The error funnel around the click app: every failure becomes one ``imgtool: error: ...`` line on
stderr and its exit code (a traceback too with ``--debug``); warnings are one line each; a command's
output goes to stdout, and a negative answer exits 1."""

from __future__ import annotations

import gc
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import click

from imgtool.console.completion import COMPLETE_VAR
from imgtool.console.output import clean
from imgtool.errors import ImgtoolError
from imgtool.system.libc import keep_freed_memory


class _State:
    debug = False  # set by the group's --debug


def set_debug(debug: bool) -> None:
    _State.debug = debug


def warn(message: str) -> None:
    click.echo(f"imgtool: warning: {clean(message)}", err=True)


def show(text: str, answer: bool = True) -> None:
    """Write a command's rendered output to stdout as it is; a negative ``answer`` (a path absent,
    a digest mismatch, images that differ) then exits 1."""
    click.echo(text, nl=False)
    if not answer:
        sys.exit(1)


def fail(message: str, code: int = 1) -> NoReturn:
    """The one error line. Messages quote the image's strings as they are (file names already escaped
    by paths.escape): the whole line goes through clean(), which escapes what a terminal would act on
    and leaves the backslashes of escaped names alone."""
    click.echo(f"imgtool: error: {clean(message)}", err=True)
    sys.exit(code)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(group: click.Group, argv: Sequence[str] | None = None) -> None:
    """Run ``group``; every ImgtoolError becomes one ``imgtool: error:`` line and its exit code."""
    signal.signal(signal.SIGTERM, _interrupt)
    keep_freed_memory()
    # Indexes, trees and change logs are large and free of reference cycles: the cycle collector
    # would only walk them again and again (a tenth of a warm which-layer's time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        _run(group, list(argv) if argv is not None else sys.argv[1:])
    finally:
        if collecting:
            gc.enable()


def _run(cli: click.Group, args: list[str]) -> NoReturn:
    if os.environ.get(COMPLETE_VAR):
        cli.main(args=args, prog_name="imgtool")  # shell completion: click answers and exits
    try:
        with cli.make_context("imgtool", args) as ctx:
            result = cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        fail("interrupted", 130)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "")
        sys.exit(0)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except ImgtoolError as exc:
        if _State.debug:
            traceback.print_exc()
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except OSError as exc:
        if _State.debug:
            traceback.print_exc()
        name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes)) else exc.filename
        fail(f"{f'{name}: ' if name else ''}{exc.strerror or exc}", 1)
    except Exception as exc:  # a bug; the user still gets one line, and --debug the traceback
        if _State.debug:
            traceback.print_exc()
        fail(f"internal error: {type(exc).__name__}: {exc} (a bug in imgtool; --debug shows where)", 1)
    sys.exit(result if isinstance(result, int) else 0)


def _quiet_broken_pipe() -> NoReturn:
    """The reader went away (``imgtool ... | head``): exit without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)
