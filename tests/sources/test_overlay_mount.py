"""``overlay-mount:PATH``: a live overlay mount read through the directories mountinfo names.

The mountinfo parsing is tested on lines as the kernel writes them; a real overlay is mounted in
a private mount namespace (nothing leaks to the machine's), changed through the mount, and read by
imgtool in that namespace: the flattened image is the tree the kernel shows.
"""

from __future__ import annotations

import ctypes
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgtool.errors import ImageFormatError, ImageNotFoundError, ImgtoolError, UsageError
from imgtool.sources.overlay_mount import split_lowerdir, stack_of, unescape
from tests.helpers.cli import ImgtoolCli
from tests.helpers.realtools import missing_tools
from tests.helpers.treesnap import tar_listing


def _line(mount_point: bytes, options: bytes, fstype: bytes = b"overlay", root: bytes = b"/") -> bytes:
    return b"45 27 0:39 %s %s rw,relatime shared:1 - %s overlay rw,%s" % (root, mount_point, fstype, options)


MOUNTINFO = b"\n".join(
    [
        b"1 0 8:1 / / rw,relatime - ext4 /dev/sda1 rw",
        _line(b"/m\\040n", b"lowerdir=/l/two:/l/o\\134:ne\\054x,upperdir=/u\\040p,workdir=/w,uuid=on"),
        _line(b"/plus", b"lowerdir+=/l/a\\134b,lowerdir+=/l/c:d,upperdir=/u,workdir=/w"),
        _line(b"/ro", b"lowerdir=/l/2:/l/1"),
        _line(b"/data", b"lowerdir=/l/2::/l/d,upperdir=/u,workdir=/w"),
        _line(b"/data2", b"lowerdir+=/l/2,datadir+=/l/d,upperdir=/u,workdir=/w"),
        _line(b"/rel", b"lowerdir=l/2:/l/1,upperdir=/u,workdir=/w"),
        _line(b"/bind", b"lowerdir=/l/1,upperdir=/u,workdir=/w", root=b"/sub"),
        _line(b"/ext", b"", fstype=b"ext4"),
        _line(b"/meta", b"lowerdir=/l/1,upperdir=/u,workdir=/w,redirect_dir=on,metacopy=on"),
        _line(b"/twice", b"lowerdir=/l/first"),
        _line(b"/twice", b"lowerdir=/l/second"),
        b"",
    ]
)


@pytest.mark.parametrize(
    ("mount_point", "stack"),
    [
        # lowest first; "\:" a colon in a name, octal escapes undone
        ("/m n", (["/l/o:ne,x", "/l/two"], "/u p")),
        ("/plus", (["/l/c:d", "/l/a\\b"], "/u")),  # lowerdir+: whole paths, top first
        ("/ro", (["/l/1", "/l/2"], None)),
        ("/twice", (["/l/second"], None)),  # the mount on top is the one seen
    ],
)
def test_stack_from_mountinfo(mount_point: str, stack: tuple[list[str], str | None]) -> None:
    assert stack_of(MOUNTINFO, mount_point) == stack


@pytest.mark.parametrize(
    ("mount_point", "error", "message"),
    [
        ("/data", UsageError, "overlay-mount:/data: its lowerdir has data-only layers ('::'): not supported"),
        ("/data2", UsageError, "overlay-mount:/data2: it has data-only layers (datadir+): not supported"),
        (
            "/rel",
            UsageError,
            "overlay-mount:/rel: its directory 'l/2' was given relative to where it was mounted",
        ),
        (
            "/bind",
            UsageError,
            "overlay-mount:/bind: a bind mount of /sub inside an overlay, not the overlay's root",
        ),
        ("/ext", UsageError, "overlay-mount:/ext: its file system is ext4, not overlay"),
        (
            "/meta",
            UsageError,
            "overlay-mount:/meta: mounted with redirect_dir=on: "
            "its files' redirect and metacopy xattrs are not followed: not supported",
        ),
        (
            "/nowhere",
            ImageNotFoundError,
            "overlay-mount:/nowhere: not a mount point (not in /proc/self/mountinfo)",
        ),
    ],
)
def test_mountinfo_refusals(mount_point: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        stack_of(MOUNTINFO, mount_point)
    assert str(raised.value) == message


def test_mountinfo_cut_short_and_escapes() -> None:
    with pytest.raises(ImageFormatError, match="names no lower directory"):
        stack_of(_line(b"/x", b"upperdir=/u,workdir=/w"), "/x")
    assert unescape(b"a\\040b\\011c\\012d\\134e") == b"a b\tc\nd\\e"
    assert split_lowerdir(b"/a\\\\b:/c", "x") == [b"/a\\b", b"/c"]


def _kernel_escape(path: bytes, also: bytes = b"") -> bytes:
    """As the kernel writes a mountinfo field: space, tab, newline, backslash (and ``also``) octal."""
    return b"".join(b"\\%03o" % c if c in b" \t\n\\" + also else bytes([c]) for c in path)


_NAMES = st.lists(
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b and b"/" not in b),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(_NAMES, st.booleans())
def test_any_directory_names_come_back(names: list[bytes], new_api: bool) -> None:
    """Whatever the names hold (colons, commas, spaces, backslashes, newlines, bytes that are not
    UTF-8), the stack read back is the one mounted, in both forms the kernel writes."""
    paths = [b"/l/" + name for name in names]  # top first, as mounted
    if new_api:
        options = b",".join(b"lowerdir+=" + _kernel_escape(p, b",") for p in paths)
    else:  # the user's "\:" and "\\" escapes, then the kernel's
        given = b":".join(p.replace(b"\\", b"\\\\").replace(b":", b"\\:") for p in paths)
        options = b"lowerdir=" + _kernel_escape(given, b",")
    line = _line(b"/m\\040x", options + b",upperdir=/u,workdir=/w")
    assert stack_of(line, "/m x") == ([os.fsdecode(p) for p in reversed(paths)], "/u")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["/", "/m", "/m x"]))
