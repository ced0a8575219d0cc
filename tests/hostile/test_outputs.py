"""Hostile outputs and temporary disk: symlinks at the output, what an interrupt or SIGKILL leaves,
what a full disk says, device nodes and privileges, and the bounds on temporary files.

The sentinel of :class:`Workspace` stands in for the host: a symlink at the output points into it,
and every test checks it is unchanged. Full disks are real (a small tmpfs, mounted as root); where
mounting is not permitted those tests are skipped.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import re
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pytest

from imgtool.errors import InterruptedAfterOutputError
from imgtool.flatten.export import flatten_to_tar_file
from imgtool.flatten.rootfs import flatten_to_dir
from imgtool.merge.spool import Spool
from imgtool.merge.view import merged_view
from imgtool.sources import open_image
from imgtool.system.fsutil import remove_tree
from imgtool.system.staging import no_space, owner_pid
from tests.helpers.childproc import run_child
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    BlockDev,
    CharDev,
    Dir,
    Fifo,
    File,
    Hardlink,
    ImageSpec,
    Member,
    make_layer,
    write_oci_layout,
)
from tests.helpers.imagefactory import Entry as ImageEntry
from tests.helpers.treesnap import snapshot
from tests.hostile.harness import Workspace, error_message
from tests.hostile.test_limits import oci_image, tmpfs, zero_files_layer

MiB: Final = 1 << 20
SYMLINK_REFUSED: Final = (
    "is a symlink; imgtool does not write through a symlink at the output "
    "(name its target instead, or remove it)"
)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    where = tmp_path_factory.mktemp("small")
    return oci_image(where / "oci", [make_layer([File("new", b"the new tree\n")])])


def _listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


# -- a symlink at the output ------------------------------------------------------------------------------


def _link_cases(space: Workspace) -> dict[str, tuple[list[str], Path]]:
    """Per case: the flatten arguments after IMAGE, and the symlink they name."""
    work, sentinel = space.work, space.sentinel
    (work / "to-sentinel").symlink_to(sentinel)  # a non-empty directory outside
    (work / "empty").mkdir()
    (work / "to-empty").symlink_to("empty")
    (work / "dangling").symlink_to("nowhere")
    (work / "out.tar").symlink_to(sentinel / "secret")
    (work / "paths.tsv").symlink_to(sentinel / "secret")
    return {
        "dir-force": (["-o", str(work / "to-sentinel"), "--force"], work / "to-sentinel"),
        "dir-empty-target": (["-o", str(work / "to-empty")], work / "to-empty"),
        "dir-dangling": (["-o", str(work / "dangling")], work / "dangling"),
        "tar-force": (["-o", str(work / "out.tar"), "--force"], work / "out.tar"),
        "provenance": (["-o", "-", "--provenance", str(work / "paths.tsv")], work / "paths.tsv"),
        "provenance-dir-output": (
            ["-o", str(work / "rootfs"), "--provenance", str(work / "paths.tsv")],
            work / "paths.tsv",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["dir-force", "dir-empty-target", "dir-dangling", "tar-force", "provenance", "provenance-dir-output"],
)
def test_a_symlink_at_the_output_is_refused(
    case: str, small_image: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    space = Workspace.create(tmp_path)
    args, link = _link_cases(space)[case]
    before_sentinel = space.listing()
    before = _listing(space.work)
    target = os.readlink(link)
    run = imgtool_cli("flatten", small_image, *args)
    assert error_message(run.stderr) == f"{link}: {SYMLINK_REFUSED}"
    assert (run.code, run.stdout_bytes) == (1, b"")
    assert space.listing() == before_sentinel
    assert _listing(space.work) == before
    assert os.readlink(link) == target
    assert _listing(space.work / "empty") == []


def test_a_symlink_in_the_parent_is_resolved_once(
    small_image: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to("real")
    run = imgtool_cli("flatten", small_image, "-o", str(tmp_path / "via" / "out"), "-q")
    assert (run.code, run.stderr) == (0, "")
    assert _listing(tmp_path / "real") == ["out"]
    assert (tmp_path / "real" / "out" / "new").read_bytes() == b"the new tree\n"


# -- an interrupt while the old tree is removed -------------------------------------------------------------


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, f"imgtool exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _start(
    args: list[str], cwd: Path, stderr: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(stderr, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "imgtool", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **(env or {})},
            preexec_fn=_default_signals,  # noqa: PLW1509 - only resets signal dispositions
        )


def _staged(work: Path, pattern: str) -> list[Path]:
    return sorted(work.glob(pattern))


@pytest.mark.slow
def test_an_interrupt_while_removing_the_old_tree_says_the_output_is_written(
    small_image: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    work = tmp_path / "work"
    dest = work / "dest"
    for d in range(60):
        (dest / f"d{d:02d}").mkdir(parents=True)
        for f in range(1000):
            (dest / f"d{d:02d}" / f"f{f:03d}").write_bytes(b"")
    proc = _start(["flatten", small_image, "-o", str(dest), "--force", "-q"], tmp_path, tmp_path / "err")
    try:
        _wait_for(
            lambda: (dest / "new").exists() and bool(_staged(work, ".dest.imgtool-old-*")), proc, "the swap"
        )
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (old,) = _staged(work, ".dest.imgtool-old-*")
    assert owner_pid(old.name) == proc.pid
    message = (
        f"interrupted: output written to {dest}; removing the old tree was interrupted, left at {old} "
        "(the next flatten there removes it)"
    )
    assert (code, error_message((tmp_path / "err").read_text())) == (130, message)
    assert _listing(work) == [".dest.imgtool-old-" + old.name.split("-old-")[1], "dest"]
    assert _listing(dest) == ["new"]
    # The next run in the same place removes what the interrupted one left.
    run = imgtool_cli("flatten", small_image, "-o", str(work / "second"), "-q")
    assert (run.code, run.stderr) == (0, "")
    assert _listing(work) == ["dest", "second"]


@pytest.fixture
def deep_dirs(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, emptied afterwards with GNU rm whatever the test left: pytest's own clean-up
    (shutil.rmtree on 3.11) cannot remove a tree this deep."""
    yield tmp_path
    subprocess.run(["rm", "-rf", "--one-file-system", *map(str, tmp_path.iterdir())], check=True)


