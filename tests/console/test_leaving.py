"""The ``imgtool`` command ends its process as soon as its output is flushed (without tearing the
interpreter down): every consumer must still get every byte, the exit status must be the command's,
and a reader that goes away must not turn into a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgtool.cli import entry, main
from tests.helpers.imagefactory import Entry, File, ImageSpec, make_layer, write_oci_layout
from tests.helpers.slowpipe import read_slowly

# Enough names that the listing is several times a pipe's buffer (64 KiB).
NAMES = 4000


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> str:
    where = tmp_path_factory.mktemp("leaving")
    files = [File(f"d/{n:05d}-{'x' * 40}", b"%d" % n) for n in range(NAMES)]
    return write_oci_layout(where / "oci", [Entry(ImageSpec([make_layer(files)]), ref="v1")]).reference("v1")


def child(
    *args: str, stdout: int | None = subprocess.PIPE, unbuffered: bool = False
) -> subprocess.Popen[bytes]:
    """``imgtool ARGS`` as users run it (the test suite's environment may set PYTHONUNBUFFERED)."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "imgtool", *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
    )


def in_process(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> bytes:
    with pytest.raises(SystemExit):
        main(list(args))
    return capsysbinary.readouterr().out


def test_the_command_is_entry() -> None:
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "imgtool"]
    assert script.load() is entry


def test_a_slow_reader_of_a_pipe_gets_every_byte(
    ref: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    expected = in_process(capsysbinary, "ls", ref, "/", "-R")
    assert len(expected) > 4 * 65536
    with child("ls", ref, "/", "-R") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()
        data = read_slowly(lambda n: os.read(fd, n))
        stderr = proc.stderr.read()
    assert (proc.returncode, stderr) == (0, b"")
    assert data == expected


def test_a_file_read_after_exit_holds_every_byte(
    ref: str, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    expected = in_process(capsysbinary, "ls", ref, "/", "-R", "--json")
    out = tmp_path / "out.json"
    with out.open("wb") as handle, child("ls", ref, "/", "-R", "--json", stdout=handle.fileno()) as proc:
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    assert (proc.returncode, stderr) == (0, b"")
    assert out.read_bytes() == expected


def test_a_reader_that_goes_away_ends_it_quietly(ref: str) -> None:
    with child("ls", ref, "/", "-R") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert len(proc.stdout.read(100)) == 100
        proc.stdout.close()
        stderr = proc.stderr.read()
    assert (proc.returncode, stderr) == (141, b"")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("cat", "REF", "/d/none"), 1, "imgtool: error: /d/none: no such file in the image\n"),
        (("ls", "REF", "--no-such-option"), 2, None),
        (("which-layer", "REF", "/d/none"), 1, None),
    ],
)
def test_the_exit_status_and_the_error_are_the_commands(
    ref: str,
    args: tuple[str, ...],
    code: int,
    message: str | None,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    args = tuple(ref if a == "REF" else a for a in args)
    with pytest.raises(SystemExit) as raised:
        main(list(args))
    captured = capsysbinary.readouterr()
    assert raised.value.code == code
    with child(*args) as proc:
        out, err = proc.communicate()
    assert (proc.returncode, out, err) == (code, captured.out, captured.err)
    if message is not None:
        assert err.decode() == message


@pytest.mark.parametrize("unbuffered", [False, True])
def test_a_non_blocking_pipe_gets_every_byte(
    ref: str, unbuffered: bool, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """A full non-blocking pipe makes a write stop short: the rest must still come, once the reader
    has made room (under PYTHONUNBUFFERED, Python's own text layer drops it and exits 0)."""
    expected = in_process(capsysbinary, "ls", ref, "/", "-R")
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        with child("ls", ref, "/", "-R", stdout=write_end, unbuffered=unbuffered) as proc:
            os.close(write_end)
            write_end = -1
            assert proc.stderr is not None
            data = read_slowly(lambda n: os.read(read_end, n))
            stderr = proc.stderr.read().decode()
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert (proc.returncode, stderr) == (0, "")
    assert data == expected
