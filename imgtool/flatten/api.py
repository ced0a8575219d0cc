"""flatten as one call: index the layers, merge them, write a directory, a tar file or a tar stream."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from imgtool.errors import UsageError
from imgtool.flatten.export import check_tar_destination, check_tar_stream, flatten_to_tar_file, write_tar
from imgtool.flatten.plan import WritePlan, make_plan
from imgtool.flatten.provenance import StagedProvenance, check_provenance_destination
from imgtool.flatten.rootfs import WriteStats, flatten_to_dir, prepare_destination
from imgtool.flatten.safe import SafeStats, make_safe
from imgtool.image.compression import Compression, check_level, named_compression
from imgtool.image.image import Image
from imgtool.merge.index import IndexCache
from imgtool.merge.spool import Spool, worth_spooling
from imgtool.merge.view import MergedView, merged_view
from imgtool.progress import Progress
from imgtool.system.staging import no_space, sweep


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


def spool_directory(output: str | BinaryIO) -> str:
    """Where temporary copies of layers go: beside a file or directory output, else in TMPDIR."""
    return os.path.dirname(os.path.abspath(output)) if isinstance(output, str) else tempfile.gettempdir()


def default_max_size(output: str) -> int | None:
    """The default limit on a layer's uncompressed size: the free space where the output goes,
    or for ``-`` (a stream) where its temporary files go (TMPDIR)."""
    try:
        directory = tempfile.gettempdir() if output == "-" else os.path.dirname(os.path.abspath(output))
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _write_stream(
    view: MergedView,
    out: BinaryIO,
    progress: Progress | None,
    max_size: int | None,
    plan: WritePlan,
    *,
    compression: Compression,
    level: int | None,
) -> None:
    try:
        write_tar(view, out, progress, max_size, plan, compression=compression, level=level)
    except OSError as exc:
        full = no_space(exc, "standard output", "writing the tar stream", "redirect it to another place")
        if full is None:
            raise
        raise full from exc


def _word(kind: Compression) -> str:
    return "uncompressed" if kind is Compression.NONE else kind.value


@dataclass(frozen=True, slots=True)
class FlattenResult:
    paths: int
    data_bytes: int
    safe: SafeStats | None = None  # what --safe left out or changed


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
    safe: bool = False,
    warn: Callable[[str], None] | None = None,
    compression: Compression = Compression.NONE,
    compress_level: int | None = None,
) -> FlattenResult:
    """Write the image's root filesystem to ``output``.

    ``output`` is a directory path (it must not exist or be empty; ``force`` replaces a
    non-empty one), a tar file path (with ``as_tar``), or a binary stream for a tar. A
    symlink at ``output`` or ``provenance`` is refused, never followed. With ``safe``, device
    nodes, setuid/setgid bits and all but ``user.*`` xattrs are left out (:mod:`imgtool.flatten.safe`).
    The provenance file goes into place with the output, or not at all. A tar is compressed with
    ``compression`` (at ``compress_level``, else its default level); a tar file whose name says
    another compression (``.tar``, ``.tar.gz``, ``.tgz``, ``.tar.zst``) is written all the same, with
    a warning.
    """
    check_level(compression, compress_level)
    if compression is not Compression.NONE and isinstance(output, str) and not as_tar:
        raise UsageError(f"{output}: a directory cannot be compressed; write a tar (--tar)")
    named = named_compression(output) if isinstance(output, str) and as_tar else None
    if named is not None and named is not compression and warn is not None:
        article = "an" if compression is Compression.NONE else "a"
        warn(f"writing {article} {_word(compression)} tar to {output}, whose name says {_word(named)}")
    places = []
    with contextlib.suppress(OSError):  # no usable temporary directory: nothing to sweep there
        places.append(tempfile.gettempdir())
    if isinstance(output, str):  # refuse a bad destination before any layer is read
        if as_tar:
            places.append(os.path.dirname(check_tar_destination(output, force)))
        else:
            places.append(os.path.dirname(prepare_destination(output, force)[0]))
    else:
        check_tar_stream(output)
    if provenance:
        places.append(os.path.dirname(check_provenance_destination(provenance)))
    for directory in dict.fromkeys(places):
        sweep(directory)  # what killed runs left there
    layers = image.layers if upto is None else image.layers[: upto + 1]
    with _spool_if_worth_it(spool_directory(output), sum(layer.size for layer in layers)) as spool:
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
        safe_stats = make_safe(view.tree) if safe else None
        staged = StagedProvenance(view, provenance) if provenance else None
        written = output if isinstance(output, str) else None
        commit = (lambda: staged.commit(written)) if staged is not None else None
        try:
            if not isinstance(output, str):
                plan = make_plan(view.tree)
                if spool is not None:
                    # Bytes sent down a stream cannot be taken back: verify every layer before any is sent.
                    for number in plan.layers_to_read():
                        spool.fill(image.layers[number], max_size)
                _write_stream(
                    view, output, progress, max_size, plan, compression=compression, level=compress_level
                )
                if commit is not None:
                    commit()
                stats = WriteStats(paths=plan.path_count, data_bytes=plan.data_bytes)
            elif as_tar:
                plan = make_plan(view.tree)
                flatten_to_tar_file(
                    view,
                    output,
                    progress,
                    max_size,
                    force,
                    then=commit,
                    plan=plan,
                    compression=compression,
                    level=compress_level,
                )
                stats = WriteStats(paths=plan.path_count, data_bytes=plan.data_bytes)
            else:
                stats = flatten_to_dir(
                    view, output, force=force, progress=progress, max_size=max_size, warn=warn, then=commit
                )
        finally:
            if staged is not None:
                staged.discard()
    return FlattenResult(stats.paths, stats.data_bytes, safe_stats)
