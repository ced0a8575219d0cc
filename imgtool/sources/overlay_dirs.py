"""A stack of directories as an image: ``overlay:LOWER[:LOWER…][+UPPER]``.

The directories are listed lowest first, as imgtool lists layers (bottom first): the reverse of
the kernel's ``lowerdir=``, which lists the top first. ``+UPPER``, if given, is the topmost, an
overlayfs upper directory; it is read exactly as a lower one (it is simply the last layer). Each
directory is walked in the overlay form (:mod:`imgtool.layers.dirwalk`): character devices 0/0
are whiteouts, the ``overlay.opaque`` xattr makes a directory opaque, the kernel's bookkeeping
xattrs are not content.

Since ``:`` and ``+`` separate the directories, a directory whose name holds either cannot be
named here: each part must be an existing directory, and a reference whose whole text is also a
path is refused as ambiguous. There is no manifest or config: imgtool synthesizes both (an empty
config for this host's platform), and no layer can be verified.
"""

from __future__ import annotations

import os
from typing import Final

from imgtool.errors import AmbiguousImageError, ImageNotFoundError, UsageError
from imgtool.image.digest import Digest
from imgtool.image.image import Unchecked
from imgtool.image.mediatypes import OCI_MANIFEST
from imgtool.image.platform import Platform
from imgtool.layers.dirwalk import walk_tar
from imgtool.sources.core import Resolved
from imgtool.sources.reference import Reference
from imgtool.sources.unpacked import Blobs, Opener, measure, memory, synthesize, walked

OVERLAY: Final = "overlay"
NOT_VERIFIABLE: Final = "a plain directory: no digest to check it against"


def parse_stack(text: str) -> tuple[list[str], str | None]:
    """The lower directories, lowest first, and the upper one (None without ``+``)."""
    if os.path.lexists(f"{text}") and (":" in text or "+" in text):
        raise AmbiguousImageError(
            f"overlay:{text}: ambiguous: the whole text is also a path; "
            "a directory whose name holds ':' or '+' cannot be named in overlay:"
        )
    if text.count("+") > 1:
        raise UsageError(f"overlay:{text}: more than one '+': expected overlay:LOWER[:LOWER...][+UPPER]")
    lowers_text, plus, upper = text.partition("+")
    lowers = lowers_text.split(":")
    if any(not part for part in lowers) or (plus and not upper):
        raise UsageError(
            f"overlay:{text}: an empty directory name: expected overlay:LOWER[:LOWER...][+UPPER]"
        )
    for path in [*lowers, *([upper] if plus else [])]:
        if not os.path.isdir(path):
            raise ImageNotFoundError(f"overlay:{text}: {path}: no such directory")
    # The paths given are the user's own: a symlink among them is followed, once, here; nothing
    # below them ever is.
    return [os.path.realpath(p) for p in lowers], (os.path.realpath(upper) if plus else None)


class OverlayDirs(Blobs):
    """The core of a stack of directories: every blob is synthesized or walked."""

    transport = OVERLAY

    def __init__(self, name: str, lowers: list[str], upper: str | None) -> None:
        super().__init__(name)
        self.lowers, self.upper = lowers, upper

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        stack = [(path, f"overlay lower directory {path}") for path in self.lowers]
        if self.upper is not None:
            stack.append((self.upper, f"overlay upper directory {self.upper}"))
        layers = []
        unchecked: dict[Digest, Unchecked] = {}
        for path, label in stack:
            opener = _walker(path, label)
            layer = measure(opener, label)
            layers.append(layer)
            self.add(layer.digest, opener, layer.size)
            unchecked[layer.digest] = walked(NOT_VERIFIABLE)
        manifest, config = synthesize(None, [], layers)
        self.add(Digest.of_bytes(config), memory(config), len(config))
        return Resolved(manifest, OCI_MANIFEST, None, unchecked=unchecked)

    def names(self) -> list[str]:
        return []


def _walker(path: str, label: str) -> Opener:
    return lambda: walk_tar(path, "", label)


def open_stack(ref: Reference) -> OverlayDirs:
    return OverlayDirs(f"overlay:{ref.path}", *parse_stack(ref.path))
