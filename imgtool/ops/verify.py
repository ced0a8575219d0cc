"""Check every blob of an image against its digest, collecting every finding.

Each layer is read once: its blob is hashed, decompressed, the result hashed again, and its tar
headers walked for the warnings every other command gives about it (the entries themselves are
judged by the commands that apply them). The blob digest and the diff_id are
checked independently, so a damaged layer fails both checks whenever both are wrong (an
uncompressed layer's blob and tar are the same bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

from imgtool.errors import DigestMismatchError, ImgtoolError, MediaTypeError
from imgtool.image.compression import CHUNK, open_decompressed
from imgtool.image.digest import VerifyingReader
from imgtool.image.findings import layer_warnings
from imgtool.image.image import Image, Layer
from imgtool.image.readable import Readable
from imgtool.layers.tarstream import LayerReader
from imgtool.progress import NoProgress, Progress

OK = "ok"
MISMATCH = "mismatch"
MISSING = "missing"
BROKEN = "broken"
WARNING = "warning"  # the digests match, but the layer is not quite what the image says
NOT_CHECKED = "not checked"  # the blob could not be decompressed to its end
UNVERIFIABLE = "unverifiable"  # the source holds nothing to check it against (a store of unpacked layers)


@dataclass(frozen=True, slots=True)
class Finding:
    blob: str
    kind: str
    expected: str
    status: str
    detail: str = ""


class _Checked:
    """A verifying stream whose verdict at EOF is kept instead of raised: the reading goes on."""

    def __init__(self, reader: VerifyingReader, progress: Progress | None = None) -> None:
        self._reader = reader
        self._progress = progress
        self.status = OK
        self.detail = ""
        self.at_end = False

    def read(self, n: int = CHUNK) -> bytes:
        if self.at_end:
            return b""
        before = self._reader.bytes_read
        try:
            data = self._reader.read(n)
        except DigestMismatchError as exc:
            self.status, self.detail, data = MISMATCH, exc.actual or str(exc), b""
        except ImgtoolError as exc:  # the blob is shorter than its descriptor says
            self.status, self.detail, data = BROKEN, str(exc), b""
        if self._progress is not None:
            self._progress.advance(self._reader.bytes_read - before)
        if not data:
            self.at_end = True
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def verify_image(
    image: Image, progress: Progress | None = None, max_size: int | None = None
) -> list[Finding]:
    """Manifest and config were verified when the image opened; each layer is read in full here."""
    progress = progress or NoProgress()
    findings: list[Finding] = []
    if image.manifest_digest is not None and not image.manifest_synthesized:
        findings.append(Finding("manifest", image.manifest_media_type, str(image.manifest_digest), OK))
    findings.append(Finding("config", image.manifest.config.media_type, str(image.config_digest), OK))
    progress.start("verifying", sum(layer.size for layer in image.layers))
    for layer in image.layers:
        findings.extend(_verify_layer(image, layer, progress, max_size))
    progress.finish()
    return findings


def _verify_layer(image: Image, layer: Layer, progress: Progress, max_size: int | None) -> list[Finding]:
    name = f"layer {layer.index}"
    try:
        raw = layer.open_blob()
    except MediaTypeError as exc:
        return [Finding(name, "blob", str(layer.digest), MISSING, str(exc))]
    blob = _Checked(raw, progress)
    warnings: list[str] = []
    try:
        try:
            compression, decompressed = open_decompressed(blob, f"{layer.what} blob")
        except ImgtoolError as exc:
            return [Finding(name, "blob", str(layer.digest), BROKEN, str(exc))]
        labelled = layer_warnings(image, layer, compression)
        stream = _Guarded(decompressed, layer, max_size)
        checked = layer.diff_id_unchecked is None
        what = f"{layer.what} diff_id"
        tar = _Checked(VerifyingReader(stream, layer.diff_id, None, what, "diff_id", check_digest=checked))
        _read_tar(layer, tar, warnings)
        blob.drain()
    finally:
        raw.close()
    _unverifiable(blob, layer.blob_unchecked)
    _unverifiable(tar, layer.diff_id_unchecked)
    blob_row = Finding(name, "blob", str(layer.digest), blob.status, blob.detail)
    if stream.error is not None:  # not decompressed to its end: the diff_id cannot be known
        if blob.status != OK:
            return [blob_row, Finding(name, "diff_id", str(layer.diff_id), NOT_CHECKED, stream.error)]
        return [Finding(name, "blob", str(layer.digest), BROKEN, stream.error)]
    findings = [blob_row, Finding(name, "diff_id", str(layer.diff_id), tar.status, tar.detail)]
    findings.extend(Finding(name, "media type", layer.media_type, WARNING, message) for message in labelled)
    findings.extend(Finding(name, "tar", "", WARNING, message) for message in warnings)
    return findings


def _unverifiable(checked: _Checked, reason: str | None) -> None:
    """A stream read to its end with nothing to check it against: said so, with the reason."""
    if reason is not None and checked.status == OK:
        checked.status, checked.detail = UNVERIFIABLE, reason


def _read_tar(layer: Layer, tar: _Checked, warnings: list[str]) -> None:
    """Walk the tar's headers for the warnings every command gives, then read the stream to its end.

    Whether the entries are sound and safe to apply is for the commands that apply them
    (flatten, ls, which-layer...): an entry the reader refuses ends the walk, not the check.
    """
    try:
        reader = LayerReader(tar, layer.what, warnings.append)
        for _entry in reader:
            pass
        reader.drain()
    except ImgtoolError:
        pass
    tar.drain()


class _Guarded:
    """The decompressed stream, whose failure (corrupt data, more than ``max_size`` bytes) is kept
    and ends it, so that the blob is still read to its end and its digest checked."""

    def __init__(self, raw: Readable, layer: Layer, max_size: int | None) -> None:
        self._raw = raw
        self._layer = layer
        self._max_size = max_size
        self._count = 0
        self.error: str | None = None

    def read(self, n: int = CHUNK) -> bytes:
        if self.error is not None:
            return b""
        try:
            data = self._raw.read(n)
        except ImgtoolError as exc:
            self.error = str(exc)
            return b""
        self._count += len(data)
        if self._max_size is not None and self._count > self._max_size:
            self.error = f"{self._layer.what}: uncompressed size exceeds the limit of {self._max_size} bytes"
            return b""
        return data


def all_ok(findings: list[Finding]) -> bool:
    return all(f.status in (OK, WARNING, UNVERIFIABLE) for f in findings)
