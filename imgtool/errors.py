"""One hierarchy for every failure imgtool reports.

Each error carries the exit code the CLI returns for it; the CLI turns any
ImgtoolError into a single ``imgtool: error: ...`` line.
"""

from __future__ import annotations

import copy


class ImgtoolError(Exception):
    """Base class: something about the image, its files or the request is wrong."""

    exit_code = 1


class UsageError(ImgtoolError):
    """The request itself is malformed (bad reference syntax, bad option value)."""

    exit_code = 2


class ImageFormatError(ImgtoolError):
    """A file is not the image format it claims to be: bad JSON, wrong types, bad tar."""


class ImageNotFoundError(ImgtoolError):
    """A file, blob, tag, platform or path the request names does not exist."""


class AmbiguousImageError(ImgtoolError):
    """The reference matches several images; the message lists them."""


class DigestMismatchError(ImgtoolError):
    """A blob's content does not hash to the digest that names it.

    ``check`` says which digest failed ("blob" or "diff_id"); ``actual`` is what the content hashed to.
    """

    def __init__(self, message: str, *, check: str = "blob", actual: str | None = None) -> None:
        super().__init__(message)
        self.check = check
        self.actual = actual


class MediaTypeError(ImgtoolError):
    """A media type imgtool does not understand, or a layer that is not present."""


class LayerError(ImgtoolError):
    """A layer's tar stream is broken: truncated, corrupt compression, bad header."""


class UnsafePathError(ImgtoolError):
    """An entry would reach outside the root (``..``, escaping link, root replaced)."""


class LimitExceededError(ImgtoolError):
    """A resource limit was hit (decompression bomb, too many entries, link loops)."""


class OutputError(ImgtoolError):
    """The output location cannot be written (exists, read-only, disk full)."""


class InterruptedAfterOutputError(ImgtoolError):
    """Interrupted once the output was already in place; the message says what is left, and where."""

    exit_code = 130


def with_context(exc: ImgtoolError, context: str) -> ImgtoolError:
    """``exc`` with ``context: `` before its message, of its own class and with its own attributes
    (a DigestMismatchError keeps ``check`` and ``actual``); raise it ``from exc``."""
    copied = copy.copy(exc)
    copied.args = (f"{context}: {exc}", *exc.args[1:])
    return copied


class RegistryError(ImgtoolError):
    """A registry cannot be reached, refuses the credentials, or answers what the protocol does not allow."""