def test_any_mountinfo_gives_a_stack_or_a_named_error(data: bytes, mount_point: str) -> None:
    try:
        lowers, upper = stack_of(data, mount_point)
    except ImgtoolError as exc:
        assert str(exc).startswith(f"overlay-mount:{mount_point}: ")
    else:
        assert lowers and all(p.startswith("/") for p in lowers)
        assert upper is None or upper.startswith("/")


def test_not_a_mount_point(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    run = imgtool_cli("ls", f"overlay-mount:{tmp_path}")
    assert run.code != 0
    assert (
        run.stderr
        == f"imgtool: error: overlay-mount:{tmp_path}: not a mount point (not in /proc/self/mountinfo)\n"
    )
    run = imgtool_cli("ls", f"overlay-mount:{tmp_path}/none")
    assert run.stderr == f"imgtool: error: overlay-mount:{tmp_path}/none: no such directory\n"
    run = imgtool_cli("ls", "overlay-mount:/proc")
    assert run.stderr == "imgtool: error: overlay-mount:/proc: its file system is proc, not overlay\n"


# A real mount, in a private mount namespace.

CHANGES = " && ".join(
    [
        'echo new > "$M/new.txt"',
        'echo changed > "$M/etc/b"',
        'rm "$M/etc/a"',
        'chmod 700 "$M/srv"',
        'rm -r "$M/srv/old"',
        'mkdir "$M/srv/old"',
        'echo again > "$M/srv/old/again"',
        'ln -s b "$M/etc/l"',
    ]
)


def _layers(base: Path) -> tuple[Path, Path, Path]:
    low, mid, upper = base / "low", base / "mid: two", base / "upper"
    for path in (low / "etc", low / "srv" / "old", mid / "etc", upper, base / "work", base / "mnt"):
        path.mkdir(parents=True)
    (low / "etc" / "a").write_bytes(b"a\n")
    (low / "etc" / "b").write_bytes(b"b\n")
    (low / "srv" / "old" / "gone").write_bytes(b"gone\n")
    (mid / "etc" / "c").write_bytes(b"c\n")
    return low, mid, upper


NOT_MOUNTED = 90  # the exit status of the script in the namespace when the mount itself failed


def _in_namespace(base: Path, mount: str, script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by sh in a private mount namespace, once ``mount`` (a command) mounted an
    overlay at ``$M``; it exits NOT_MOUNTED if the mount failed."""
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            f"{{ {mount}; }} || exit {NOT_MOUNTED}; {script}",
        ],
        env={
            **os.environ,
            "M": str(base / "mnt"),
            "IMGTOOL": f"{shlex.quote(sys.executable)} -m imgtool",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        capture_output=True,
        text=True,
        check=False,
    )


def new_api_mount(target: str, *options: str) -> None:
    """Mount an overlay at ``target`` with fsopen/fsconfig (``KEY=VALUE`` options, in order), as
    only the new mount API can: ``lowerdir+``, ``datadir+``. Run in the namespace of the test."""
    libc = ctypes.CDLL(None, use_errno=True)

    def call(number: int, *args: object) -> int:
        result: int = libc.syscall(number, *args)
        if result < 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
        return result

    fsopen, fsconfig, fsmount, move_mount = 430, 431, 432, 429  # x86_64 and every other arch but alpha
    fd = call(fsopen, b"overlay", 0)
    for option in options:
        key, _, value = option.partition("=")
        call(fsconfig, fd, 1, key.encode(), value.encode(), 0)  # FSCONFIG_SET_STRING
    call(fsconfig, fd, 6, None, None, 0)  # FSCONFIG_CMD_CREATE
    mounted = call(fsmount, fd, 0, 0)
    call(move_mount, mounted, b"", -100, target.encode(), 4)  # AT_FDCWD, MOVE_MOUNT_F_EMPTY_PATH


def _new_api(*options: str) -> str:
    call = f"new_api_mount(os.environ['M'], *{list(options)!r})"
    code = f"import os; from tests.sources.test_overlay_mount import new_api_mount; {call}"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting an overlay needs root")
@pytest.mark.skipif(bool(missing_tools("unshare", "mount", "tar")), reason="needs unshare, mount and tar")
@pytest.mark.parametrize("api", ["mount(8) lowerdir=", "fsconfig lowerdir+="])
def test_live_mount_reads_as_its_directories(tmp_path: Path, api: str) -> None:
    low, mid, upper = _layers(tmp_path)
    if api.startswith("mount"):
        lowerdir = f"{str(mid).replace(':', chr(92) + ':')}:{low}"  # top first, the colon escaped
        options = f"lowerdir={lowerdir},upperdir={upper},workdir={tmp_path / 'work'}"
        mount = f'mount -t overlay overlay -o {shlex.quote(options)} "$M"'
    else:  # one option per directory, top first, each a whole path
        mount = _new_api(
            f"lowerdir+={mid}", f"lowerdir+={low}", f"upperdir={upper}", f"workdir={tmp_path}/work"
        )
    out = tmp_path / "out"
    out.mkdir()
    ref = f"overlay-mount:{tmp_path / 'mnt'}"
    script = " && ".join(
        [
            CHANGES,
            f"$IMGTOOL flatten {shlex.quote(ref)} -o {out}/flat.tar",
            f"$IMGTOOL diff layers --json {shlex.quote(ref)} > {out}/diff.json",
            f"$IMGTOOL inspect --json {shlex.quote(ref)} > {out}/inspect.json",
            f'tar -C "$M" --numeric-owner -cf {out}/merged.tar .',
        ]
    )
    done = _in_namespace(tmp_path, mount, script)
    if done.returncode == NOT_MOUNTED:
        pytest.skip(f"an overlay cannot be mounted here with {api}: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    flat = tar_listing(out / "flat.tar")
    assert flat == tar_listing(out / "merged.tar")
    assert "srv/old/gone" not in flat and flat["srv/old/again"][-1] == b"again\n"
    doc: dict[str, Any] = json.loads((out / "inspect.json").read_text())
    assert doc["transport"] == "overlay-mount"
    layers = json.loads((out / "diff.json").read_text())["layers"]
    assert [layer["created_by"] for layer in layers] == [
        f"overlay lower directory {low}",
        f"overlay lower directory {mid}",
        f"overlay upper directory {upper}",
    ]
    top = {(c["path"], c["change"]) for c in layers[-1]["changes"] if c["type"] != "dir"}
    assert top == {
        ("/new.txt", "added"),
        ("/etc/b", "modified"),
        ("/etc/a", "deleted"),
        ("/etc/l", "added"),
        ("/srv/old/gone", "deleted"),
        ("/srv/old/again", "added"),
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting an overlay needs root")
@pytest.mark.skipif(bool(missing_tools("unshare")), reason="needs unshare")
def test_live_mount_with_a_data_only_layer_is_refused(tmp_path: Path) -> None:
    low, mid, upper = _layers(tmp_path)
    options = (f"lowerdir+={low}", f"datadir+={mid}", f"upperdir={upper}", f"workdir={tmp_path}/work")
    done = _in_namespace(tmp_path, _new_api(*options), '$IMGTOOL ls "overlay-mount:$M"')
    if done.returncode == NOT_MOUNTED:
        pytest.skip(f"an overlay with datadir+ cannot be mounted here: {done.stderr.strip()}")
    assert done.returncode == 2  # a usage error: such a mount is not supported
    assert done.stderr == (
        f"imgtool: error: overlay-mount:{tmp_path}/mnt: it has data-only layers (datadir+): not supported\n"
    )
