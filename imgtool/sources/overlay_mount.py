"""A live overlay mount as an image: ``overlay-mount:PATH``, PATH the mount point.

Its directories are read from ``/proc/self/mountinfo`` (the mount as this process's mount
namespace sees it), then read as an ``overlay:`` stack is (:mod:`imgtool.sources.overlay_dirs`):
each lower directory a layer, lowest first, the upper one on top. The mount itself is never read
through: its merged view has no layers to tell apart.

In mountinfo the kernel writes space, tab, newline, backslash (and in the options, comma) as
``\\ooo`` octal escapes. A mount made with ``lowerdir=`` shows that option as it was given: the
directories top first, separated by ``:``, a backslash making the next character literal (``\\:``
a colon in a name), and ``::`` before data-only layers. A mount made with the newer
``lowerdir+=`` (and ``datadir+=``) shows one option per directory, top first, each a whole path.
Data-only layers hold the data of metacopy files that other layers redirect to: imgtool cannot
follow those redirects, and refuses such a mount rather than show empty files; so too a mount
made with ``metacopy=on`` or ``redirect_dir=on``, whose upper directory may hold them.
"""

from __future__ import annotations

import os
import re
from typing import Final

from imgtool.errors import ImageFormatError, ImageNotFoundError, LimitExceededError, UsageError
from imgtool.sources.overlay_dirs import OverlayDirs
from imgtool.sources.reference import Reference

OVERLAY_MOUNT: Final = "overlay-mount"
MOUNTINFO: Final = "/proc/self/mountinfo"
MAX_MOUNTINFO: Final = 64 << 20
_OCTAL: Final = re.compile(rb"\\([0-7]{3})")


def unescape(field: bytes) -> bytes:
    """A mountinfo field with the kernel's ``\\ooo`` escapes undone."""
    return _OCTAL.sub(lambda m: bytes([int(m[1], 8) & 0xFF]), field)


def split_lowerdir(value: bytes, what: str) -> list[bytes]:
    """The directories of a ``lowerdir=`` value (escapes undone), top first."""
    parts: list[bytes] = []
    current = bytearray()
    index = 0
    while index < len(value):
        char = value[index : index + 1]
        if char == b"\\" and index + 1 < len(value):
            current += value[index + 1 : index + 2]
            index += 2
            continue
        if char == b":":
            if not current:
                raise UsageError(f"{what}: its lowerdir has data-only layers ('::'): not supported")
            parts.append(bytes(current))
            current = bytearray()
        else:
            current += char
        index += 1
    if not current:
        raise UsageError(f"{what}: its lowerdir has data-only layers ('::'): not supported")
    parts.append(bytes(current))
    return parts


def stack_of(mountinfo: bytes, mount_point: str) -> tuple[list[str], str | None]:
    """The lower directories (lowest first) and the upper one (None: a read-only overlay) of the
    overlay mounted at ``mount_point`` (absolute, resolved), from the text of a mountinfo file."""
    what = f"{OVERLAY_MOUNT}:{mount_point}"
    target = os.fsencode(mount_point)
    found: list[bytes] | None = None
    for line in mountinfo.split(b"\n"):
        fields = line.split(b" ")
        if len(fields) >= 10 and unescape(fields[4]) == target and b"-" in fields[6:]:
            found = fields  # the last mount at a point is the one on top, the one seen
    if found is None:
        raise ImageNotFoundError(f"{what}: not a mount point (not in {MOUNTINFO})")
    separator = found.index(b"-", 6)
    if len(found) < separator + 4:
        raise ImageFormatError(f"{what}: its line in {MOUNTINFO} is cut short")
    fstype, options = found[separator + 1], found[separator + 3]
    if fstype != b"overlay":
        raise UsageError(f"{what}: its file system is {os.fsdecode(unescape(fstype))}, not overlay")
    if unescape(found[3]) != b"/":
        root = os.fsdecode(unescape(found[3]))
        raise UsageError(f"{what}: a bind mount of {root} inside an overlay, not the overlay's root")
    lowers: list[bytes] = []
    upper: bytes | None = None
    for option in options.split(b","):
        key, _, value = option.partition(b"=")
        value = unescape(value)
        if key == b"lowerdir":
            lowers += split_lowerdir(value, what)
        elif key == b"lowerdir+":
            lowers.append(value)
        elif key == b"datadir+":
            raise UsageError(f"{what}: it has data-only layers (datadir+): not supported")
        elif key == b"upperdir":
            upper = value
        elif option in (b"metacopy=on", b"redirect_dir=on"):
            raise UsageError(
                f"{what}: mounted with {os.fsdecode(option)}: its files' redirect and metacopy "
                "xattrs are not followed: not supported"
            )
    if not lowers:
        raise ImageFormatError(f"{what}: {MOUNTINFO} names no lower directory for it")
    for path in [*lowers, *([upper] if upper is not None else [])]:
        if not path.startswith(b"/"):
            raise UsageError(
                f"{what}: its directory {os.fsdecode(path)!r} was given relative to where it was mounted"
            )
    return [os.fsdecode(p) for p in reversed(lowers)], (os.fsdecode(upper) if upper is not None else None)


def read_mount(path: str, mountinfo: str = MOUNTINFO) -> tuple[list[str], str | None]:
    """The stack of the overlay mounted at ``path``, each directory checked to be one here."""
    if not os.path.isdir(path):
        raise ImageNotFoundError(f"{OVERLAY_MOUNT}:{path}: no such directory")
    mount_point = os.path.realpath(path)
    with open(mountinfo, "rb") as f:
        data = f.read(MAX_MOUNTINFO + 1)
    if len(data) > MAX_MOUNTINFO:
        raise LimitExceededError(f"{mountinfo}: larger than the {MAX_MOUNTINFO}-byte limit")
    lowers, upper = stack_of(data, mount_point)
    for directory in [*lowers, *([upper] if upper is not None else [])]:
        if not os.path.isdir(directory):
            raise ImageNotFoundError(
                f"{OVERLAY_MOUNT}:{path}: its directory {directory} is not a directory here "
                "(removed, or mounted from another mount namespace)"
            )
    # The mount's own paths are followed here, once, as the kernel followed them; nothing below them ever is.
    return [os.path.realpath(p) for p in lowers], (os.path.realpath(upper) if upper is not None else None)


class OverlayMount(OverlayDirs):
    """The directories of a live overlay mount, read as an ``overlay:`` stack."""

    transport = OVERLAY_MOUNT


def open_mount(ref: Reference) -> OverlayMount:
    return OverlayMount(f"{OVERLAY_MOUNT}:{ref.path}", *read_mount(ref.path))