def _deep_tree(root: Path, depth: int) -> None:
    """``root/d/d/.../d/leaf`` ``depth`` levels deep (beyond PATH_MAX), made relative to open directories."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
        os.chmod(fd, 0o500)  # read-only, as an image's directory may be
    finally:
        os.close(fd)


def test_replacing_a_very_deep_old_tree(small_image: str, deep_dirs: Path, imgtool_cli: ImgtoolCli) -> None:
    tmp_path = deep_dirs
    dest = tmp_path / "dest"
    _deep_tree(dest, 2500)
    run = imgtool_cli("flatten", small_image, "-o", str(dest), "--force", "-q")
    assert (run.code, run.stderr) == (0, "")
    assert _listing(tmp_path) == ["dest"]
    assert _listing(dest) == ["new"]


def test_remove_tree_is_iterative_and_needs_no_write_permission(deep_dirs: Path) -> None:
    tmp_path = deep_dirs
    _deep_tree(tmp_path / "t", 3000)
    (tmp_path / "keep").write_bytes(b"")
    (tmp_path / "t" / "link").symlink_to(tmp_path / "keep")
    remove_tree(str(tmp_path / "t"))
    assert _listing(tmp_path) == ["keep"]
    remove_tree(str(tmp_path / "t"))  # absent: nothing to do


# -- provenance goes into place with the output, or not at all ----------------------------------------------


@pytest.mark.parametrize("output", ["dir", "tar", "stdout"])
def test_provenance_on_a_full_disk_leaves_no_output(
    output: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    ref = oci_image(tmp_path / "oci", [make_layer([File(f"many/f{i:03d}", b"x") for i in range(600)])])
    work = tmp_path / "work"
    work.mkdir()
    target = {"dir": str(work / "out"), "tar": str(work / "out.tar"), "stdout": "-"}[output]
    small = tmp_path / "small"
    with tmpfs(small, "16k") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here")
        run = imgtool_cli("flatten", ref, "-o", target, "--provenance", str(small / "paths.tsv"))
        message = error_message(run.stderr)
        assert message == (
            f"{small}: No space left on device (writing the provenance file); choose another --provenance"
        )
        assert (run.code, run.stdout_bytes) == (1, b"")
        assert _listing(small) == []
        assert _listing(work) == []


def test_provenance_replaces_its_file_with_the_output(
    small_image: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    (tmp_path / "paths.tsv").write_text("an old provenance file\n")
    run = imgtool_cli(
        "flatten", small_image, "-o", str(tmp_path / "out.tar"), "--provenance", str(tmp_path / "paths.tsv")
    )
    assert (run.code, run.stderr) == (
        0,
        f"imgtool: wrote 2 paths (13 B of file data) to {tmp_path / 'out.tar'}\n",
    )
    assert (tmp_path / "paths.tsv").read_text().splitlines()[:2] == ["path\tlayer\tdiff_id", "/\t-\t-"]
    assert _listing(tmp_path) == ["out.tar", "paths.tsv"]


# -- after SIGKILL ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """512 MiB of zeros in four files of one gzip layer (no index cached: the spool fills first)."""
    where = tmp_path_factory.mktemp("killed")
    return oci_image(where / "oci", [zero_files_layer([(f"big/z{i}", 128 * MiB) for i in range(4)])])


def _hold_locked(path: Path) -> int:
    """Make a directory and hold a lock on it, as a live imgtool in another PID namespace would."""
    path.mkdir()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@pytest.mark.slow
@pytest.mark.parametrize("output", ["dir", "tar", "stdout"])
def test_what_a_killed_flatten_leaves_is_removed_by_the_next(
    output: str, big_image: str, small_image: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    target = {"dir": str(work / "dest"), "tar": str(work / "dest.tar"), "stdout": "-"}[output]
    spool_dir = temp if output == "stdout" else work

    def writing() -> bool:
        if output == "stdout":
            return any(p.stat().st_size > 64 * MiB for p in temp.glob(".imgtool-spool-*/*"))
        if output == "tar":
            return any(p.stat().st_size > 8 * MiB for p in work.glob(".dest.tar.imgtool-*"))
        return any(p.stat().st_size > 0 for p in work.glob(".dest.imgtool-*/big/z*"))

    proc = _start(["flatten", big_image, "-o", target, "--no-cache"], tmp_path, tmp_path / "err", env)
    try:
        _wait_for(writing, proc, "it started writing")
    finally:
        proc.kill()
        proc.wait()
    left = sorted(p.name for p in [*work.iterdir(), *temp.iterdir()])
    assert left and all(owner_pid(name) == proc.pid for name in left), left
    assert any(name.startswith(".imgtool-spool-") for name in os.listdir(spool_dir))
    # Leftovers that must stay: a live PID's, and a dead PID's that a live process holds locked.
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        live = f".other.imgtool-{sleeper.pid}-abcdefgh"
        (work / live).mkdir()
        (temp / f".imgtool-spool-{sleeper.pid}-abcdefgh").mkdir()
        held = f".held.imgtool-{proc.pid}-abcdefgh"
        lock = _hold_locked(work / held)
        again = subprocess.run(
            [sys.executable, "-m", "imgtool", "flatten", small_image, "-o", str(work / "second"), "-q"],
            cwd=tmp_path,
            env={**os.environ, **env},
            capture_output=True,
            check=False,
        )
        assert (again.returncode, again.stderr) == (0, b"")
        assert _listing(work) == sorted([held, live, "second"])
        assert _listing(temp) == [f".imgtool-spool-{sleeper.pid}-abcdefgh"]
    finally:
        os.close(lock)
        sleeper.kill()
        sleeper.wait()


# -- the output root, device nodes and privileges -----------------------------------------------------------


def test_the_output_root_is_private_until_it_is_in_place(
    tmp_path: Path, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = oci_image(tmp_path / "oci", [make_layer([Dir("./", mode=0o751), File("a", b"a")])])
    seen: list[tuple[str, int]] = []
    real_rename = os.rename

    def rename(src: str, dst: str, **kwargs: object) -> None:
        seen.append((os.path.basename(dst), stat.S_IMODE(os.lstat(src).st_mode)))
        real_rename(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out"), "-q")
    assert (run.code, run.stderr) == (0, "")
    assert seen == [("out", 0o700)]
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o751


PRIVILEGED: Final[list[Member]] = [
    Dir("dev/"),
    CharDev("dev/mem", 1, 1, mode=0o666),
    BlockDev("dev/sda", 8, 0, mode=0o666),
    Hardlink("dev/mem2", "dev/mem"),
    Fifo("run/fifo", mode=0o600),
    File("bin/su", b"#!su\n", mode=0o4755),
    Hardlink("bin/su2", "bin/su"),
    File("bin/wall", b"#!wall\n", mode=0o2755, gid=5),
    Dir("shared/", mode=0o3775),
    File(
        "bin/ping", b"#!ping\n", mode=0o755, xattrs={"security.capability": b"\x01\x00\x00\x02" + bytes(16)}
    ),
    File(
        "etc/conf", b"conf\n", xattrs={"trusted.note": b"t", "security.selinux": b"s", "user.keep": b"kept"}
    ),
]

# What --safe writes: type, mode (with setuid/setgid/sticky), xattrs; paths are the image's.
SAFE_TREE: Final = {
    "bin": ("dir", 0o755, ()),
    "bin/ping": ("file", 0o755, ()),
    "bin/su": ("file", 0o755, ()),
    "bin/su2": ("file", 0o755, ()),
    "bin/wall": ("file", 0o755, ()),
    "dev": ("dir", 0o755, ()),
    "etc": ("dir", 0o755, ()),
    "etc/conf": ("file", 0o644, (("user.keep", b"kept"),)),
    "run": ("dir", 0o755, ()),
    "run/fifo": ("fifo", 0o600, ()),
    "shared": ("dir", 0o1775, ()),
}
SAFE_SUMMARY: Final = (
    "imgtool: --safe: left out 3 device nodes, cleared setuid/setgid bits of 3 entries, "
    "dropped 3 extended attributes"
)


@pytest.fixture(scope="module")
def privileged_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    where = tmp_path_factory.mktemp("privileged")
    return oci_image(where / "oci", [make_layer(PRIVILEGED)])


def _tar_tree(data: bytes) -> dict[str, tuple[str, int, tuple[tuple[str, bytes], ...]]]:
    kinds = {
        tarfile.DIRTYPE: "dir",
        tarfile.REGTYPE: "file",
        tarfile.LNKTYPE: "file",
        tarfile.FIFOTYPE: "fifo",
    }
    tree = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            if not name or name == ".":
                continue
            xattrs = tuple(
                sorted(
                    (key.removeprefix("SCHILY.xattr."), value.encode("utf-8", "surrogateescape"))
                    for key, value in member.pax_headers.items()
                    if key.startswith("SCHILY.xattr.")
                )
            )
            tree[name] = (kinds.get(member.type, repr(member.type)), member.mode, xattrs)
    return tree


@pytest.mark.parametrize("output", ["dir", "tar", "stdout"])
def test_safe_leaves_out_devices_setid_bits_and_privileged_xattrs(
    output: str, privileged_image: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    target = {"dir": str(tmp_path / "out"), "tar": str(tmp_path / "out.tar"), "stdout": "-"}[output]
    run = imgtool_cli("flatten", privileged_image, "-o", target, "--safe")
    if output == "dir":
        assert run.code == 0, run.stderr
        assert run.stderr.splitlines()[0] == SAFE_SUMMARY
        got = {
            os.fsdecode(path): (
                node.type,
                node.mode,
                tuple(x for x in node.xattrs if x[0] != "security.selinux"),
            )
            for path, node in snapshot(tmp_path / "out").items()
            if path
        }
    else:
        wrote = (
            f"imgtool: wrote 12 paths (24 B of file data) to {'stdout' if output == 'stdout' else target}\n"
        )
        assert (run.code, run.stderr) == (0, SAFE_SUMMARY + "\n" + wrote)
        got = _tar_tree(run.stdout_bytes if output == "stdout" else (tmp_path / "out.tar").read_bytes())
    assert got == SAFE_TREE


def test_without_safe_the_output_is_exact(
    privileged_image: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    if os.geteuid() != 0:
        pytest.skip("device nodes and owners need root")
    run = imgtool_cli("flatten", privileged_image, "-o", str(tmp_path / "out"), "-q")
    assert run.code == 0, run.stderr
    tree = snapshot(tmp_path / "out")
    assert (tree[b"dev/mem"].type, tree[b"dev/mem"].mode, tree[b"dev/mem"].rdev) == ("char", 0o666, (1, 1))
    assert (tree[b"dev/sda"].type, tree[b"dev/sda"].rdev) == ("block", (8, 0))
    assert tree[b"bin/su"].mode == 0o4755
    assert (tree[b"bin/wall"].mode, tree[b"bin/wall"].gid) == (0o2755, 5)
    assert ("security.capability", b"\x01\x00\x00\x02" + bytes(16)) in tree[b"bin/ping"].xattrs


# -- temporary disk ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 64 MiB file of zeros in a gzip layer of about 64 KiB."""
    where = tmp_path_factory.mktemp("bomb")
    return oci_image(where / "oci", [zero_files_layer([("bomb", 64 * MiB)], level=9)])


