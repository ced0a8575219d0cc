"""What flatten writes: the merged tree cut into directories, special files and data to stream.

Paths that share an inode (hardlinks, and a hardlink whose original was later
replaced) are grouped: the first path in tree order gets the inode, the others
become links to it. Regular files with data are grouped by the layer whose
stream holds their content, so each layer is read once, front to back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from imgtool.layers.tarstream import Kind, stored_size
from imgtool.merge.overlay import Node, Tree
from imgtool.merge.view import MergedView

InodeKey = tuple[int, int]  # (layer, ordinal of the entry that created the inode)


@dataclass(slots=True)
class WritePlan:
    dirs: list[tuple[bytes, Node]] = field(default_factory=list)
    specials: list[tuple[bytes, Node]] = field(default_factory=list)
    data: dict[int, dict[int, tuple[bytes, Node]]] = field(default_factory=dict)
    links: dict[InodeKey, list[bytes]] = field(default_factory=dict)
    shared: set[InodeKey] = field(default_factory=set)  # inodes a hardlink points to: maybe several paths
    layer_bytes: dict[int, int] = field(default_factory=dict)  # file data each layer supplies
    data_bytes: int = 0
    path_count: int = 0

    def layers_to_read(self) -> list[int]:
        return sorted(self.data)

    def data_ranges(self, layer: int) -> list[tuple[int, int]]:
        """(offset, size) in the layer's uncompressed tar of each file's data that is written."""
        entries = (node.content for _, node in self.data.get(layer, {}).values())
        return [(entry.offset, stored_size(entry)) for entry in entries if entry is not None]


def shared_inodes(tree: Tree) -> set[InodeKey]:
    """The inodes a hardlink points to: only these can have more than one path."""
    return {(node.source[0], node.source[1].ordinal) for node in tree.nodes() if node.source is not None}


def make_plan(tree: Tree, linked: Mapping[InodeKey, bytes] | None = None) -> WritePlan:
    """``linked``: inodes that have a path already, outside the tree (a layer written over the
    layers below it): every path of theirs becomes a link to that path, and no data is read."""
    plan = WritePlan(shared=shared_inodes(tree) | set(linked or ()))
    first: dict[InodeKey, bytes] = dict(linked or {})
    for path, node in tree.walk():
        plan.path_count += 1
        if node.is_dir:
            plan.dirs.append((path, node))
            continue
        inode = node.inode
        assert inode is not None
        layer, entry = inode
        key = (layer, entry.ordinal)
        if key in plan.shared:
            if key in first:
                plan.links.setdefault(key, []).append(path)
                continue
            first[key] = path
        if entry.kind == Kind.FILE and entry.size > 0:
            plan.data.setdefault(layer, {})[entry.ordinal] = (path, node)
            plan.layer_bytes[layer] = plan.layer_bytes.get(layer, 0) + entry.size
            plan.data_bytes += entry.size
        else:
            plan.specials.append((path, node))
    return plan


def inode_key(node: Node) -> InodeKey:
    inode = node.inode
    assert inode is not None
    return inode[0], inode[1].ordinal


def trim_spool(view: MergedView, plan: WritePlan) -> None:
    """As writing starts, give back the spooled bytes no output will read (files shadowed by upper
    layers, headers): the output then reuses that memory, and the spool's disk space shrinks."""
    if view.spool is not None:
        view.spool.keep_only({layer: plan.data_ranges(layer) for layer in plan.data})
