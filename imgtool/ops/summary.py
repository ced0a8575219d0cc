"""What ``inspect`` reports about an image, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field

from imgtool.errors import ImgtoolError
from imgtool.image.compression import Compression, sniff
from imgtool.image.findings import compression_mismatch, fetched
from imgtool.image.image import Image, Layer
from imgtool.image.mediatypes import LAYER_TYPES
from imgtool.image.model import ImageConfig, IndexInfo


def layer_compression(layer: Layer, fetched: bool = False) -> str:
    """The compression the blob's magic bytes show ("absent" when the blob is not in the image); of a
    registry's layer (``fetched``), what its media type says: inspect fetches no layer."""
    declared = LAYER_TYPES.get(layer.media_type)
    if fetched and declared is not None:
        return declared if layer.present else "absent"
    try:
        reader = layer.open_blob()
    except ImgtoolError:
        return "absent"
    try:
        return sniff(reader.read(6)).value
    finally:
        reader.close()


def unchecked_warning(layer: Layer) -> str | None:
    """What the source cannot check of a layer (a store of unpacked layers), said where inspect warns."""
    if layer.diff_id_unchecked is not None:
        return f"{layer.what}: cannot be verified: {layer.diff_id_unchecked}"
    if layer.blob_unchecked is not None:
        return f"{layer.what}: its blob digest cannot be verified: {layer.blob_unchecked}"
    return None


@dataclass(frozen=True, slots=True)
class LayerFacts:
    """One layer as inspect shows it; ``compression`` is what its magic bytes show."""

    index: int
    digest: str
    diff_id: str
    size: int
    media_type: str
    compression: str
    created_by: str | None


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """What inspect reports about an image (the JSON schema in docs/json.md is made of it)."""

    reference: str
    transport: str
    manifest_digest: str | None
    manifest_media_type: str
    manifest_synthesized: bool
    index: IndexInfo | None
    config_digest: str
    config: ImageConfig
    tags: list[str]
    layers: list[LayerFacts]
    warnings: list[str]
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str | None = None


def _names(image: Image, key: str, warnings: list[str]) -> list[str]:
    """The names of a config set (ExposedPorts, Volumes: an object whose keys are the members), in
    the order the config has them; a value of another shape is left out, with a warning."""
    value = image.config.container.get(key)
    if value is None:
        return []
    if not isinstance(value, dict):
        warnings.append(f"config {image.config_digest}: field {key!r} is not an object; not shown")
        return []
    return list(value)


def _stop_signal(image: Image, warnings: list[str]) -> str | None:
    value = image.config.container.get("StopSignal")
    if value is None or isinstance(value, str):
        return value or None
    warnings.append(f"config {image.config_digest}: field 'StopSignal' is not a string; not shown")
    return None


def describe_image(image: Image) -> ImageSummary:
    """inspect: the image's manifest, config, platform and layers, and warnings about its layers."""
    remote = fetched(image)
    compressions = [layer_compression(layer, remote) for layer in image.layers]
    warnings = [
        message
        for layer, found in zip(image.layers, compressions, strict=True)
        if not remote
        and found != "absent"
        and (message := compression_mismatch(image, layer, Compression(found)))
    ]
    warnings += [unchecked for layer in image.layers if (unchecked := unchecked_warning(layer))]
    return ImageSummary(
        reference=image.reference,
        transport=image.transport,
        manifest_digest=str(image.manifest_digest) if image.manifest_digest else None,
        manifest_media_type=image.manifest_media_type,
        manifest_synthesized=image.manifest_synthesized,
        index=image.index,
        config_digest=str(image.config_digest),
        config=image.config,
        tags=list(image.tags),
        layers=[
            LayerFacts(
                layer.index,
                str(layer.digest),
                str(layer.diff_id),
                layer.size,
                layer.media_type,
                compression,
                layer.created_by,
            )
            for layer, compression in zip(image.layers, compressions, strict=True)
        ],
        warnings=warnings,
        exposed_ports=_names(image, "ExposedPorts", warnings),
        volumes=_names(image, "Volumes", warnings),
        stop_signal=_stop_signal(image, warnings),
    )
