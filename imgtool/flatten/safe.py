"""``flatten --safe``: the files of an image to look at, without what grants privileges.

An exact rootfs holds device nodes, setuid and setgid files and security xattrs, which a
container needs and someone who only wants to read the files does not: extracted by root,
``dev/mem`` (0666) or a setuid-root shell gives whoever can reach them what they grant. Safe
mode changes the merged tree before anything is written, so directory and tar output agree:

* character and block devices are left out (FIFOs, which grant nothing, are kept);
* the setuid and setgid bits are cleared (the sticky bit and permissions are kept);
* only ``user.*`` extended attributes are kept (``security.*``, ``trusted.*`` and the rest go).
"""

from __future__ import annotations

import dataclasses
import stat
from dataclasses import dataclass
from typing import Final

from imgtool.layers.tarstream import Entry, Kind
from imgtool.merge.overlay import Node, Tree

SETID_BITS: Final = stat.S_ISUID | stat.S_ISGID
KEPT_XATTR_PREFIX: Final = "user."


@dataclass(slots=True)
class SafeStats:
    devices: int = 0  # paths left out
    setid: int = 0  # entries whose setuid/setgid bits were cleared
    xattrs: int = 0  # extended attributes dropped


class _Cleaner:
    def __init__(self) -> None:
        self.stats = SafeStats()
        # id of an original entry -> (that entry, kept alive so the id stays its own; its safe copy)
        self._done: dict[int, tuple[Entry, Entry]] = {}

    def clean(self, entry: Entry) -> Entry:
        known = self._done.get(id(entry))
        if known is not None:
            return known[1]
        mode = entry.mode & ~SETID_BITS
        xattrs = entry.xattrs
        if xattrs:
            xattrs = {name: value for name, value in xattrs.items() if name.startswith(KEPT_XATTR_PREFIX)}
            self.stats.xattrs += len(entry.xattrs or {}) - len(xattrs)
        if mode != entry.mode:
            self.stats.setid += 1
        safe = entry
        if mode != entry.mode or xattrs != entry.xattrs:
            safe = dataclasses.replace(entry, mode=mode, xattrs=xattrs or None)
        self._done[id(entry)] = (entry, safe)
        return safe

    def node(self, node: Node) -> None:
        if node.entry is not None:
            node.entry = self.clean(node.entry)
        if node.source is not None:
            node.source = (node.source[0], self.clean(node.source[1]))


def make_safe(tree: Tree) -> SafeStats:
    """Apply safe mode to ``tree`` in place (a merged tree built for this one output)."""
    cleaner = _Cleaner()
    stack = [tree.root]
    while stack:
        node = stack.pop()
        cleaner.node(node)
        if node.children is None:
            continue
        for name, child in list(node.children.items()):
            content = child.content
            if content is not None and content.kind in (Kind.CHAR, Kind.BLOCK):
                del node.children[name]
                cleaner.stats.devices += 1
                continue
            stack.append(child)
    return cleaner.stats
