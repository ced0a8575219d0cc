"""The part every source shares: from the core (a resolved manifest, blobs by digest) to an Image
with verified config and layers."""

from __future__ import annotations

from collections.abc import Callable

from imgtool.errors import ImageFormatError, ImageNotFoundError
from imgtool.image.digest import Digest, read_verified
from imgtool.image.image import Image, Layer
from imgtool.image.model import MAX_CONFIG_BYTES, load_json, parse_config, parse_manifest
from imgtool.image.platform import Platform
from imgtool.image.readable import RawStream
from imgtool.sources.core import ImageSource


def build_image(
    source: ImageSource, *, reference: str, selector: str | None, platform: Platform | None
) -> Image:
    """The image ``selector`` names in ``source``: everything but the choice of manifest and the
    blobs themselves is derived here."""
    resolved = source.resolve(selector, platform)
    what = f"{source.location}: manifest"
    manifest = parse_manifest(load_json(resolved.manifest_bytes, what), what)
    config_digest = manifest.config.digest
    if not source.has_blob(config_digest):
        raise ImageNotFoundError(f"{source.location}: config blob {config_digest} is missing")
    with source.open_blob(config_digest) as raw:
        config_bytes = read_verified(
            raw, config_digest, manifest.config.size, f"config {config_digest}", MAX_CONFIG_BYTES
        )
    config_what = f"{source.location}: config {config_digest}"
    config = parse_config(load_json(config_bytes, config_what, MAX_CONFIG_BYTES), config_what)
    if len(manifest.layers) != len(config.diff_ids):
        raise ImageFormatError(
            f"{source.location}: manifest lists {len(manifest.layers)} layers "
            f"but the config has {len(config.diff_ids)} diff_ids"
        )
    history = config.layer_history(len(manifest.layers))
    layers = [
        Layer(
            index=i,
            media_type=desc.media_type,
            digest=desc.digest,
            size=desc.size,
            diff_id=config.diff_ids[i],
            history=history[i],
            urls=desc.urls,
            _opener=_opener(source, desc.digest) if source.has_blob(desc.digest) else None,
            unchecked=resolved.unchecked.get(desc.digest),
        )
        for i, desc in enumerate(manifest.layers)
    ]
    synthesized = resolved.digest is None
    return Image(
        reference=reference,
        transport=source.transport,
        stored_manifest_digest=Digest.of_bytes(resolved.manifest_bytes) if synthesized else resolved.digest,
        manifest_media_type=resolved.media_type,
        manifest=manifest,
        stored_manifest_bytes=resolved.manifest_bytes,
        config_digest=config_digest,
        config=config,
        config_bytes=config_bytes,
        tags=list(resolved.tags),
        layers=layers,
        store=source,
        manifest_synthesized=synthesized,
        index=resolved.index,
        derive_manifest=resolved.derive_manifest,
        index_bytes=resolved.index_bytes,
    )


def _opener(source: ImageSource, digest: Digest) -> Callable[[], RawStream]:
    return lambda: source.open_blob(digest)
