"""Content digests as values, and a reader that verifies a blob while it streams."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from imgtool.errors import DigestMismatchError, ImageFormatError, LayerError
from imgtool.image.compression import CHUNK
from imgtool.image.readable import Readable

_HEX_LENGTH: Final = {"sha256": 64, "sha512": 128}
_DIGEST_RE: Final = re.compile(r"^(sha256|sha512):([0-9a-f]+)$")


@dataclass(frozen=True, slots=True)
class Digest:
    """A parsed, validated ``algorithm:hex`` content address."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: object, what: str = "digest") -> Digest:
        if not isinstance(text, str):
            raise ImageFormatError(f"{what}: expected a digest string, got {type(text).__name__}")
        match = _DIGEST_RE.match(text)
        if match is None or len(match.group(2)) != _HEX_LENGTH[match.group(1)]:
            raise ImageFormatError(f"{what}: not a valid sha256/sha512 digest: {text!r}")
        return cls(match.group(1), match.group(2))

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        return f"{self.algorithm}:{self.hex[:12]}"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class ContentHasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


# Files are compared by the digest of their content, never shown: only the speed of the
# algorithm matters, and its resistance to collisions, since a crafted collision would hide a change.
CONTENT_HASH: str
content_hasher: Callable[[], ContentHasher]
try:  # BLAKE3 hashes about 2.5 times as fast as sha256 here; it is optional.
    from blake3 import blake3 as content_hasher

    CONTENT_HASH = "blake3"
except ImportError:  # pragma: no cover - exercised where blake3 is absent
    content_hasher = hashlib.sha256
    CONTENT_HASH = "sha256"


class VerifyingReader:
    """Reads a blob, refusing more than its declared size and checking the digest at EOF.

    Bytes are only trustworthy once EOF has been reached without an error, so
    callers that stop early must call :meth:`drain`.
    """

    def __init__(
        self,
        raw: Readable,
        expected: Digest,
        size: int | None,
        what: str,
        check: str = "blob",
        *,
        check_digest: bool = True,
    ) -> None:
        self._raw = raw
        self._check_digest = check_digest  # False: only counted (a stream with no digest to hold it to)
        self._check = check
        self._expected = expected
        self._size = size
        self._what = what
        self._hash = expected.hasher()
        self._count = 0
        self._done = False

    def read(self, n: int = -1) -> bytes:
        if self._done:
            return b""
        if self._size is not None:
            left = self._size - self._count
            n = left + 1 if n < 0 or n > left else n
        data = self._raw.read(n) if n >= 0 else self._raw.read()
        if data:
            self._count += len(data)
            if self._size is not None and self._count > self._size:
                raise DigestMismatchError(
                    f"{self._what}: blob is larger than the {self._size} bytes its descriptor declares",
                    check=self._check,
                )
            self._hash.update(data)
            if n != 0:
                return data
        self._finish()
        return b""

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _finish(self) -> None:
        self._done = True
        if self._size is not None and self._count != self._size:
            raise LayerError(f"{self._what}: blob is truncated: {self._count} of {self._size} bytes present")
        actual = self._hash.hexdigest()
        if self._check_digest and actual != self._expected.hex:
            got = f"{self._expected.algorithm}:{actual}"
            raise DigestMismatchError(
                f"{self._what}: digest mismatch: expected {self._expected}, got {got}",
                check=self._check,
                actual=got,
            )

    def drain(self) -> None:
        """Read to the end so the digest is checked."""
        while self.read(CHUNK):
            pass

    @property
    def bytes_read(self) -> int:
        return self._count

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()


def read_verified(raw: Readable, expected: Digest, size: int | None, what: str, limit: int) -> bytes:
    """Read a whole small blob (manifest, config), verified, refusing more than ``limit`` bytes."""
    if size is not None and size > limit:
        raise ImageFormatError(f"{what}: declared size {size} exceeds the {limit}-byte limit for JSON blobs")
    reader = VerifyingReader(raw, expected, size, what)
    chunks: list[bytes] = []
    total = 0
    while chunk := reader.read(1 << 16):
        total += len(chunk)
        if total > limit:
            raise ImageFormatError(f"{what}: larger than the {limit}-byte limit for JSON blobs")
        chunks.append(chunk)
    return b"".join(chunks)
