"""Docker's data root read in place, read-only, without the daemon: ``docker-storage:[ROOT]NAME[:TAG]``,
``docker-storage:[ROOT]@IMAGE-ID`` and a container, ``docker-container:[ROOT]NAME-OR-ID``. The
overlay2 and vfs drivers; ROOT defaults to ``/var/lib/docker`` (``[DRIVER@ROOT]`` names the driver
where the root holds several).

Names come from ``image/DRIVER/repositories.json``, the config from
``image/DRIVER/imagedb/content/sha256/ID``, and each layer, found by its chain ID, from
``image/DRIVER/layerdb/sha256/CHAIN-ID/`` (``diff``, ``cache-id``, ``tar-split.json.gz``) and the
driver's directory (``overlay2/CACHE-ID/diff``, ``vfs/dir/CACHE-ID``). A layer is rebuilt from its
tar-split exactly, so its diff_id is checked as any blob's. The store keeps no manifest: imgtool
synthesizes the one skopeo gives a ``docker save`` of the image (as for a docker-save archive
without one), so the two have the same digest, and says so.

A container is its image, then Docker's ``-init`` layer (the mount points and files Docker puts
in every container: ``/etc/hosts``, ``/etc/resolv.conf``, ``/.dockerenv``...; ``docker export``
includes them, ``docker diff`` does not show them), then its writable layer, from
``image/DRIVER/layerdb/mounts/CONTAINER-ID/{init-id,mount-id}``; both are directory walks.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from imgtool.errors import AmbiguousImageError, ImageFormatError, ImageNotFoundError, UsageError
from imgtool.image.digest import Digest
from imgtool.image.image import Unchecked
from imgtool.image.mediatypes import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST
from imgtool.image.model import MAX_CONFIG_BYTES, MAX_SMALL_JSON_BYTES, load_json, parse_config
from imgtool.image.platform import Platform
from imgtool.layers.dirwalk import walk_tar
from imgtool.sources.core import Resolved
from imgtool.sources.docker_archive import normalize_tag
from imgtool.sources.reference import Reference
from imgtool.sources.stores import DirStore
from imgtool.sources.tarsplit import rebuild_tar, tar_size
from imgtool.sources.unpacked import Blobs, Opener, WalkedLayer, measure, memory, synthesize, walked

DOCKER_STORAGE: Final = "docker-storage"
DOCKER_CONTAINER: Final = "docker-container"
DRIVERS: Final = ("overlay2", "vfs")
DEFAULT_ROOT: Final = "/var/lib/docker"
MAX_REPOSITORIES: Final = 64 << 20
_HEX: Final = re.compile(r"[0-9a-f]{64}")
_CACHE_ID: Final = re.compile(r"[0-9a-f]{64}(?:-init)?")
_SPEC: Final = re.compile(r"\[(?:([a-z0-9_]+)@)?([^\]]+)\](.*)", re.DOTALL)
NO_TAR_SPLIT: Final = "a directory in the store, without a tar-split: no digest to check it against"


@dataclass(frozen=True, slots=True)
class DockerSpec:
    driver: str | None
    root: str
    name: str


def parse_spec(text: str, transport: str) -> DockerSpec:
    if text.startswith("["):
        match = _SPEC.fullmatch(text)
        if match is None:
            raise UsageError(f"{transport}:{text}: expected [ROOT]NAME or [DRIVER@ROOT]NAME")
        spec = DockerSpec(match.group(1), match.group(2), match.group(3))
    else:
        spec = DockerSpec(None, DEFAULT_ROOT, text)
    return spec  # a name is needed to resolve, not to list the names (completion)


def require_name(spec: DockerSpec, transport: str) -> str:
    if not spec.name:
        raise UsageError(f"{transport}: the reference names no image or container")
    return spec.name


class DockerStore:
    """One data root of dockerd, read-only."""

    def __init__(self, spec: DockerSpec) -> None:
        self.root = os.path.realpath(spec.root)  # the user's path; nothing below it is followed
        if not os.path.isdir(self.root):
            raise ImageNotFoundError(f"{self.root}: no such Docker data root (not a directory)")
        self.files = DirStore(self.root)
        present = [d for d in DRIVERS if os.path.isdir(os.path.join(self.root, "image", d))]
        if spec.driver is not None:
            if spec.driver not in DRIVERS:
                raise UsageError(f"storage driver {spec.driver!r} is not supported: {' or '.join(DRIVERS)}")
            if spec.driver not in present:
                raise ImageNotFoundError(f"{self.root}: holds no {spec.driver} images (image/{spec.driver}/)")
            self.driver = spec.driver
        elif not present:
            raise ImageNotFoundError(f"{self.root}: not a Docker data root (no image/overlay2 or image/vfs)")
        elif len(present) > 1:
            raise AmbiguousImageError(
                f"{self.root}: holds images of several drivers ({', '.join(present)}); "
                f"name one: [DRIVER@{self.root}]"
            )
        else:
            self.driver = present[0]
        self.base = f"image/{self.driver}"

    def _small(self, relative: str, limit: int = MAX_SMALL_JSON_BYTES) -> bytes:
        if not self.files.exists(relative):
            raise ImageNotFoundError(f"{self.root}: {relative} is missing")
        with self.files.open(relative) as raw:
            data = raw.read(limit + 1)
        if len(data) > limit:
            raise ImageFormatError(f"{self.root}: {relative}: larger than the {limit}-byte limit")
        return data

    def _text(self, relative: str) -> str:
        return self._small(relative).decode("ascii", "replace").strip()

    def repositories(self) -> dict[str, str]:
        """Every name (``repo:tag``, ``repo@digest``) and the image ID it names."""
        relative = f"{self.base}/repositories.json"
        if not self.files.exists(relative):
            return {}
        doc = load_json(self._small(relative, MAX_REPOSITORIES), f"{self.root}: {relative}", MAX_REPOSITORIES)
        repos = doc.get("Repositories") if isinstance(doc, dict) else None
        names: dict[str, str] = {}
        for refs in (repos or {}).values() if isinstance(repos, dict) else ():
            if isinstance(refs, dict):
                names.update({k: v for k, v in refs.items() if isinstance(k, str) and isinstance(v, str)})
        return names

    def image_ids(self) -> list[str]:
        directory = os.path.join(self.root, self.base, "imagedb/content/sha256")
        try:
            return sorted(n for n in os.listdir(directory) if _HEX.fullmatch(n))
        except OSError:
            return []

    def find_image(self, selector: str) -> tuple[str, tuple[str, ...]]:
        """The image ID a name or ``@ID`` (a unique prefix) names, and its names."""
        names = self.repositories()
        if selector.startswith("@") or (re.fullmatch(r"[0-9a-f]{3,64}", selector) and selector not in names):
            image_id = _unique(
                self.image_ids(), selector.removeprefix("@").removeprefix("sha256:"), self.root, "image"
            )
        else:
            wanted = normalize_tag(selector)
            found = [v for k, v in names.items() if k == selector or normalize_tag(k) == wanted]
            if not found:
                shown = ", ".join(sorted(names)[:5]) + (
                    f" and {len(names) - 5} more" if len(names) > 5 else ""
                )
                raise ImageNotFoundError(
                    f"{self.root}: no image named {selector!r}; names present: {shown or 'none'}"
                )
            image_id = Digest.parse(found[0], f"{self.root}: repositories.json {selector}").hex
        return image_id, tuple(
            sorted(k for k, v in names.items() if v == f"sha256:{image_id}" and "@" not in k)
        )

    def config(self, image_id: str) -> bytes:
        return self._small(f"{self.base}/imagedb/content/sha256/{image_id}", MAX_CONFIG_BYTES)

    def layer_dir(self, cache_id: str) -> str:
        return f"overlay2/{cache_id}/diff" if self.driver == "overlay2" else f"vfs/dir/{cache_id}"

    def walker(self, cache_id: str, parent_cache_id: str | None, what: str) -> Opener:
        directory = self.layer_dir(cache_id)
        if not os.path.lexists(os.path.join(self.root, directory)):
            raise ImageNotFoundError(f"{what}: its directory {directory} is missing from the store")
        if self.driver == "vfs":
            lower = self.layer_dir(parent_cache_id) if parent_cache_id else None
            return lambda: walk_tar(self.root, directory, what, overlay=False, lower=lower)
        return lambda: walk_tar(self.root, directory, what)


def _unique(ids: list[str], prefix: str, root: str, kind: str) -> str:
    found = [i for i in ids if i.startswith(prefix)] if re.fullmatch(r"[0-9a-f]{1,64}", prefix) else []
    if not found:
        raise ImageNotFoundError(f"{root}: no {kind} with ID {prefix!r}")
    if len(found) > 1:
        raise AmbiguousImageError(f"{root}: several {kind}s have IDs starting {prefix}")
    return found[0]


@dataclass(frozen=True, slots=True)
class _Image:
    config: dict[str, Any]
    config_bytes: bytes
    layers: list[dict[str, Any]]  # skopeo's descriptors of the docker-save layer files
    unchecked: dict[Digest, Unchecked]
    top_cache_id: str | None


def _chain_ids(diff_ids: Sequence[Digest]) -> list[str]:
    """Docker's layer chain IDs: the first layer's diff_id, then sha256("PARENT-CHAIN DIFF-ID")."""
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(Digest.of_bytes(f"sha256:{chain[-1]} {diff_id}".encode()).hex if chain else diff_id.hex)
    return chain


def _open_image(store: DockerStore, image_id: str, blobs: Blobs) -> _Image:
    what = f"{store.root}: image {image_id[:12]}"
    config_bytes = store.config(image_id)
    config = load_json(config_bytes, f"{what} config", MAX_CONFIG_BYTES)
    diff_ids = parse_config(config, f"{what} config").diff_ids
    blobs.add(Digest("sha256", image_id), memory(config_bytes), len(config_bytes))
    layers: list[dict[str, Any]] = []
    unchecked: dict[Digest, Unchecked] = {}
    cache_id: str | None = None
    for chain_id, diff_id in zip(_chain_ids(diff_ids), diff_ids, strict=True):
        base = f"{store.base}/layerdb/sha256/{chain_id}"
        label = f"{store.root}: layer {diff_id.short}"
        if not store.files.exists(base):
            raise ImageNotFoundError(f"{what}: its layer {diff_id} (chain {chain_id[:12]}) is not in layerdb")
        stored = store._text(f"{base}/diff")
        if stored != str(diff_id):
            raise ImageFormatError(
                f"{what}: layerdb {chain_id[:12]} holds diff {stored}, the config says {diff_id}"
            )
        parent, cache_id = cache_id, store._text(f"{base}/cache-id")
        if not _CACHE_ID.fullmatch(cache_id):
            raise ImageFormatError(f"{label}: cache-id {cache_id!r} is not a layer ID")
        split = f"{base}/tar-split.json.gz"
        if store.files.exists(split):
            store.files.size(split)  # a regular file, not a symlink
            directory = store.layer_dir(cache_id)
            path = os.path.join(store.root, split)
            opener = _rebuilder(path, store.root, directory, label)
            if not os.path.lexists(os.path.join(store.root, directory)):
                raise ImageNotFoundError(f"{label}: its directory {directory} is missing from the store")
            size = tar_size(path, label)
        else:
            opener = store.walker(cache_id, parent, label)
            unchecked[diff_id] = walked(NO_TAR_SPLIT)
            size = measure(opener, "").size
        blobs.add(diff_id, opener, size)
        layers.append({"mediaType": DOCKER_LAYER_GZIP, "size": size, "digest": str(diff_id)})
    return _Image(config, config_bytes, layers, unchecked, cache_id)


def _rebuilder(split: str, root: str, directory: str, what: str) -> Opener:
    return lambda: rebuild_tar(split, root, directory, what)


class DockerImages(Blobs):
    """``docker-storage:``: an image of a Docker data root."""

    transport = DOCKER_STORAGE

    def __init__(self, spec: DockerSpec) -> None:
        self.store = DockerStore(spec)
        super().__init__(self.store.root)
        self.spec = spec

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        return self.resolve_name(require_name(self.spec, self.transport))

    def each_image(self) -> list[tuple[str, Callable[[], Resolved]]]:
        """Every image of the store (``imgtool images``): the name that opens it (its first tag,
        else ``@ID``) and how to resolve it, in the order of their IDs."""
        tagged: dict[str, str] = {}
        for name, target in sorted(self.store.repositories().items()):
            if "@" not in name:
                tagged.setdefault(target.removeprefix("sha256:"), name)
        return [
            (tagged.get(image_id, f"@{image_id}"), functools.partial(self.resolve_name, f"@{image_id}"))
            for image_id in self.store.image_ids()
        ]

    def resolve_name(self, name: str) -> Resolved:
        image_id, names = self.store.find_image(name)
        image = _open_image(self.store, image_id, self)
        manifest = {  # skopeo's manifest of a docker save of this image, byte for byte
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": len(image.config_bytes),
                "digest": f"sha256:{image_id}",
            },
            "layers": image.layers,
        }
        data = json.dumps(manifest, separators=(",", ":")).encode()
        return Resolved(data, DOCKER_MANIFEST, None, names, unchecked=image.unchecked)

    def names(self) -> list[str]:
        return sorted(k for k in self.store.repositories() if "@" not in k)


class DockerContainer(Blobs):
    """``docker-container:``: a container, its init and writable layers on top of its image."""

    transport = DOCKER_CONTAINER

    def __init__(self, spec: DockerSpec) -> None:
        self.store = DockerStore(spec)
        super().__init__(self.store.root)
        self.spec = spec

    def _containers(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        directory = os.path.join(self.store.root, "containers")
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if not _HEX.fullmatch(name) or not self.store.files.exists(f"containers/{name}/config.v2.json"):
                continue
            relative = f"containers/{name}/config.v2.json"
            doc = load_json(self.store._small(relative, MAX_CONFIG_BYTES), f"{self.store.root}: {relative}")
            if isinstance(doc, dict):
                found[name] = doc
        return found

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        store = self.store
        containers = self._containers()
        wanted = require_name(self.spec, self.transport).removeprefix("/")
        named = [i for i, doc in containers.items() if str(doc.get("Name", "")).removeprefix("/") == wanted]
        container_id = named[0] if named else _unique(list(containers), wanted, store.root, "container")
        doc = containers[container_id]
        label = str(doc.get("Name") or container_id[:12]).removeprefix("/")
        if doc.get("Driver", store.driver) != store.driver:
            raise ImageFormatError(f"{store.root}: container {label} uses the {doc.get('Driver')} driver")
        image_id = Digest.parse(doc.get("Image"), f"{store.root}: container {label} Image").hex
        image = _open_image(store, image_id, self)
        mounts = f"{store.base}/layerdb/mounts/{container_id}"
        init_id, mount_id = store._text(f"{mounts}/init-id"), store._text(f"{mounts}/mount-id")
        for value in (init_id, mount_id):
            if not _CACHE_ID.fullmatch(value):
                raise ImageFormatError(f"{store.root}: container {label}: {value!r} is not a layer ID")
        added: list[WalkedLayer] = []
        unchecked = dict(image.unchecked)
        lower = image.top_cache_id
        for cache_id, created_by in (
            (init_id, f"Docker's init layer of container {label}"),
            (mount_id, f"the writable layer of container {label}"),
        ):
            opener = store.walker(cache_id, lower, f"{store.root}: {created_by}")
            layer = measure(opener, created_by)
            self.add(layer.digest, opener, layer.size)
            unchecked[layer.digest] = walked(f"{created_by}: {NO_TAR_SPLIT}")
            added.append(layer)
            lower = cache_id
        manifest, config = synthesize(image.config, image.layers, added)
        self.add(Digest.of_bytes(config), memory(config), len(config))
        return Resolved(manifest, "application/vnd.oci.image.manifest.v1+json", None, (), unchecked=unchecked)

    def names(self) -> list[str]:
        return sorted(str(doc.get("Name", "")).removeprefix("/") for doc in self._containers().values())


def open_images(ref: Reference) -> DockerImages:
    return DockerImages(parse_spec(ref.path, DOCKER_STORAGE))


def open_container(ref: Reference) -> DockerContainer:
    return DockerContainer(parse_spec(ref.path, DOCKER_CONTAINER))
