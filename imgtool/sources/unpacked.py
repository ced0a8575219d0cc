"""What the sources of unpacked layers share (an engine's store, a container, a stack of
directories): blobs served by digest from openers, and the image synthesized where the source
keeps no manifest or config for what it shows (a container's writable layer, plain directories).

A directory walked has no digest stored anywhere: imgtool hashes the walk once, when the image
opens, so that the synthesized config names it by a true content address of what is read; the
layer is still marked unchecked (nothing the source holds says what it should be).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from imgtool.errors import ImageNotFoundError
from imgtool.image.compression import CHUNK
from imgtool.image.digest import Digest
from imgtool.image.image import Unchecked
from imgtool.image.mediatypes import OCI_CONFIG, OCI_MANIFEST
from imgtool.image.platform import Platform
from imgtool.image.readable import RawStream
from imgtool.layers.dirwalk import ChunkStream

OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
Opener = Callable[[], RawStream]


def walked(reason: str) -> Unchecked:
    return Unchecked(blob=reason, diff_id=reason)


@dataclass(frozen=True, slots=True)
class WalkedLayer:
    """A directory read as a layer: its digest and size as hashed when the image opened."""

    digest: Digest
    size: int
    created_by: str
    opener: Opener


def measure(opener: Opener, created_by: str) -> WalkedLayer:
    hasher = hashlib.sha256()
    size = 0
    with opener() as stream:
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return WalkedLayer(Digest("sha256", hasher.hexdigest()), size, created_by, opener)


def synthesize(
    base_config: dict[str, Any] | None, base_layers: list[Any], added: list[WalkedLayer]
) -> tuple[bytes, bytes]:
    """An OCI manifest and config: the base image's (none: an empty one for this host's platform)
    with the walked layers on top, each with a history entry saying what it is."""
    config = dict(base_config) if base_config is not None else _empty_config()
    rootfs = dict(config.get("rootfs") or {"type": "layers"})
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), *(str(layer.digest) for layer in added)]
    config["rootfs"] = rootfs
    config["history"] = [
        *(config.get("history") or []),
        *({"created_by": layer.created_by} for layer in added),
    ]
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    layers = [
        *base_layers,
        *({"mediaType": OCI_LAYER, "digest": str(x.digest), "size": x.size} for x in added),
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": str(Digest.of_bytes(config_bytes)),
            "size": len(config_bytes),
        },
        "layers": layers,
    }
    return json.dumps(manifest, separators=(",", ":")).encode(), config_bytes


def _empty_config() -> dict[str, Any]:
    host = Platform.host()
    config: dict[str, Any] = {"architecture": host.architecture, "os": host.os}
    if host.variant:
        config["variant"] = host.variant
    return config


def memory(data: bytes) -> Opener:
    return lambda: ChunkStream(iter((data,)))


class Blobs:
    """Blobs by digest, each from an opener: the part of the core these sources share."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._openers: dict[Digest, tuple[Opener, int | None]] = {}

    def add(self, digest: Digest, opener: Opener, size: int | None) -> None:
        self._openers.setdefault(digest, (opener, size))

    def open_blob(self, digest: Digest) -> RawStream:
        found = self._openers.get(digest)
        if found is None:
            raise ImageNotFoundError(f"{self.location}: blob {digest} is not in the store")
        return found[0]()

    def has_blob(self, digest: Digest) -> bool:
        return digest in self._openers

    def blob_size(self, digest: Digest) -> int | None:
        found = self._openers.get(digest)
        return found[1] if found is not None else None

    def close(self) -> None:
        pass
