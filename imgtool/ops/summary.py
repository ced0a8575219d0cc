"""What ``inspect`` reports about an image, as plain data."""

from __future__ import annotations

from typing import Any

from imgtool.errors import ImgtoolError
from imgtool.image.compression import Compression, sniff
from imgtool.image.findings import compression_mismatch
from imgtool.image.image import Image, Layer
from imgtool.image.model import IndexInfo


def layer_compression(layer: Layer) -> str:
    """The compression the blob's magic bytes show ("absent" when the blob is not in the image)."""
    try:
        reader = layer.open_blob()
    except ImgtoolError:
        return "absent"
    try:
        return sniff(reader.read(6)).value
    finally:
        reader.close()


def describe_index(index: IndexInfo | None) -> dict[str, Any] | None:
    """The image index the manifest was chosen from, every entry listed (schema in docs/json.md)."""
    if index is None:
        return None
    return {
        "digest": str(index.digest) if index.digest is not None else None,
        "media_type": index.media_type,
        "manifests": [
            {
                "digest": str(entry.digest),
                "media_type": entry.media_type,
                "size": entry.size,
                "platform": str(entry.platform) if entry.platform else None,
                "chosen": entry.chosen,
                "attestation": entry.attestation,
            }
            for entry in index.entries
        ],
    }


def describe_image(image: Image) -> dict[str, Any]:
    """The inspect document: one JSON-ready dict (schema in docs/json.md)."""
    config = image.config
    compressions = [layer_compression(layer) for layer in image.layers]
    warnings = [
        message
        for layer, found in zip(image.layers, compressions, strict=True)
        if found != "absent" and (message := compression_mismatch(image, layer, Compression(found)))
    ]
    return {
        "reference": image.reference,
        "transport": image.transport,
        "manifest_digest": str(image.manifest_digest) if image.manifest_digest else None,
        "manifest_media_type": image.manifest_media_type,
        "manifest_synthesized": image.manifest_synthesized,
        "index": describe_index(image.index),
        "config_digest": str(image.config_digest),
        "platform": str(image.platform),
        "created": image.config.created,
        "tags": list(image.tags),
        "entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
        "cmd": list(config.cmd) if config.cmd is not None else None,
        "env": list(config.env),
        "working_dir": config.working_dir,
        "user": config.user,
        "labels": dict(config.labels),
        "layers": [
            {
                "index": layer.index,
                "digest": str(layer.digest),
                "diff_id": str(layer.diff_id),
                "size": layer.size,
                "media_type": layer.media_type,
                "compression": compression,
                "created_by": layer.created_by,
            }
            for layer, compression in zip(image.layers, compressions, strict=True)
        ],
        "history": [
            {
                "created": h.created,
                "created_by": h.created_by,
                "comment": h.comment,
                "empty_layer": h.empty_layer,
            }
            for h in image.config.history
        ],
        "warnings": warnings,
    }
