"""copy: an image from any source to a destination (an OCI layout, a registry), every blob
verified by its digest on the way, the manifest last and byte for byte as the source has it (its
digest unchanged), except where the destination cannot keep it (a docker-archive stores its
layers uncompressed and so its manifest is another: the result names both digests).

Layers are sent by a bounded pool of ``jobs`` threads; the first failure stops the others (each
checks between pieces) and the destination undoes what it has placed (:meth:`Destination.abort`).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Final

from imgtool.errors import ImgtoolError, UsageError
from imgtool.image.destination import BlobLostError, Destination, IndexTree, StoredManifest
from imgtool.image.digest import Digest, VerifyingReader
from imgtool.image.image import Image
from imgtool.image.mediatypes import FOREIGN_LAYER_TYPES, INDEX_TYPES
from imgtool.image.model import Descriptor, load_json, parse_manifest
from imgtool.image.readable import Readable
from imgtool.progress import LockedProgress, NoProgress, Progress

DEFAULT_JOBS: Final = 4
# How often a blob the destination lost halfway (BlobLostError) is sent again from its start.
MAX_RESENDS: Final = 2
MAX_JOBS: Final = 32
# What a transfer reads between two looks at whether it should stop (an interrupt, another's failure).
PIECE: Final = 64 << 10


class CancelledError(ImgtoolError):
    """A transfer stopped because another one failed (never seen by the user: the first failure is)."""


@dataclass(frozen=True, slots=True)
class CopiedBlob:
    digest: str
    size: int
    what: str  # "config" or "layer N"
    status: str  # "copied", "present" (the destination had it), "foreign" (not distributable: left out)


@dataclass(frozen=True, slots=True)
class CopyResult:
    source: str
    destination: str
    manifest_digest: str
    media_type: str
    blobs: tuple[CopiedBlob, ...]
    manifests: tuple[str, ...] = ()  # with --all-platforms: those the index lists, put before it
    # The source's manifest digest, where the destination stores a manifest of its own (a
    # docker-archive: layers uncompressed); None when it is copied byte for byte.
    source_manifest_digest: str | None = None

    @property
    def bytes_copied(self) -> int:
        return sum(b.size for b in self.blobs if b.status == "copied")


class _Stoppable:
    """A reader that gives up between pieces once ``stop`` is set, and counts what it hands on."""

    def __init__(self, raw: Readable, stop: threading.Event, advance: Callable[[int], None]) -> None:
        self._raw = raw
        self._stop = stop
        self._advance = advance

    def read(self, n: int = -1, /) -> bytes:
        if self._stop.is_set():
            raise CancelledError("stopped")
        data = self._raw.read(PIECE if n < 0 else min(n, PIECE))
        self._advance(len(data))
        return data


class _Counted:
    """Hands on what a transfer reads, and keeps its total (taken back if the blob is sent again)."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self._advance = advance
        self.total = 0

    def __call__(self, n: int) -> None:
        self.total += n
        self._advance(n)


@dataclass(frozen=True, slots=True)
class _Blob:
    digest: Digest
    size: int
    what: str
    open: Callable[[], VerifyingReader] | None  # None: a foreign layer the source does not hold


def copy_image(
    what: Image | IndexTree,
    dest: Destination,
    *,
    jobs: int = DEFAULT_JOBS,
    progress: Progress | None = None,
) -> CopyResult:
    """Copy ``what`` into ``dest``. An image: its layers (``jobs`` at a time) and config, each only
    if the destination lacks it, then the manifest; then commit. An index (``--all-platforms``):
    the blobs of every manifest below it, then those manifests, then the index. On any failure
    (or KeyboardInterrupt) the destination is left as it was."""
    jobs = max(1, min(jobs, MAX_JOBS))
    if isinstance(what, Image):
        image = what
        blobs = _image_blobs(image)
        top = StoredManifest(
            image.manifest_bytes,
            image.manifest_media_type,
            image.manifest_digest or Digest.of_bytes(image.manifest_bytes),
        )
        below: tuple[StoredManifest, ...] = ()
    else:
        if not dest.holds_indexes:
            raise UsageError(
                f"{dest.location}: holds images, not an image index; copy one platform "
                "(without --all-platforms)"
            )
        blobs, top, below = _index_blobs(what), what.top, what.below
    shown = LockedProgress(progress or NoProgress())
    stop = threading.Event()
    statuses: dict[int, str] = {}
    try:
        shown.start(f"copying to {dest.location}", sum(b.size for b in blobs))
        _send_all(blobs, dest, jobs, stop, shown.advance, statuses)
        for child in below:
            dest.put_child(child.data, child.media_type, child.digest)
        stored = dest.put_manifest(top.data, top.media_type, top.digest)
        dest.commit()
    except BaseException:
        stop.set()
        dest.abort()
        raise
    finally:
        shown.finish()
    rewritten = stored is not None and stored.digest != top.digest
    return CopyResult(
        source=what.reference,
        destination=dest.location,
        manifest_digest=str(stored.digest if stored is not None else top.digest),
        media_type=stored.media_type if stored is not None else top.media_type,
        blobs=tuple(CopiedBlob(str(b.digest), b.size, b.what, statuses[i]) for i, b in enumerate(blobs)),
        manifests=tuple(str(m.digest) for m in below),
        source_manifest_digest=str(top.digest) if rewritten else None,
    )


