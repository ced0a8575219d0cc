"""``overlay:LOWER[:LOWER…][+UPPER]``: a stack of directories in the overlay form, read as an image;
checked against the kernel's own overlay mount of the same directories where it can be made."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.treesnap import compare, ignore_fields, snapshot

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="whiteouts (device nodes) and trusted xattrs need root"
)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    """l1 (lowest), l2 (deletes, an opaque dir, a whiteout sharing another's inode), u (upper)."""
    l1, l2, u = tmp_path / "l1", tmp_path / "l2", tmp_path / "u"
    _write(l1 / "etc/a", b"a\n")
    _write(l1 / "etc/b", b"bb\n")
    _write(l1 / "opt/x", b"x\n")
    _write(l1 / "keep/k", b"k\n")
    _write(l1 / "usr/bin/tool", b"#!/bin/sh\n", 0o755)
    _write(l1 / "h1", b"linked\n")
    os.link(l1 / "h1", l1 / "h2")
    os.symlink("b", l1 / "etc/l")
    (l2 / "etc").mkdir(parents=True)
    (l2 / "keep").mkdir()
    os.mknod(l2 / "etc/a", 0o600 | 0o020000, os.makedev(0, 0))  # a whiteout
    os.link(l2 / "etc/a", l2 / "keep/k")  # the same whiteout inode: not a hardlink in the image
    _write(l2 / "opt/y", b"y\n")
    os.setxattr(l2 / "opt", "trusted.overlay.opaque", b"y")
    _write(u / "etc/c", b"c\n")
    _write(u / "etc/b", b"BB\n")
    os.setxattr(u / "etc", "trusted.overlay.impure", b"y")  # bookkeeping: no content
    os.setxattr(u / "etc/c", "user.note", b"kept")
    return tmp_path


@pytest.fixture
def mounted(stack: Path) -> Iterator[Path | None]:
    """The kernel's overlay of the stack (None where it cannot be mounted here)."""
    (stack / "w").mkdir()
    (stack / "m").mkdir()
    options = f"lowerdir={stack}/l2:{stack}/l1,upperdir={stack}/u,workdir={stack}/w"
    run = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(stack / "m")],
        check=False,
        capture_output=True,
    )
    if run.returncode != 0:
        yield None
        return
    try:
        yield stack / "m"
    finally:
        subprocess.run(["umount", str(stack / "m")], check=True)


def _json(imgtool_cli: ImgtoolCli, *args: str) -> Any:
    run = imgtool_cli(*args)
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


def test_stack_applies_as_overlayfs(imgtool_cli: ImgtoolCli, stack: Path) -> None:
    ref = f"overlay:{stack}/l1:{stack}/l2+{stack}/u"
    listing = _json(imgtool_cli, "ls", "-R", "--json", ref)
    assert {item["path"]: item["layer"] for item in listing} == {
        "/etc": 2,
        "/etc/b": 2,
        "/etc/c": 2,
        "/etc/l": 0,
        "/h1": 0,
        "/h2": 0,
        "/keep": 1,
        "/opt": 1,
        "/opt/y": 1,
        "/usr": 0,
        "/usr/bin": 0,
        "/usr/bin/tool": 0,
    }
    which = _json(imgtool_cli, "which-layer", "--json", ref, "/etc/c")
    assert which[0]["layer"]["created_by"] == f"overlay upper directory {stack}/u"
    assert imgtool_cli("cat", ref, "/etc/b").stdout_bytes == b"BB\n"
    layers = _json(imgtool_cli, "diff", "layers", "--json", ref)["layers"]
    deleted = sorted(c["path"] for c in layers[1]["changes"] if c["change"] == "deleted")
    assert deleted == ["/etc/a", "/keep/k", "/opt/x"]
    rows = _json(imgtool_cli, "verify", "--json", ref)
    assert {r["status"] for r in rows if r["blob"] != "config"} == {"unverifiable"}


def test_flatten_matches_the_kernel_mount(imgtool_cli: ImgtoolCli, stack: Path, mounted: Path | None) -> None:
    if mounted is None:
        pytest.skip("the kernel's overlay cannot be mounted here")
    out = stack / "out"
    run = imgtool_cli("flatten", f"overlay:{stack}/l1:{stack}/l2+{stack}/u", "-o", str(out))
    assert run.code == 0, run.stderr
    # The kernel gives the merged root its upper's times; imgtool's root is its own.
    assert (
        compare(snapshot(mounted), snapshot(out), ignore=ignore_fields("mtime_ns", paths=lambda p: p == b""))
        == []
    )


def test_no_bookkeeping_xattrs_in_the_walk(imgtool_cli: ImgtoolCli, stack: Path) -> None:
    ref = f"overlay:{stack}/l1:{stack}/l2+{stack}/u"
    out = stack / "flat"
    assert imgtool_cli("flatten", ref, "-o", str(out)).code == 0
    assert os.listxattr(out / "etc") == []
    assert os.getxattr(out / "etc/c", "user.note") == b"kept"
    assert os.stat(out / "h1").st_ino == os.stat(out / "h2").st_ino


@pytest.mark.parametrize(
    ("tail", "error"),
    [
        ("{s}/l1++{s}/u", "more than one '+'"),
        ("{s}/l1::{s}/l2", "an empty directory name"),
        ("{s}/l1+", "an empty directory name"),
        ("{s}/l1:{s}/nope", "{s}/nope: no such directory"),
    ],
)
def test_stack_reference_errors(imgtool_cli: ImgtoolCli, stack: Path, tail: str, error: str) -> None:
    run = imgtool_cli("ls", "overlay:" + tail.format(s=stack))
    assert run.code != 0
    assert run.stderr.startswith("imgtool: error: overlay:")
    assert error.format(s=stack) in run.stderr
    assert run.stderr.count("\n") == 1


def test_a_name_that_is_also_a_path_is_ambiguous(imgtool_cli: ImgtoolCli, stack: Path) -> None:
    (stack / "a:b").mkdir()
    (stack / "a").mkdir()
    run = imgtool_cli("ls", f"overlay:{stack}/a:b")
    assert run.code != 0
    assert "ambiguous: the whole text is also a path" in run.stderr
