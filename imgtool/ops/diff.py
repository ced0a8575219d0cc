"""Comparing views: what each layer changed, what changed between two layers or two images."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from imgtool.image.image import Image
from imgtool.layers.paths import join_path
from imgtool.layers.tarstream import KIND_NAMES, Kind
from imgtool.merge.changes import (
    Change,
    ChangeLog,
    ChangeWord,
    differences,
    file_size,
    is_metadata_only,
    kind_name,
)
from imgtool.merge.index import LayerIndex
from imgtool.merge.overlay import Node, Tree
from imgtool.merge.view import MergedView, apply_indexes, check_layer_number
from imgtool.ops.common import Reading, merged


@dataclass(slots=True)  # not frozen: made once per entry, and a frozen one costs three times as much
class PathChange:
    path: bytes
    change: ChangeWord  # added / modified / deleted
    kind: str
    size: int
    what: tuple[str, ...] = ()


def compare_trees(old: Tree, new: Tree) -> list[PathChange]:
    """Every path that differs between two merged trees, in path order."""
    result: list[PathChange] = []
    stack = [(b"", old.root, new.root)]  # an explicit stack: trees can be deeper than Python recurses
    while stack:
        path, a, b = stack.pop()
        _compare(path, a, b, result, stack)
    result.sort(key=lambda c: (c.path, c.change))
    return result


def _compare(
    path: bytes, a: Node, b: Node, out: list[PathChange], stack: list[tuple[bytes, Node, Node]]
) -> None:
    """Compare one path present in both trees; pushes the children present in both onto ``stack``."""
    what = differences(a, b)
    if what:
        out.append(PathChange(path, ChangeWord.MODIFIED, kind_name(b), file_size(b), what))
    if "type" in what:  # replaced wholesale: whatever either side held below is gone or new
        if a.children:
            out.extend(_all(path, a, ChangeWord.DELETED, skip_self=True))
        if b.children:
            out.extend(_all(path, b, ChangeWord.ADDED, skip_self=True))
        return
    a_children = a.children or {}
    b_children = b.children or {}
    for name in sorted(a_children.keys() | b_children.keys()):
        child_path = join_path(path, name)
        if name not in b_children:
            out.extend(_all(child_path, a_children[name], ChangeWord.DELETED))
        elif name not in a_children:
            out.extend(_all(child_path, b_children[name], ChangeWord.ADDED))
        else:
            stack.append((child_path, a_children[name], b_children[name]))


def _all(path: bytes, node: Node, word: ChangeWord, skip_self: bool = False) -> Iterator[PathChange]:
    stack = [(path, node)]
    while stack:
        current, item = stack.pop()
        if not (skip_self and current == path):
            yield PathChange(current, word, kind_name(item), file_size(item))
        if item.children:
            stack.extend(
                (join_path(current, n), item.children[n]) for n in sorted(item.children, reverse=True)
            )


@dataclass(slots=True)
class LayerSummary:
    index: int
    digest: str
    created_by: str | None
    added: int = 0
    modified: int = 0
    metadata_only: int = 0
    deleted: int = 0
    bytes_added: int = 0
    bytes_unreachable: int = 0
    changes: list[PathChange] = field(default_factory=list)


def summarize_layers(image: Image, log: ChangeLog, upto: int | None = None) -> list[LayerSummary]:
    """Each layer's changes in diff's words, and its counts; this runs once per change of every
    layer, so :func:`coarse` and the members of ChangeWord are taken out of the loop."""
    by_layer = log.by_layer()
    count = len(image.layers) if upto is None else upto + 1
    added, modified, deleted = ChangeWord.ADDED, ChangeWord.MODIFIED, ChangeWord.DELETED
    summaries = []
    for layer in image.layers[:count]:
        summary = LayerSummary(layer.index, str(layer.digest), layer.created_by)
        stored: set[tuple[int, int]] = set()  # files counted: one file, many hardlinks, counts once
        items = summary.changes
        for change in by_layer.get(layer.index, []):
            word, what = change.change, change.what
            if word is modified and not what:
                continue  # listed again without any change: not a change of this layer
            if word is not added and word is not modified:
                word = deleted  # hidden and replaced paths are deletions too
            items.append(PathChange(change.path, word, change.kind, change.size, what))
            summary.bytes_unreachable += change.unreachable
            if word is added:
                summary.added += 1
                summary.bytes_added += new_file_bytes(layer.index, change, stored)
            elif word is modified:
                summary.modified += 1
                if "content" in what or "type" in what:
                    summary.bytes_added += new_file_bytes(layer.index, change, stored)
                elif is_metadata_only(what):
                    summary.metadata_only += 1
            else:
                summary.deleted += 1
        items.sort(key=_by_path)
        summaries.append(summary)
    return summaries


def _by_path(change: PathChange) -> bytes:
    return change.path


def stored_file_bytes(index: LayerIndex) -> int:
    """The bytes of the regular files a layer's tar stores (a hardlink's entry stores none)."""
    file = Kind.FILE  # once, not once an entry: a member lookup costs a descriptor call on 3.11
    return sum(e.size for e in index.entries if e.kind == file)


def new_file_bytes(layer: int, change: Change, stored: set[tuple[int, int]]) -> int:
    """The bytes a change stores: a file this layer holds the data of, counted once whatever its
    names (a hardlink to a lower layer's file stores none); ``stored``: the files counted so far."""
    inode = change.inode
    if inode is None or inode[0] != layer or inode in stored:
        return 0
    stored.add(inode)
    return change.size


@dataclass(slots=True)
class WastedPath:
    """A path whose earlier versions later layers left unreachable: their bytes, how many, and
    the layers that stored them."""

    path: bytes
    wasted_bytes: int
    versions_lost: int
    layers: list[int]


@dataclass(slots=True)
class Efficiency:
    stored_bytes: int
    final_bytes: int
    wasted_bytes: int
    wasted_files: list[WastedPath]  # every one, most bytes first
    top: int = 10  # how many of them the table shows

    @property
    def score(self) -> float:
        return 1.0 if self.stored_bytes == 0 else self.final_bytes / self.stored_bytes

    @property
    def top_wasters(self) -> list[tuple[bytes, int, int]]:
        """The table's rows: path, wasted bytes, number of versions lost, of the first ``top``."""
        return [(w.path, w.wasted_bytes, w.versions_lost) for w in self.wasted_files[: self.top]]


def efficiency(view: MergedView, log: ChangeLog, top: int = 10) -> Efficiency:
    """dive's question: how many of the bytes the layers store does the final image still show?"""
    tree = view.tree
    file = Kind.FILE  # once, not once an entry: a member lookup costs a descriptor call on 3.11
    stored_bytes = sum(map(stored_file_bytes, view.indexes))
    seen: set[tuple[int, int]] = set()
    final = 0
    for node in tree.nodes():  # no paths needed: cheaper than tree.walk()
        content = node.content
        inode = node.inode
        if content is not None and content.kind == file and inode is not None:
            key = (inode[0], content.ordinal)
            if key not in seen:
                seen.add(key)
                final += content.size
    waste: dict[bytes, WastedPath] = {}
    last_stored: dict[bytes, int] = {}  # the layer that last stored a version of the file at a path
    file_word, kept = KIND_NAMES[Kind.FILE], (ChangeWord.ADDED, ChangeWord.MODIFIED)
    for change in log.changes:
        if change.unreachable:
            slot = waste.get(change.path)
            if slot is None:
                slot = waste[change.path] = WastedPath(change.path, 0, 0, [])
            slot.wasted_bytes += change.unreachable
            slot.versions_lost += 1
            if change.path in last_stored:
                slot.layers.append(last_stored[change.path])
        if change.kind == file_word and change.change in kept:  # a hardlink's bytes: its file's layer
            last_stored[change.path] = change.inode[0] if change.inode is not None else change.layer
    ranked = sorted(waste.values(), key=lambda w: (-w.wasted_bytes, w.path))
    for wasted_path in ranked:
        wasted_path.layers = sorted(set(wasted_path.layers))
    return Efficiency(stored_bytes, final, max(0, stored_bytes - final), ranked, top)


def shared_layers(first: Image, second: Image) -> tuple[int, list[str]]:
    """The length of the common base (same diff_ids bottom up) and every diff_id both images hold."""
    common = 0
    for a, b in zip(first.layers, second.layers, strict=False):
        if a.diff_id != b.diff_id:
            break
        common += 1
    theirs = {layer.diff_id for layer in second.layers}
    both = [str(layer.diff_id) for layer in first.layers if layer.diff_id in theirs]
    return common, both


@dataclass(slots=True)
class LayerRange:
    """``diff layers A B``: the tree after layer A against the tree after layer B."""

    first: int
    second: int
    changes: list[PathChange]


@dataclass(slots=True)
class LayerChanges:
    """``diff layers [A]``: what each layer changed (only layer A's, when ``only`` is set), and the
    space the layers waste."""

    summaries: list[LayerSummary]
    efficiency: Efficiency
    only: int | None = None


def diff_layers(
    image: Image, reading: Reading, first: int | None = None, second: int | None = None, top: int = 10
) -> LayerRange | LayerChanges:
    """Each layer's changes, layer ``first``'s alone, or the trees after ``first`` and ``second``."""
    check_layer_number(image, first, "A =")
    check_layer_number(image, second, "B =")
    if first is not None and second is not None:
        view = merged(image, reading, upto=max(first, second))
        lower = apply_indexes(image, view.indexes, upto=min(first, second))
        changes = compare_trees(*((lower, view.tree) if first <= second else (view.tree, lower)))
        return LayerRange(first, second, changes)
    log = ChangeLog()
    view = merged(image, reading, recorder=log)
    summaries = summarize_layers(image, log)
    waste = efficiency(view, log, top)
    if first is not None:
        summaries = [summaries[first]]
    return LayerChanges(summaries, waste, first)


@dataclass(slots=True)
class ImageDiff:
    """``diff images``: every path that differs between two final trees, and the layers both hold."""

    changes: list[PathChange]
    shared_base_layers: int
    shared_diff_ids: list[str]

    @property
    def identical(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        words = (ChangeWord.ADDED, ChangeWord.MODIFIED, ChangeWord.DELETED)
        return {word: sum(1 for c in self.changes if c.change == word) for word in words}


def diff_images(first: Image, second: Image, reading: Reading) -> ImageDiff:
    """Compare the final trees of two images."""
    view1 = merged(first, reading)
    view2 = merged(second, reading)
    changes = compare_trees(view1.tree, view2.tree)
    base, shared = shared_layers(first, second)
    return ImageDiff(changes, base, shared)
