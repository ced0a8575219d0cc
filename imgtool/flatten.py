"""flatten as one call: index the layers, merge them, write a directory, a tar file or a tar stream."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from imgtool.export import check_tar_destination, flatten_to_tar_file, write_tar
from imgtool.image import Image
from imgtool.index import IndexCache
from imgtool.plan import make_plan
from imgtool.progress import Progress
from imgtool.provenance import write_provenance
from imgtool.rootfs import WriteStats, flatten_to_dir, prepare_destination
from imgtool.spool import Spool, worth_spooling
from imgtool.view import merged_view


@contextlib.contextmanager
def _spool_if_worth_it(directory: str, compressed_bytes: int) -> Iterator[Spool | None]:
    """A spool where there is room for one (and the directory takes one), else None."""
    spool = None
    if worth_spooling(directory, compressed_bytes):
        with contextlib.suppress(OSError):
            spool = Spool(directory)
    try:
        yield spool
    finally:
        if spool is not None:
            spool.close()


def default_max_size(output: str) -> int | None:
    """The default limit on a layer's uncompressed size: the free space where the output goes."""
    if output == "-":
        return None
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(output)) or ".")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True, slots=True)
class FlattenResult:
    paths: int
    data_bytes: int


def flatten(
    image: Image,
    output: str | BinaryIO,
    *,
    as_tar: bool = False,
    force: bool = False,
    upto: int | None = None,
    cache: IndexCache | None = None,
    progress: Progress | None = None,
    max_size: int | None = None,
    provenance: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> FlattenResult:
    """Write the image's root filesystem to ``output``.

    ``output`` is a directory path (it must not exist or be empty; ``force`` replaces a
    non-empty one), a tar file path (with ``as_tar``), or a binary stream for a tar.
    """
    if isinstance(output, str):  # refuse a bad destination before any layer is read
        if as_tar:
            check_tar_destination(output, force)
        else:
            prepare_destination(output, force)
    spool_dir = (
        tempfile.gettempdir() if not isinstance(output, str) else os.path.dirname(os.path.abspath(output))
    )
    layers = image.layers if upto is None else image.layers[: upto + 1]
    with _spool_if_worth_it(spool_dir, sum(layer.size for layer in layers)) as spool:
        view = merged_view(
            image,
            upto=upto,
            cache=cache,
            progress=progress,
            max_size=max_size,
            warn=warn,
            spool=spool,
            for_writing=True,
        )
        if not isinstance(output, str):
            plan = make_plan(view.tree)
            if spool is not None:
                # Bytes sent down a stream cannot be taken back: verify every layer before any is sent.
                for number in plan.layers_to_read():
                    spool.fill(image.layers[number], max_size)
            write_tar(view, output, progress, max_size, plan)
            stats = WriteStats()
        elif as_tar:
            flatten_to_tar_file(view, output, progress, max_size, force)
            stats = WriteStats()
        else:
            stats = flatten_to_dir(view, output, force=force, progress=progress, max_size=max_size, warn=warn)
    if provenance:
        write_provenance(view, provenance)
    return FlattenResult(stats.paths, stats.data_bytes)
