"""The merged view of an image: its layers' indexes applied in order, from cache when possible."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imgtool.errors import ImgtoolError, UsageError
from imgtool.image import Image
from imgtool.index import IndexCache, LayerIndex, index_image
from imgtool.overlay import ChangeRecorder, Tree
from imgtool.progress import Progress


@dataclass(slots=True)
class MergedView:
    image: Image
    indexes: list[LayerIndex]
    tree: Tree

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
            raise type(exc)(f"{image.layers[number].what}: {exc}") from exc
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
) -> MergedView:
    """Index the layers (``0..upto``, all by default) and apply them bottom first."""
    check_layer_number(image, upto)
    indexes = index_image(image, cache=cache, progress=progress, max_size=max_size, upto=upto, warn=warn)
    return MergedView(image, indexes, apply_indexes(image, indexes, recorder=recorder))
