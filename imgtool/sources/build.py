"""The part every source shares: from manifest bytes to an Image with verified config and layers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from imgtool.errors import ImageFormatError, ImageNotFoundError
from imgtool.image.digest import Digest, read_verified
from imgtool.image.image import Image, Layer
from imgtool.image.model import (
    MAX_CONFIG_BYTES,
    Descriptor,
    IndexInfo,
    load_json,
    parse_config,
    parse_manifest,
)
from imgtool.image.readable import BlobStore, RawStream
from imgtool.sources.stores import blob_path


def build_image(
    *,
    store: BlobStore,
    reference: str,
    transport: str,
    manifest_digest: Digest | None,
    manifest_media_type: str,
    manifest_bytes: bytes,
    tags: list[str],
    config_bytes: bytes | None = None,
    layer_paths: Sequence[str] | None = None,
    layer_blobs: Sequence[Descriptor] | None = None,
    manifest_synthesized: bool = False,
    index: IndexInfo | None = None,
    derive_manifest: Callable[[], bytes] | None = None,
) -> Image:
    """``config_bytes`` and ``layer_paths`` are given by sources that do not store blobs by digest,
    ``layer_blobs`` by those whose manifest does not describe the layer files as stored (skopeo's
    manifest for a docker-save archive names each layer by its diff_id). With ``derive_manifest``,
    ``manifest_bytes`` is provisional (right in its config and number of layers) and the image's
    manifest is what ``derive_manifest`` returns, the first time it is asked for.
    """
    what = f"{store.location}: manifest"
    manifest = parse_manifest(load_json(manifest_bytes, what), what)
    if config_bytes is None:
        config_path = blob_path(manifest.config.digest)
        if not store.exists(config_path):
            raise ImageNotFoundError(f"{store.location}: config blob {manifest.config.digest} is missing")
        with store.open(config_path) as raw:
            config_bytes = read_verified(
                raw,
                manifest.config.digest,
                manifest.config.size,
                f"config {manifest.config.digest}",
                MAX_CONFIG_BYTES,
            )
    config_what = f"{store.location}: config {manifest.config.digest}"
    config = parse_config(load_json(config_bytes, config_what, MAX_CONFIG_BYTES), config_what)
    if len(manifest.layers) != len(config.diff_ids):
        raise ImageFormatError(
            f"{store.location}: manifest lists {len(manifest.layers)} layers "
            f"but the config has {len(config.diff_ids)} diff_ids"
        )
    history = config.layer_history(len(manifest.layers))
    layers = []
    for i, desc in enumerate(manifest.layers if layer_blobs is None else layer_blobs):
        path = layer_paths[i] if layer_paths is not None else blob_path(desc.digest)
        layers.append(
            Layer(
                index=i,
                media_type=desc.media_type,
                digest=desc.digest,
                size=desc.size,
                diff_id=config.diff_ids[i],
                history=history[i],
                urls=desc.urls,
                _opener=_opener(store, path) if store.exists(path) else None,
            )
        )
    return Image(
        reference=reference,
        transport=transport,
        stored_manifest_digest=manifest_digest,
        manifest_media_type=manifest_media_type,
        manifest=manifest,
        stored_manifest_bytes=manifest_bytes,
        config_digest=manifest.config.digest,
        config=config,
        config_bytes=config_bytes,
        tags=tags,
        layers=layers,
        store=store,
        manifest_synthesized=manifest_synthesized,
        index=index,
        derive_manifest=derive_manifest,
    )


def _opener(store: BlobStore, path: str) -> Callable[[], RawStream]:
    return lambda: store.open(path)