def test_a_stream_is_limited_by_the_free_space_in_tmpdir(
    bomb: str, tmp_path: Path, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = tmp_path / "small"
    with tmpfs(small, "4m") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here")
        monkeypatch.setenv("TMPDIR", str(small))
        monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
        run = imgtool_cli("flatten", bomb, "-o", "-")
        message = error_message(run.stderr)
        found = re.fullmatch(
            r"layer 0 \(.*\): uncompressed size exceeds the limit of (\d+) bytes .*", message
        )
        assert found is not None, message
        assert int(found.group(1)) <= 4 * MiB
        assert (run.code, run.stdout_bytes) == (1, b"")
        assert _listing(small) == []


def test_a_file_held_aside_that_fills_tmpdir_names_it(
    tmp_path: Path, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "z" comes first in the layer but last in the tar: it is held aside (in TMPDIR, being large).
    big = os.urandom(3_000_000)
    layer = make_layer([File("z", big), File("a", b"a")])
    spec = ImageSpec([layer], compression="none")
    ref = write_oci_layout(tmp_path / "oci", [ImageEntry(spec, ref="v1")]).reference("v1")
    small = tmp_path / "small"
    with tmpfs(small, "2m") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here")
        monkeypatch.setenv("TMPDIR", str(small))
        monkeypatch.setattr("tempfile.tempdir", None)
        run = imgtool_cli("flatten", ref, "-o", "-", "--max-size", "100000000")
        message = error_message(run.stderr)
        assert re.fullmatch(
            rf"{re.escape(str(small))}: No space left on device \(holding 3000000 bytes of layer 0 \(.*\) "
            r"aside for the tar\); set TMPDIR to a larger directory",
            message,
        ), message
        assert run.code == 1
        assert _listing(small) == []


@pytest.mark.parametrize("output", ["out", "out.tar"])
def test_a_full_output_disk_names_the_directory(output: str, tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    if output == "out":
        layer = make_layer([File(f"many/f{i:03d}", b"x" * 100) for i in range(600)])
        what = r"writing /many/f\d+ of the output"
    else:
        layer = make_layer([File("big", os.urandom(3_000_000))])
        what = "writing out.tar"
    ref = oci_image(tmp_path / "oci", [layer])
    small = tmp_path / "small"
    with tmpfs(small, "2m") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here")
        run = imgtool_cli("flatten", ref, "-o", str(small / output), "--max-size", "100000000")
        message = error_message(run.stderr)
        assert re.fullmatch(
            rf"{re.escape(str(small))}: No space left on device \({what}\); choose another -o", message
        ), message
        assert run.code == 1
        assert _listing(small) == []


def test_the_spool_is_bounded_by_its_room(tmp_path: Path) -> None:
    ref = oci_image(tmp_path / "oci", [zero_files_layer([("z", 4 * MiB)]), make_layer([File("a", b"a")])])
    with open_image(ref, None) as image, Spool(str(tmp_path), room=2 * MiB) as spool:
        spool.fill(image.layers[0])  # 4 MiB: does not fit, and is given back
        assert spool.open(0) is None
        assert _listing(Path(spool.directory)) == []
        spool.fill(image.layers[1])  # fits in the room that was given back
        opened = spool.open(1)
        assert opened is not None
        opened.close()
    assert [name for name in os.listdir(tmp_path) if name.startswith(".imgtool-spool-")] == []


def test_errno_of_a_full_disk_is_named() -> None:
    full = no_space(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), "/d", "writing x", "choose another -o")
    assert str(full) == f"/d: {os.strerror(errno.EDQUOT)} (writing x); choose another -o"
    assert no_space(OSError(errno.EIO, "I/O error"), "/d", "writing x", "hint") is None


def test_a_full_disk_under_stdout_is_named(tmp_path: Path) -> None:
    ref = oci_image(tmp_path / "oci", [make_layer([File("big", os.urandom(3_000_000))])])
    small = tmp_path / "small"
    with tmpfs(small, "2m") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here")
        run = run_child(
            ["flatten", ref, "-o", "-", "--max-size", "100000000"], tmp_path, stdout=small / "out.tar"
        )
        message = error_message(run.stderr)
        assert message == (
            "standard output: No space left on device (writing the tar stream); redirect it to another place"
        )
        assert run.code == 1


@pytest.mark.parametrize("output", ["dir", "tar"])
def test_an_interrupt_as_the_output_goes_into_place_says_it_is_written(
    output: str, small_image: str, tmp_path: Path
) -> None:
    # The signal comes while the renames hold signals back: it is delivered once the output is in place.
    dest = tmp_path / ("out" if output == "dir" else "out.tar")

    def then() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    # As a terminal's Ctrl-C reaches imgtool: a test run started in the background (``&``, nohup)
    # inherits SIGINT ignored, and Python then installs no handler of its own.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with open_image(small_image, None) as image:
            view = merged_view(image, for_writing=True)
            with pytest.raises(InterruptedAfterOutputError) as caught:
                if output == "dir":
                    flatten_to_dir(view, str(dest), then=then)
                else:
                    flatten_to_tar_file(view, str(dest), then=then)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (str(caught.value), caught.value.exit_code) == (f"interrupted: output written to {dest}", 130)
    assert _listing(tmp_path) == [dest.name]