def _image_blobs(image: Image) -> list[_Blob]:
    config_bytes = image.config_bytes
    config_digest = image.config_digest

    def open_config() -> VerifyingReader:
        return VerifyingReader(io.BytesIO(config_bytes), config_digest, len(config_bytes), "config")

    blobs = [
        _Blob(layer.digest, layer.size, f"layer {layer.index}", layer.open_blob if layer._opener else None)
        for layer in image.layers
    ]
    blobs.append(_Blob(config_digest, len(config_bytes), "config", open_config))
    return blobs


def _index_blobs(index: IndexTree) -> list[_Blob]:
    """The layers and config of every image manifest below the index; non-distributable layers are
    left out (as skopeo and crane leave them: they are fetched from their URLs)."""
    blobs: list[_Blob] = []

    def opener(desc: Descriptor, what: str) -> Callable[[], VerifyingReader]:
        return lambda: VerifyingReader(index.open_blob(desc.digest), desc.digest, desc.size, f"{what} blob")

    for child in index.below:
        if child.media_type in INDEX_TYPES:
            continue
        what = f"manifest {child.digest}"
        manifest = parse_manifest(load_json(child.data, what), what)
        for i, desc in enumerate(manifest.layers):
            label = f"{what} layer {i} ({desc.digest})"
            foreign = desc.media_type in FOREIGN_LAYER_TYPES
            blobs.append(_Blob(desc.digest, desc.size, label, None if foreign else opener(desc, label)))
        label = f"{what} config"
        blobs.append(
            _Blob(manifest.config.digest, manifest.config.size, label, opener(manifest.config, label))
        )
    return blobs


def _send_all(  # noqa: PLR0917 - one caller, the state of one copy
    blobs: list[_Blob],
    dest: Destination,
    jobs: int,
    stop: threading.Event,
    advance: Callable[[int], None],
    statuses: dict[int, str],
) -> None:
    """Every blob (a digest listed twice is sent once), ``jobs`` at a time; the first error is raised."""
    first: dict[Digest, int] = {}
    for i, blob in enumerate(blobs):
        first.setdefault(blob.digest, i)

    def send(i: int) -> None:
        blob = blobs[i]
        if blob.open is None:
            statuses[i] = "foreign"
            return
        if dest.has_blob(blob.digest, blob.size):
            statuses[i] = "present"
            advance(blob.size)
            return
        for resend in range(MAX_RESENDS + 1):
            counted = _Counted(advance)
            reader = blob.open()
            try:
                dest.put_blob(blob.digest, blob.size, _Stoppable(reader, stop, counted))
            except BlobLostError:
                if resend == MAX_RESENDS:
                    raise
                advance(-counted.total)  # read again from the start: the progress goes back
                continue
            finally:
                reader.close()
            break
        statuses[i] = "copied"

    todo = [i for i, blob in enumerate(blobs) if first[blob.digest] == i]
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="imgtool-copy")
    try:
        futures: list[Future[None]] = [pool.submit(send, i) for i in todo]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            stop.set()
            wait(futures)
            errors = [e for f in futures if (e := f.exception()) is not None]
            real = [e for e in errors if not isinstance(e, CancelledError)]
            raise (real or errors)[0]
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for i, blob in enumerate(blobs):
        statuses.setdefault(i, statuses[first[blob.digest]])
