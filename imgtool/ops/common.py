"""What every operation shares: how to read the layers (cache, progress, warnings), and the
facts about an image's layers that its answers quote."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from imgtool.image.image import Image
from imgtool.merge.changes import ChangeRecorder
from imgtool.merge.index import IndexCache
from imgtool.merge.view import MergedView, merged_view
from imgtool.progress import Progress


@dataclass(frozen=True, slots=True)
class Reading:
    """How an operation reads layers: from which index cache, showing what progress, warning where."""

    cache: IndexCache | None = None
    progress: Progress | None = None
    warn: Callable[[str], None] | None = None


@dataclass(frozen=True, slots=True)
class LayerRef:
    """A layer as answers quote it."""

    index: int
    digest: str
    created_by: str | None


def layer_refs(image: Image) -> list[LayerRef]:
    return [LayerRef(layer.index, str(layer.digest), layer.created_by) for layer in image.layers]


def merged(
    image: Image, reading: Reading, *, upto: int | None = None, recorder: ChangeRecorder | None = None
) -> MergedView:
    return merged_view(
        image,
        upto=upto,
        cache=reading.cache,
        progress=reading.progress,
        recorder=recorder,
        warn=reading.warn,
    )
