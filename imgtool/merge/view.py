"""The merged view of an image: its layers' indexes applied in order, from cache when possible."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from imgtool.errors import ImgtoolError, UsageError, with_context
from imgtool.image.findings import layer_warnings
from imgtool.image.image import Image, LayerStream
from imgtool.layers.tarstream import LayerReader
from imgtool.merge.changes import ChangeRecorder
from imgtool.merge.index import IndexCache, LayerIndex, index_image, layer_index
from imgtool.merge.overlay import Tree
from imgtool.merge.readahead import ReadAhead
from imgtool.merge.spool import Spool
from imgtool.progress import Progress


@dataclass(slots=True)
class MergedView:
    image: Image
    indexes: list[LayerIndex]
    tree: Tree
    spool: Spool | None = None  # uncompressed copies of the layers indexed on the way, if kept

    @property
    def top(self) -> int:
        return len(self.indexes) - 1


def check_layer_number(image: Image, number: int | None, option: str = "--layers") -> None:
    if number is not None and not 0 <= number < len(image.layers):
        raise UsageError(f"{option} {number}: the image has layers 0 to {len(image.layers) - 1}")


def apply_indexes(
    image: Image, indexes: list[LayerIndex], upto: int | None = None, recorder: ChangeRecorder | None = None
) -> Tree:
    """Apply the indexed layers ``0..upto`` (all by default), bottom first."""
    tree = Tree()
    count = len(indexes) if upto is None else upto + 1
    for number, index in enumerate(indexes[:count]):
        try:
            tree.apply(number, index.entries, recorder)
        except ImgtoolError as exc:
            raise with_context(exc, image.layers[number].what) from exc
    return tree


def merged_view(
    image: Image,
    *,
    upto: int | None = None,
    cache: IndexCache | None = None,
    progress: Progress | None = None,
    recorder: ChangeRecorder | None = None,
    max_size: int | None = None,
    warn: Callable[[str], None] | None = None,
    spool: Spool | None = None,
    for_writing: bool = False,
) -> MergedView:
    """Index the layers (``0..upto``, all by default) and apply them bottom first.

    ``for_writing`` is for flatten: it needs neither content digests nor the layer indexes
    once the tree is built, so it spends no time on the one and keeps no memory for the other.
    """
    check_layer_number(image, upto)
    indexes = index_image(
        image,
        cache=cache,
        progress=progress,
        max_size=max_size,
        upto=upto,
        warn=warn,
        spool=spool,
        hash_content=not for_writing,
    )
    tree = apply_indexes(image, indexes, recorder=recorder)
    return MergedView(image, [] if for_writing else indexes, tree, spool)


# What trying the upper layers alone may cost, in entries applied, beyond what merging every layer
# once would: past it the remaining layers are read and merged at once.
_TOP_DOWN_BUDGET = 8


def trees_from_top(
    image: Image, *, upto: int | None = None, cache: IndexCache | None = None
) -> Iterator[tuple[int, Tree | None, list[str]]]:
    """For N from the top layer (or ``upto``) down to 0: the tree of layers N..top alone, indexed
    one layer at a time from the top, and the warnings of layer N (its indexing's and the image's
    about it). A question the tree answers without ``depends_below`` is answered as the whole
    image would answer it, without reading the layers below N. The tree is None where these layers
    alone could not be applied (a hardlink to a lower layer's file), or where trying them all in
    turn would cost too much; at N = 0 it is the image's tree (or its error).
    """
    check_layer_number(image, upto)
    top = len(image.layers) - 1 if upto is None else upto
    indexes: list[LayerIndex] = []
    spent = 0
    for number in range(top, -1, -1):
        layer = image.layers[number]
        index = layer_index(layer, cache)
        indexes.insert(0, index)
        warnings = [*layer_warnings(image, layer), *index.warnings]
        if number == 0:
            yield 0, apply_indexes(image, indexes), warnings
            return
        applied = sum(len(item.entries) for item in indexes)
        spent += applied
        if spent > _TOP_DOWN_BUDGET * applied + 1_000_000:
            yield number, None, warnings
            continue
        tree = Tree()
        try:
            for offset, item in enumerate(indexes):
                tree.apply(number + offset, item.entries)
        except ImgtoolError:
            yield number, None, warnings  # what the lower layers hold decides: the whole tree says
            continue
        yield number, tree, warnings


class LayerData:
    """A layer's file data opened to write it out.

    When the spool holds the layer (decompressed and verified already), ``spool_fd`` is set and
    any entry's data is read at its offset: no tar header is parsed again. Otherwise ``reader``
    walks the blob, decompressed ahead in a worker thread, and :meth:`close` with ``complete``
    reads it to its end, so that both digests are checked.
    """

    def __init__(self, view: MergedView, number: int, progress: Progress, max_size: int | None) -> None:
        layer = view.image.layers[number]
        self.what = layer.what
        self._stream: LayerStream | None = None
        self._ahead: ReadAhead | None = None
        self._spooled = view.spool.open(number) if view.spool is not None else None
        self.spool_fd: int | None = None
        if self._spooled is not None:
            progress.advance(layer.size)
            self.spool_fd = self._spooled.fileno()
            return
        self._stream = layer.open(max_size)
        self._stream.on_compressed_bytes = progress.advance
        self._ahead = ReadAhead(self._stream, depth=4)
        self.reader = LayerReader(self._ahead, layer.what)

    def close(self, complete: bool) -> None:
        if self._spooled is not None:
            self._spooled.close()
            return
        assert self._stream is not None and self._ahead is not None
        try:
            if complete:
                self.reader.drain()
        finally:
            self._ahead.close()
            self._stream.close()
        if complete:
            self._stream.finish()
