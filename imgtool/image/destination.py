"""Where ``imgtool copy`` writes an image: the small core every destination implements (an OCI
layout, a registry). The copy itself (:mod:`imgtool.ops.copy`) decides what to send and in which
order; a destination only stores what it is given, and only once the bytes have been verified."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from imgtool.errors import ImgtoolError
from imgtool.image.digest import Digest
from imgtool.image.readable import RawStream, Readable


class BlobLostError(ImgtoolError):
    """``put_blob`` failed and the destination kept nothing of the blob (a registry that gave up
    the upload session a broken request left); the blob can be sent again from its start."""


class Destination(Protocol):
    """``put_blob`` reads ``reader`` to its end (a :class:`~imgtool.image.digest.VerifyingReader`:
    the digest is checked as the end is reached) before the blob is kept under its digest, so that
    nothing unverified reaches the destination. ``put_manifest`` comes last, after every blob it
    names (an index: after ``put_child`` of each manifest it lists); ``commit`` makes the copy
    visible (a layout's ``index.json``), ``abort`` undoes what a copy that failed has placed.
    Blobs may be put from several threads at once.

    A destination that cannot keep the manifest as it is given (a docker-archive stores its
    layers uncompressed, so its manifest is another) returns from ``put_manifest`` the manifest
    it stores instead; one that keeps it byte for byte returns None."""

    location: str
    holds_indexes: bool  # False: an image index cannot be copied there (a docker-archive)

    def has_blob(self, digest: Digest, size: int) -> bool: ...

    def put_blob(self, digest: Digest, size: int, reader: Readable) -> None: ...

    def put_manifest(self, data: bytes, media_type: str, digest: Digest) -> StoredManifest | None: ...

    def put_child(self, data: bytes, media_type: str, digest: Digest) -> None:
        """A manifest an index lists (stored by digest, not named), put before the index."""
        ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None:
        """Done: a copy not committed is aborted."""
        ...

    def __enter__(self) -> Destination: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A manifest or image index as a source stores it: its bytes (verified against ``digest``)."""

    data: bytes
    media_type: str
    digest: Digest


@dataclass(frozen=True, slots=True)
class IndexTree:
    """An image index and every manifest and index below it (``below``: the deepest first, each
    once), for ``copy --all-platforms``; ``open_blob`` opens the blobs they list (unverified)."""

    reference: str
    top: StoredManifest
    below: tuple[StoredManifest, ...]
    open_blob: Callable[[Digest], RawStream]
    has_blob: Callable[[Digest], bool]
