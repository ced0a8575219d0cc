"""A repository of a registry as a copy's destination (push), as the distribution spec describes it.

Each blob: ``HEAD`` to skip one the registry already has; else ``POST /blobs/uploads/`` for an
upload session, then one ``PUT ?digest=`` with the whole blob when it fits in one piece
(monolithic), else ``PATCH`` piece by piece (chunked, each ``Content-Range`` checked against the
``Range`` the registry confirms; a PATCH cut off is resumed from the ``Range`` the upload's status
gives) and an empty ``PUT ?digest=`` to finish. That last request is
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
from imgtool.image.destination import BlobLostError
from imgtool.image.digest import Digest
from imgtool.image.readable import Readable
from imgtool.sources.reference import DockerName
from imgtool.sources.registry.client import Client, UnreachableError, printable

# What one request of a chunked upload carries (and the most of a blob held in memory at once).
UPLOAD_PIECE: Final = 8 << 20
_RANGE_RE: Final = re.compile(r"(?:bytes=)?0-(\d+)")
# A PATCH answered so is resumed from what the upload's status says the registry holds.
RESUMED_STATUSES: Final = frozenset({416, *range(500, 600)}) - {501, 505}


class UploadLostError(RegistryError, BlobLostError):
    """The registry no longer knows the upload session (distribution invalidates one whose
    request broke after some of its bytes were stored): the blob is sent again, in a new one."""


class RegistryDestination:
    """Pushes to the repository ``name`` names, tagging the manifest with its tag (or by digest)."""

    holds_indexes = True

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
        """``piece`` (the blob's bytes from ``offset``) sent in a PATCH; the next upload Location.

        Where the connection breaks, a 5xx comes back or the registry refuses the range (416), the
        upload's status (``GET`` of its Location) says how much the registry holds, and what it
        lacks of the piece is sent from there: at most ``retries`` times in a row."""
        end = offset + len(piece) - 1
        held = offset  # of the blob, what the registry has confirmed
        failures = 0
        while True:
            try:
                response = self._client.send(
                    "PATCH",
                    url,
                    {
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(end + 1 - held),
                        "Content-Range": f"{held}-{end}",
                    },
                    piece[held - offset :],
                    retry=False,
                )
            except UnreachableError as exc:
                broke = f"the connection broke ({printable(str(exc.__cause__ or exc))})"
            else:
                if response.status not in RESUMED_STATUSES:
                    return self._confirmed(response, held, end, what)
                broke = f"the registry answered HTTP {response.status}"
                _done(response)
            failures += 1
            if failures > self._client.options.retries:
                raise RegistryError(
                    f"{self.location}: {what}: bytes {held}-{end} not sent: {broke}, {failures} times"
                )
            self._client.sleep(self._client.backoff(failures - 1))
            url, holds = self._status(url, what)
            if not offset <= holds <= end + 1:
                raise RegistryError(
                    f"{self.location}: {what}: the registry holds {holds} bytes of the upload, "
                    f"not between {offset} and {end + 1}"
                )
            if holds > held:
                failures = 0  # progress: the count is of failures in a row
            held = holds
            if held == end + 1:
                return url

    def _confirmed(self, response: urllib3.BaseHTTPResponse, start: int, end: int, what: str) -> str:
        confirmed = response.headers.get("Range", "")
        following = self._location(response, what, 202)
        match = _RANGE_RE.fullmatch(confirmed.strip())
        if match is None or int(match.group(1)) != end:
            raise RegistryError(
                f"{self.location}: {what}: after bytes {start}-{end} the registry confirms "
                f"Range {printable(confirmed or '(none)')!r}"
            )
        return following

    def _status(self, url: str, what: str) -> tuple[str, int]:
        """The upload's Location and how many bytes the registry holds of it (its ``Range``)."""
        response = self._client.send("GET", url, {})
        if response.status == 404:
            _done(response)
            raise UploadLostError(
                f"{self.location}: {what}: the registry gave up the upload session after a broken "
                "request (its status: HTTP 404)"
            )
        confirmed = response.headers.get("Range", "").strip()
        following = self._location(response, f"{what} (upload status)", 204)
        if not confirmed:
            return following, 0
        match = _RANGE_RE.fullmatch(confirmed)
        if match is None:
            raise RegistryError(
                f"{self.location}: {what}: the upload's status gives Range {printable(confirmed)!r}"
            )
        # distribution answers 0-0 for an empty upload as for one of a byte: the empty one is
        # assumed (a byte sent again is refused with 416, and asked about again)
        last = int(match.group(1))
        return following, last + 1 if last > 0 else 0

    def _finish(self, url: str, digest: Digest, body: bytes, what: str) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        response = self._client.send("PUT", _with_query(url, digest=str(digest)), headers, body)
        try:
            if response.status == 404:  # a PUT retried after a broken one finds the session gone
                raise UploadLostError(str(self._client.error(response, f"{what} (upload)")))
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
