"""A blob streamed from the registry, resumed where a cut connection left it.

The stream is raw: the caller reads it through a VerifyingReader (the blob's digest, capped at its
descriptor's size), as it reads a local blob. The offset resumed from is what the caller has been
given, so every byte is hashed once; a resumed response must start exactly there (``Content-Range``).
"""

from __future__ import annotations

import re
from typing import Final

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from imgtool.errors import RegistryError
from imgtool.image.digest import Digest
from imgtool.sources.registry.client import Client, printable

# What one read from the connection asks for: a cut connection loses at most this much of what
# was in flight, since the resumed request starts after the last piece handed on.
PIECE: Final = 64 << 10
_CONTENT_RANGE_RE: Final = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class BlobStream:
    """``GET /v2/REPO/blobs/DIGEST``, read as a file is read; a connection that breaks mid-body is
    opened again with ``Range: bytes=OFFSET-``, at most ``retries`` times in a row without progress."""

    def __init__(self, client: Client, digest: Digest) -> None:
        self._client = client
        self._digest = digest
        self._what = f"{client.location}: blob {digest}"
        self._response: urllib3.BaseHTTPResponse | None = None
        self._offset = 0
        self._failures = 0
        self._eof = False
        self._open()  # a missing blob is an error of open_blob, not of the first read

    def _open(self) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self._offset:
            headers["Range"] = f"bytes={self._offset}-"
        response = self._client.get(f"blobs/{self._digest}", headers, stream=True)
        if self._offset and response.status == 206:
            match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match.group(1)) != self._offset:
                response.close()
                raise RegistryError(
                    f"{self._what}: resuming at byte {self._offset}, the registry sent "
                    f"Content-Range {printable(response.headers.get('Content-Range', '(none)'))!r}"
                )
        elif self._offset and response.status == 200:  # Range ignored: the whole blob again
            skip = self._offset
            while skip:
                data = response.read(min(skip, PIECE), decode_content=False)
                if not data:
                    raise RegistryError(f"{self._what}: the blob is shorter the second time it is sent")
                skip -= len(data)
        elif response.status != 200:
            try:
                raise self._client.error(response, f"blob {self._digest}")
            finally:
                response.close()
        self._response = response

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes (all of them for -1); fewer only at the end of the blob."""
        pieces: list[bytes] = []
        want = n
        while not self._eof and (want < 0 or want > 0):
            data = self._read_some(PIECE if want < 0 else min(want, PIECE))
            if not data:
                self._eof = True
                break
            pieces.append(data)
            if want > 0:
                want -= len(data)
        return b"".join(pieces)

    def _read_some(self, n: int) -> bytes:
        while True:
            if self._response is None:
                self._open()
            assert self._response is not None
            try:
                data = self._response.read(n, decode_content=False)
            except (Urllib3Error, OSError) as exc:
                self._drop()
                self._failures += 1
                if self._failures > self._client.options.retries:
                    raise RegistryError(
                        f"{self._what}: the connection broke {self._failures} times at byte "
                        f"{self._offset}: {printable(str(exc))}"
                    ) from exc
                self._client.sleep(self._client.backoff(self._failures - 1))
                continue
            if data:
                self._offset += len(data)
                self._failures = 0
            return data

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response.release_conn()
            self._response = None

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
