"""A repository of a registry as a copy's destination (push), as the distribution spec describes it.

Each blob: ``HEAD`` to skip one the registry already has; else ``POST /blobs/uploads/`` for an
upload session, then one ``PUT ?digest=`` with the whole blob when it fits in one piece
(monolithic), else ``PATCH`` piece by piece (chunked, each ``Content-Range`` checked against the
``Range`` the registry confirms) and an empty ``PUT ?digest=`` to finish. That last request is
sent only once the blob's digest has been checked as it was read: a blob that is not what its
digest says never becomes one of the registry's (its session is cancelled with ``DELETE``). The
manifest goes last, byte for byte as given, so a push that stops halfway leaves no tag pointing at
missing blobs; the digest the registry answers with must be the manifest's.
"""

from __future__ import annotations

import contextlib
import re
from typing import Final, Self
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3

from imgtool.errors import RegistryError
from imgtool.image.digest import Digest
from imgtool.image.readable import Readable
from imgtool.sources.reference import DockerName
from imgtool.sources.registry.client import Client, printable

# What one request of a chunked upload carries (and the most of a blob held in memory at once).
UPLOAD_PIECE: Final = 8 << 20
_RANGE_RE: Final = re.compile(r"(?:bytes=)?0-(\d+)")


class RegistryDestination:
    """Pushes to the repository ``name`` names, tagging the manifest with its tag (or by digest)."""

    def __init__(self, name: DockerName, client: Client, location: str, piece: int | None = None) -> None:
        self.name = name
        self.location = location
        self._client = client
        self._piece = piece or UPLOAD_PIECE
        client.scope = f"repository:{name.repository}:pull,push"
        self.mount_from: str | None = None  # a repository of the same registry the blobs come from

    def has_blob(self, digest: Digest, size: int) -> bool:
        """Whether the registry has the blob in this repository, or now has it there: mounted
        from ``mount_from`` (a cross-repository mount; a registry that does not, or will not for
        these credentials, answers otherwise than 201 and the blob is uploaded). With token auth
        the mount is asked with one token for both repositories (pull of the one, push to this)."""
        if self._client.has(f"blobs/{digest}"):
            return True
        if self.mount_from in (None, self.name.repository):
            return False
        query = urlencode({"mount": str(digest), "from": self.mount_from})
        scope = f"{self._client.scope} repository:{self.mount_from}:pull"
        response = self._client.send("POST", f"blobs/uploads/?{query}", {"Content-Length": "0"}, scope=scope)
        mounted = response.status == 201
        location = response.headers.get("Location") if response.status == 202 else None
        _done(response)
        if location:  # not mounted: an upload session was opened instead, and is not needed
            self._cancel(urljoin(f"{self._client.base}/v2/{self.name.repository}/blobs/uploads/", location))
        return mounted

    def put_blob(self, digest: Digest, size: int, reader: Readable) -> None:
        what = f"blob {digest}"
        first = _read_piece(reader, self._piece)
        more = reader.read(1) if len(first) == self._piece else b""
        response = self._client.send("POST", "blobs/uploads/", {"Content-Length": "0"})
        url = self._location(response, what, 202)
        try:
            if not more:  # the reader has reached its end: all of it, checked, in one PUT
                self._finish(url, digest, first, what)
                return
            sent = 0
            piece = first + more
            while True:
                url = self._patch(url, piece, sent, what)
                sent += len(piece)
                piece = _read_piece(reader, self._piece)
                if not piece:
                    break
            self._finish(url, digest, b"", what)
        except BaseException:
            self._cancel(url)
            raise

    def _patch(self, url: str, piece: bytes, offset: int, what: str) -> str:
        end = offset + len(piece) - 1
        response = self._client.send(
            "PATCH",
            url,
            {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(piece)),
                "Content-Range": f"{offset}-{end}",
            },
            piece,
        )
        confirmed = response.headers.get("Range", "")
        following = self._location(response, what, 202)
        match = _RANGE_RE.fullmatch(confirmed.strip())
        if match is None or int(match.group(1)) != end:
            raise RegistryError(
                f"{self.location}: {what}: after bytes {offset}-{end} the registry confirms "
                f"Range {printable(confirmed or '(none)')!r}"
            )
        return following

    def _finish(self, url: str, digest: Digest, body: bytes, what: str) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        response = self._client.send("PUT", _with_query(url, digest=str(digest)), headers, body)
        try:
            if response.status != 201:
                raise self._client.error(response, f"{what} (upload)")
        finally:
            _done(response)

    def _cancel(self, url: str) -> None:
        # The session expires anyway: a failure to cancel it must not hide the error that stopped it.
        with contextlib.suppress(RegistryError, urllib3.exceptions.HTTPError, OSError):
            _done(self._client.send("DELETE", url, {}))

    def _location(self, response: urllib3.BaseHTTPResponse, what: str, status: int) -> str:
        try:
            if response.status != status:
                raise self._client.error(response, f"{what} (upload)")
            location = response.headers.get("Location")
            if not location:
                raise RegistryError(f"{self.location}: {what}: the registry gave no upload Location")
            url = urljoin(f"{self._client.base}/v2/{self.name.repository}/blobs/uploads/", location)
            if urlsplit(url).scheme not in ("http", "https"):
                raise RegistryError(f"{self.location}: {what}: refused upload Location {printable(url)!r}")
            return url
        finally:
            _done(response)

    def put_manifest(self, data: bytes, media_type: str, digest: Digest) -> None:
        reference = str(self.name.digest) if self.name.digest is not None else str(self.name.tag)
        if self.name.digest is not None and self.name.digest != digest:
            raise RegistryError(f"{self.location}: the image's manifest is {digest}, not {self.name.digest}")
        self._put_manifest(data, media_type, digest, reference)

    def put_child(self, data: bytes, media_type: str, digest: Digest) -> None:
        self._put_manifest(data, media_type, digest, str(digest))

    def _put_manifest(self, data: bytes, media_type: str, digest: Digest, reference: str) -> None:
        response = self._client.send(
            "PUT",
            f"manifests/{reference}",
            {"Content-Type": media_type, "Content-Length": str(len(data))},
            data,
        )
        try:
            if response.status != 201:
                raise self._client.error(response, f"manifest {reference}")
            answered = response.headers.get("Docker-Content-Digest")
            if answered and answered.strip() != str(digest):
                raise RegistryError(
                    f"{self.location}: the registry stored the manifest as {printable(answered)}, "
                    f"not {digest}"
                )
        finally:
            _done(response)

    def commit(self) -> None:
        pass  # the manifest PUT was the last step

    def abort(self) -> None:
        pass  # blobs without a manifest naming them are the registry's to collect

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_piece(reader: Readable, size: int) -> bytes:
    pieces: list[bytes] = []
    left = size
    while left > 0:
        data = reader.read(min(left, 1 << 20))
        if not data:
            break
        pieces.append(data)
        left -= len(data)
    return b"".join(pieces)


def _with_query(url: str, **params: str) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"


def _done(response: urllib3.BaseHTTPResponse) -> None:
    response.close()
    response.release_conn()
