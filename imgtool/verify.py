"""Check every blob of an image against its digest, collecting every finding."""

from __future__ import annotations

from dataclasses import dataclass

from imgtool.errors import DigestMismatchError, ImgtoolError, LayerError, MediaTypeError
from imgtool.image import Image
from imgtool.progress import NoProgress, Progress

OK = "ok"
MISMATCH = "mismatch"
MISSING = "missing"
BROKEN = "broken"


@dataclass(frozen=True, slots=True)
class Finding:
    blob: str
    kind: str
    expected: str
    status: str
    detail: str = ""


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
        findings.extend(_verify_layer(image, layer.index, progress, max_size))
    progress.finish()
    return findings


def _verify_layer(image: Image, index: int, progress: Progress, max_size: int | None) -> list[Finding]:
    layer = image.layers[index]
    blob = f"layer {index}"
    blob_finding = Finding(blob, "blob", str(layer.digest), OK)
    diff_finding = Finding(blob, "diff_id", str(layer.diff_id), OK)
    try:
        with layer.open(max_size) as stream:
            stream.on_compressed_bytes = progress.advance
            stream.finish()
    except MediaTypeError as exc:
        return [Finding(blob, "blob", str(layer.digest), MISSING, str(exc))]
    except DigestMismatchError as exc:
        detail = exc.actual or str(exc)
        if exc.check == "diff_id":
            return [blob_finding, Finding(blob, "diff_id", str(layer.diff_id), MISMATCH, detail)]
        return [Finding(blob, "blob", str(layer.digest), MISMATCH, detail), diff_finding]
    except (LayerError, ImgtoolError) as exc:
        return [Finding(blob, "blob", str(layer.digest), BROKEN, str(exc))]
    return [blob_finding, diff_finding]


def all_ok(findings: list[Finding]) -> bool:
    return all(f.status == OK for f in findings)
