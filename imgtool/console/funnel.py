"""The error funnel around the click app: every failure becomes one ``imgtool: error: ...`` line on
stderr and its exit code (a traceback too with ``--debug``); warnings are one line each; a command's
output goes to stdout, and a negative answer exits 1."""

from __future__ import annotations

import contextlib
import gc
import io
import os
import select
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

import click

from imgtool.console.completion import COMPLETE_VAR
from imgtool.console.output import clean
from imgtool.errors import ImgtoolError
from imgtool.system.libc import keep_freed_memory

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


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


def show_bytes(data: bytes, note: str | None = None) -> None:
    """Write a document's bytes to stdout exactly as they are (inspect --raw); ``note`` (the bytes
    are derived, not stored) goes to stderr as one line."""
    if note is not None:
        click.echo(f"imgtool: note: {clean(note)}", err=True)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def fail(message: str, code: int = 1) -> NoReturn:
    """The one error line. Messages quote the image's strings as they are (file names already escaped
    by paths.escape): the whole line goes through clean(), which escapes what a terminal would act on
    and leaves the backslashes of escaped names alone."""
    click.echo(f"imgtool: error: {clean(message)}", err=True)
    sys.exit(code)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run(group: click.Group, argv: Sequence[str] | None = None, *, leave_at_once: bool = False) -> None:
    """Run ``group``; every ImgtoolError becomes one ``imgtool: error:`` line and its exit code.

    With ``leave_at_once`` (a process of its own: the ``imgtool`` command), the process ends as soon
    as the command has and its output is flushed (see :func:`_leave`); otherwise SystemExit is raised.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    keep_freed_memory()
    _complete_writes()
    # Indexes, trees and change logs are large and free of reference cycles: the cycle collector
    # would only walk them again and again (a tenth of a warm which-layer's time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        _run(group, list(argv) if argv is not None else sys.argv[1:])
    except SystemExit as exc:
        if leave_at_once:
            _leave(exc.code)
        raise
    finally:
        if collecting:
            gc.enable()


def _complete_writes() -> None:
    """Make every write to stdout complete, as readers of a pipe expect.

    Under PYTHONUNBUFFERED (or ``python -u``) sys.stdout writes straight to file descriptor 1 and
    silently drops what a short write leaves; and a non-blocking stdout (a parent may hand one over)
    makes a write stop short whenever the pipe is full. Either way the reader would get part of the
    output and exit status 0. Where stdout is either, it is given a buffered writer over a descriptor
    that waits until the pipe takes more: text still goes out at once.
    """
    stdout = sys.stdout
    if stdout is None or stdout is not sys.__stdout__ or not isinstance(stdout, io.TextIOWrapper):
        return  # not the process's own stdout (a test capturing it, say)
    try:
        fd = stdout.fileno()
        blocking = os.get_blocking(fd)
    except (OSError, ValueError):
        return
    if blocking and not isinstance(stdout.buffer, io.RawIOBase):
        return
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_PatientWriter(fd)),
        encoding=stdout.encoding,
        errors=stdout.errors,
        line_buffering=stdout.line_buffering,
        write_through=True,
    )


class _PatientWriter(io.RawIOBase):
    """File descriptor ``fd`` for writing, waiting while a non-blocking one is full (never closed here)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: ReadableBuffer, /) -> int:
        while True:
            try:
                return os.write(self._fd, data)
            except BlockingIOError:
                select.select((), (self._fd,), ())


def _leave(code: object) -> NoReturn:
    """End the process with ``code`` (as SystemExit would) once stdout and stderr are flushed, without
    tearing the interpreter down: freeing a large image's indexes and trees one object at a time takes
    longer than some commands do, and nothing is left to do once the output is out. Every file the
    command wrote was closed by then, every staging directory removed, every thread joined."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"), as Python would show it
        print(code, file=sys.stderr)
        status = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away before the last bytes (``imgtool ... | head``)
        status = status or 141
    except (OSError, ValueError):
        status = status or 1
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(status)


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
