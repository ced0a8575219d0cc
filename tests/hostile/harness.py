"""What the hostile tests share: the sentinel beside the output, and reading back what imgtool wrote."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.helpers.treesnap import hardlink_groups, snapshot, tree_hash_listing
from tests.hostile.cases import SECRET, SENTINEL_NAME, Env, TreeSpec, full_tree

Key = tuple[str, str | None, bytes | None, tuple[int, int] | None]
"""How a path is compared: type, sha256 of a file's content, symlink target, device numbers."""

ERROR_PREFIX: Final = "imgtool: error: "
WARNING_PREFIX: Final = "imgtool: warning: "
WROTE_PREFIX: Final = "imgtool: wrote "


def make_sentinel(path: Path) -> None:
    """A stand-in for the host: files, a subdirectory, symlinks, and the files escapes aim at."""
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "passwd").write_bytes(b"root:x:0:0:host:/root:/bin/sh\n")
    (path / "secret").write_bytes(SECRET)
    (path / "sub").mkdir()
    (path / "sub" / "file").write_bytes(b"sub file\n")
    (path / "link").symlink_to("etc/passwd")
    (path / "dangling").symlink_to("nowhere")


@dataclass(frozen=True)
class Workspace:
    """``root/image`` holds the image; ``root/work`` the output location with the sentinel beside it."""

    root: Path

    @classmethod
    def create(cls, root: Path) -> Workspace:
        space = cls(root)
        space.image_dir.mkdir()
        make_sentinel(space.sentinel)
        return space

    @property
    def image_dir(self) -> Path:
        return self.root / "image"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def sentinel(self) -> Path:
        return self.work / SENTINEL_NAME

    @property
    def env(self) -> Env:
        return Env(str(self.sentinel))

    def listing(self) -> list[str]:
        """Everything that must stay as it is: the sentinel and the image."""
        return [
            *(f"sentinel {line}" for line in tree_hash_listing(self.sentinel)),
            *(f"image {line}" for line in tree_hash_listing(self.image_dir)),
        ]

    def leftovers(self) -> list[str]:
        """Names in the output location other than the sentinel, hidden staging siblings included."""
        return sorted(name for name in os.listdir(self.work) if name != SENTINEL_NAME)


def expected_keys(spec: TreeSpec) -> dict[bytes, Key]:
    return {path: want.key() for path, want in full_tree(spec).items()}


def dir_keys(root: Path) -> dict[bytes, Key]:
    """The tree under ``root`` (the root itself left out) as comparable keys."""
    return {
        path: (node.type, node.sha256, node.link, node.rdev)
        for path, node in snapshot(root).items()
        if path != b""
    }


def dir_links(root: Path) -> set[frozenset[bytes]]:
    return hardlink_groups(root)


def expected_links(groups: Iterable[Iterable[str | bytes]]) -> set[frozenset[bytes]]:
    return {frozenset(os.fsencode(path) for path in group) for group in groups}


class UnsafeTarError(AssertionError):
    """The tar imgtool wrote holds a name that would escape wherever it is extracted."""


def _tar_path(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    if raw.startswith(b"/") or b".." in raw.split(b"/"):
        raise UnsafeTarError(f"tar member name {raw!r} is absolute or climbs")
    parts = [part for part in raw.split(b"/") if part not in (b"", b".")]
    return b"/".join(parts)


def tar_tree(data: bytes) -> tuple[dict[bytes, Key], set[frozenset[bytes]]]:
    """The tree a tar stream describes, and its hardlink groups; refuses unsafe member names."""
    keys: dict[bytes, Key] = {}
    groups: dict[bytes, set[bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            path = _tar_path(member.name)
            if not path:
                continue
            if member.islnk():
                target = _tar_path(member.linkname)
                keys[path] = keys[target]
                groups.setdefault(target, {target}).add(path)
            elif member.isreg():
                handle = tar.extractfile(member)
                assert handle is not None
                keys[path] = ("file", hashlib.sha256(handle.read()).hexdigest(), None, None)
            elif member.isdir():
                keys[path] = ("dir", None, None, None)
            elif member.issym():
                keys[path] = ("symlink", None, member.linkname.encode("utf-8", "surrogateescape"), None)
            elif member.ischr() or member.isblk():
                kind = "char" if member.ischr() else "block"
                keys[path] = (kind, None, None, (member.devmajor, member.devminor))
            elif member.isfifo():
                keys[path] = ("fifo", None, None, None)
            else:
                raise AssertionError(f"unexpected tar member type {member.type!r} for {path!r}")
    return keys, {frozenset(group) for group in groups.values()}


_ESCAPES: Final = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def shown(path: bytes) -> str:
    """A path as imgtool's tables and JSON show it: rooted, bytes that are not UTF-8 as ``\\xNN``.

    Written out here rather than imported from imgtool, so that the test has its own reading.
    """
    out = []
    for char in path.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif not char.isprintable():
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "/" + "".join(out)


def error_message(stderr: str) -> str:
    """The message of the single ``imgtool: error:`` line stderr must consist of."""
    assert "Traceback" not in stderr, f"traceback on stderr:\n{stderr}"
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), f"expected exactly one error line, got:\n{stderr}"
    assert lines[0].startswith(ERROR_PREFIX), f"not an imgtool error line: {lines[0]!r}"
    return lines[0][len(ERROR_PREFIX) :]


def check_quiet_success(stderr: str, warning: str | None, summary: bool = False) -> None:
    """Success: only warnings (each matching ``warning``) and, for flatten, its summary."""
    assert "Traceback" not in stderr, f"traceback on stderr:\n{stderr}"
    lines = stderr.splitlines()
    if summary:
        assert lines and lines[-1].startswith(WROTE_PREFIX), f"no summary line:\n{stderr}"
        lines = lines[:-1]
    for line in lines:
        assert line.startswith(WARNING_PREFIX), f"unexpected stderr line {line!r}"
        assert warning is not None, f"unexpected warning {line!r}"
        assert re.search(warning, line[len(WARNING_PREFIX) :]), f"warning {line!r} does not match {warning!r}"


def differences(actual: Mapping[bytes, Key], expected: Mapping[bytes, Key]) -> list[str]:
    """Readable differences between two trees of keys; empty when they agree."""
    lines = []
    for path in sorted(actual.keys() | expected.keys()):
        got, want = actual.get(path), expected.get(path)
        if got != want:
            lines.append(f"{shown(path)}: got {got}, expected {want}")
    return lines
