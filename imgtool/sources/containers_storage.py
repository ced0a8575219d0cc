"""containers-storage, the store of podman, buildah and CRI-O, read in place, read-only, without
a daemon: ``containers-storage:[DRIVER@GRAPHROOT+RUNROOT]NAME[:TAG]`` and ``…@ID`` as skopeo
spells them, and a container (``podman-container:[…]NAME-OR-ID``) as its image plus its writable
layer on top. The overlay and vfs drivers.

The store keeps each image's manifest byte for byte (``DRIVER-images/ID/manifest``) and its config
(a "big data" file named by its key), so digests are the registry's. Layers are kept unpacked:
``DRIVER-layers/layers.json`` lists them (parent, diff and compressed digests), the driver's
directory holds each one's files (``overlay/ID/diff``; ``vfs/dir/ID``, a full copy of its parent
plus its changes), and ``DRIVER-layers/ID.tar-split.gz`` the tar's own bytes. A layer with its
tar-split is rebuilt exactly, and its diff_id checked; where the manifest names the compressed
blob, which the store does not keep, that tar is served in its place (the blob digest goes
unchecked, said by ``verify``). A layer without one (a container's) is a directory walk, with
nothing to check it against.

Without a bracketed store, the graph root and the driver come from ``storage.conf`` as podman
reads it (``$CONTAINERS_STORAGE_CONF``, else ``/etc/containers/storage.conf`` for root or
``$XDG_CONFIG_HOME/containers/storage.conf``, else ``/usr/share/containers/storage.conf``).
"""

from __future__ import annotations

import base64
import functools
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from imgtool.errors import AmbiguousImageError, ImageFormatError, ImageNotFoundError, UsageError
from imgtool.image.digest import Digest
from imgtool.image.image import Unchecked
from imgtool.image.mediatypes import INDEX_TYPES
from imgtool.image.model import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, load_json, media_type_of, parse_config
from imgtool.image.platform import Platform
from imgtool.image.readable import RawStream
from imgtool.layers.dirwalk import walk_tar
from imgtool.sources.core import Resolved
from imgtool.sources.docker_archive import normalize_tag
from imgtool.sources.reference import Reference
from imgtool.sources.stores import DirStore
from imgtool.sources.tarsplit import rebuild_tar
from imgtool.sources.unpacked import Blobs, WalkedLayer, measure, memory, synthesize, walked

CONTAINERS_STORAGE: Final = "containers-storage"
PODMAN_CONTAINER: Final = "podman-container"
DRIVERS: Final = ("overlay", "vfs")
MAX_STORE_JSON: Final = 256 << 20  # images.json, layers.json, containers.json
_ID: Final = re.compile(r"[0-9a-f]{64}")
_SPEC: Final = re.compile(r"\[(?:([a-z0-9_]+)@)?([^+\]]*)(?:\+([^\]:]*))?(?::[^\]]*)?\](.*)", re.DOTALL)
_BIG_DATA_PLAIN: Final = re.compile(r"[.0-9a-z]*")
NO_TAR_SPLIT: Final = "a directory in the store, without a tar-split: no digest to check it against"
UNCOMPRESSED: Final = "the store keeps the layer unpacked: its tar is read in place of the compressed blob"


@dataclass(frozen=True, slots=True)
class StoreSpec:
    driver: str | None
    graphroot: str
    runroot: str | None
    name: str


def parse_spec(text: str, transport: str) -> StoreSpec:
    """``[DRIVER@GRAPHROOT+RUNROOT]NAME`` (the bracket optional, each part of it optional but the root)."""
    if text.startswith("["):
        match = _SPEC.fullmatch(text)
        if match is None:
            raise UsageError(f"{transport}:{text}: expected [DRIVER@GRAPHROOT+RUNROOT]NAME")
        driver, root, run, name = match.groups()
        if not root:
            raise UsageError(f"{transport}:{text}: the store specifier names no graph root")
        spec = StoreSpec(driver, root, run or None, name)
    else:
        driver, root, run = storage_defaults()
        spec = StoreSpec(driver, root, run, text)
    return spec  # a name is needed to resolve, not to list the names (completion)


def require_name(spec: StoreSpec, transport: str) -> str:
    if not spec.name:
        raise UsageError(f"{transport}: the reference names no image or container")
    return spec.name


def storage_defaults() -> tuple[str | None, str, str | None]:
    """The driver, graph root and run root ``storage.conf`` gives, as podman reads it."""
    rootless = os.geteuid() != 0
    home = os.path.expanduser("~")
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    candidates = [os.environ.get("CONTAINERS_STORAGE_CONF", "")]
    candidates.append(
        os.path.join(config_home, "containers/storage.conf") if rootless else "/etc/containers/storage.conf"
    )
    candidates.append("/usr/share/containers/storage.conf")
    section: dict[str, Any] = {}
    for path in filter(None, candidates):
        try:
            with open(path, "rb") as file:
                doc = tomllib.load(file)
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ImageFormatError(f"{path}: cannot read storage.conf: {exc}") from None
        found = doc.get("storage")
        section = found if isinstance(found, dict) else {}
        break
    root = section.get("graphroot")
    if rootless:
        root = section.get("rootless_storage_path") or os.path.join(data_home, "containers/storage")
    driver = section.get("driver")
    run = section.get("runroot")
    return (
        driver if isinstance(driver, str) and driver else None,
        root if isinstance(root, str) and root else "/var/lib/containers/storage",
        run if isinstance(run, str) and run else None,
    )


def _big_data_name(key: str) -> str:
    """The file containers/storage keeps a big-data item in (``makeBigDataBaseName``)."""
    if _BIG_DATA_PLAIN.fullmatch(key):
        return key
    name = "=" + base64.b64encode(key.encode()).decode()
    if "/" in name:
        raise ImageFormatError(f"big-data key {key!r} has no file name in the store")
    return name


@dataclass(frozen=True, slots=True)
class LayerRecord:
    id: str
    parent: str | None
    diff_digest: Digest | None
    compressed_digest: Digest | None
    diff_size: int | None


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: str
    names: tuple[str, ...]
    layer: str | None
    digests: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    id: str
    names: tuple[str, ...]
    image: str | None
    layer: str


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise ImageFormatError(f"{what}: not a 64-hex-digit ID: {value!r}")
    return value


def _optional_digest(value: object, what: str) -> Digest | None:
    return None if value in (None, "") else Digest.parse(value, what)


def _names(item: dict[str, Any], what: str) -> tuple[str, ...]:
    names = item.get("names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ImageFormatError(f"{what}: field 'names' must be a list of strings")
    return tuple(names)


class Store:
    """One graph root of containers-storage, read-only."""

    def __init__(self, spec: StoreSpec) -> None:
        self.root = os.path.realpath(spec.graphroot)  # the user's path; nothing below it is followed
        self.runroot = spec.runroot
        if not os.path.isdir(self.root):
            raise ImageNotFoundError(f"{self.root}: no such store (not a directory)")
        self.driver = self._driver(spec.driver)
        self.files = DirStore(self.root)
        self._layers: dict[str, LayerRecord] | None = None

    def _driver(self, wanted: str | None) -> str:
        if wanted is not None:
            if wanted not in DRIVERS:
                raise UsageError(f"storage driver {wanted!r} is not supported: {' or '.join(DRIVERS)}")
            if not os.path.isdir(os.path.join(self.root, f"{wanted}-layers")):
                raise ImageNotFoundError(
                    f"{self.root}: holds no {wanted} store ({wanted}-layers/ is missing)"
                )
            return wanted
        present = [d for d in DRIVERS if os.path.isdir(os.path.join(self.root, f"{d}-layers"))]
        if not present:
            raise ImageNotFoundError(
                f"{self.root}: not a containers-storage graph root (no overlay or vfs store)"
            )
        if len(present) > 1:
            raise AmbiguousImageError(
                f"{self.root}: holds stores of several drivers ({', '.join(present)}); "
                f"name one: [DRIVER@{self.root}]"
            )
        return present[0]

    def _json_list(self, relative: str, optional: bool = False) -> list[dict[str, Any]]:
        what = f"{self.root}: {relative}"
        if not self.files.exists(relative):
            if optional:
                return []
            raise ImageNotFoundError(f"{what} is missing")
        with self.files.open(relative) as raw:
            doc = load_json(raw.read(MAX_STORE_JSON + 1), what, MAX_STORE_JSON)
        if doc is None:
            return []
        if not isinstance(doc, list) or not all(isinstance(item, dict) for item in doc):
            raise ImageFormatError(f"{what}: expected a list of objects")
        return doc

    def _volatile(self, name: str) -> list[dict[str, Any]]:
        """Records the run root keeps (a volatile container's layer lives only there)."""
        if self.runroot is None:
            return []
        return Store._runroot_list(self.runroot, f"{self.driver}-{name}")

    @staticmethod
    def _runroot_list(runroot: str, relative: str) -> list[dict[str, Any]]:
        store = DirStore(runroot)
        if not store.exists(relative):
            return []
        with store.open(relative) as raw:
            doc = load_json(raw.read(MAX_STORE_JSON + 1), f"{runroot}: {relative}", MAX_STORE_JSON)
        return [item for item in doc if isinstance(item, dict)] if isinstance(doc, list) else []

    def layers(self) -> dict[str, LayerRecord]:
        if self._layers is None:
            found: dict[str, LayerRecord] = {}
            items = self._json_list(f"{self.driver}-layers/layers.json")
            items += self._volatile("layers/volatile-layers.json")
            for i, item in enumerate(items):
                what = f"{self.root}: {self.driver}-layers/layers.json[{i}]"
                layer_id = _check_id(item.get("id"), f"{what} id")
                parent = item.get("parent") or None
                size = item.get("diff-size")
                found.setdefault(
                    layer_id,
                    LayerRecord(
                        layer_id,
                        _check_id(parent, f"{what} parent") if parent is not None else None,
                        _optional_digest(item.get("diff-digest"), f"{what} diff-digest"),
                        _optional_digest(
                            item.get("compressed-diff-digest"), f"{what} compressed-diff-digest"
                        ),
                        size if isinstance(size, int) and not isinstance(size, bool) else None,
                    ),
                )
            self._layers = found
        return self._layers

    def layer(self, layer_id: str, wanted_by: str) -> LayerRecord:
        record = self.layers().get(layer_id)
        if record is None:
            raise ImageNotFoundError(
                f"{self.root}: {wanted_by} names layer {layer_id}, which layers.json does not list"
            )
        return record

    def chain(self, top: str | None, wanted_by: str) -> list[LayerRecord]:
        """The layers from the bottom up to ``top``."""
        chain: list[LayerRecord] = []
        current = top
        while current is not None:
            if len(chain) > 4096:
                raise ImageFormatError(f"{self.root}: the layers of {wanted_by} form a loop")
            record = self.layer(current, wanted_by)
            chain.append(record)
            current = record.parent
        chain.reverse()
        return chain

    def images(self) -> list[ImageRecord]:
        records = []
        for i, item in enumerate(self._json_list(f"{self.driver}-images/images.json")):
            what = f"{self.root}: {self.driver}-images/images.json[{i}]"
            image_id = _check_id(item.get("id"), f"{what} id")
            layer = item.get("layer") or None
            digests = [d for d in [item.get("digest"), *(item.get("digests") or [])] if isinstance(d, str)]
            records.append(
                ImageRecord(
                    image_id,
                    _names(item, what),
                    _check_id(layer, f"{what} layer") if layer is not None else None,
                    tuple(digests),
                )
            )
        return records

    def containers(self) -> list[ContainerRecord]:
        records = []
        items = self._json_list(f"{self.driver}-containers/containers.json", optional=True)
        items += self._volatile("containers/volatile-containers.json")
        for i, item in enumerate(items):
            what = f"{self.root}: {self.driver}-containers/containers.json[{i}]"
            image = item.get("image") or None
            records.append(
                ContainerRecord(
                    _check_id(item.get("id"), f"{what} id"),
                    _names(item, what),
                    _check_id(image, f"{what} image") if image is not None else None,
                    _check_id(item.get("layer"), f"{what} layer"),
                )
            )
        return records

    def big_data(self, image_id: str, key: str, limit: int) -> bytes:
        relative = f"{self.driver}-images/{image_id}/{_big_data_name(key)}"
        if not self.files.exists(relative):
            raise ImageNotFoundError(f"{self.root}: image {image_id[:12]} has no {key} in the store")
        with self.files.open(relative) as raw:
            data = raw.read(limit + 1)
        if len(data) > limit:
            raise ImageFormatError(f"{self.root}: {relative}: larger than the {limit}-byte limit")
        return data

    def layer_dir(self, layer_id: str) -> str:
        return f"overlay/{layer_id}/diff" if self.driver == "overlay" else f"vfs/dir/{layer_id}"

    def layer_opener(self, record: LayerRecord) -> tuple[Callable[[], RawStream], bool]:
        """How to read a layer's tar, and whether it is exact (rebuilt from its tar-split)."""
        what = f"{self.root}: layer {record.id[:12]}"
        directory = self.layer_dir(record.id)
        if not os.path.lexists(os.path.join(self.root, directory)):
            raise ImageNotFoundError(f"{what}: its directory {directory} is missing from the store")
        split = f"{self.driver}-layers/{record.id}.tar-split.gz"
        if self.files.exists(split):
            self.files.size(split)  # a regular file, not a symlink
            path = os.path.join(self.root, split)
            return (lambda: rebuild_tar(path, self.root, directory, what)), True
        if self.driver == "vfs":
            lower = self.layer_dir(record.parent) if record.parent else None
            return (lambda: walk_tar(self.root, directory, what, overlay=False, lower=lower)), False
        return (lambda: walk_tar(self.root, directory, what)), False

    def find_image(self, selector: str) -> ImageRecord:
        images = self.images()
        if selector.startswith("@"):
            return _by_id(images, selector[1:], self.root, "image")
        name, _, digest = selector.partition("@")
        wanted = {name, normalize_tag(name), f"localhost/{name}", normalize_tag(f"localhost/{name}")}
        found = [i for i in images if wanted & set(i.names) and (not digest or digest in i.digests)]
        if not found and not digest and re.fullmatch(r"[0-9a-f]{3,64}", name):
            return _by_id(images, name, self.root, "image")
        if not found:
            names = sorted({n for i in images for n in i.names})
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise ImageNotFoundError(
                f"{self.root}: no image named {selector!r}; names present: {shown or 'none'}"
            )
        return found[0]

    def find_container(self, selector: str) -> ContainerRecord:
        containers = self.containers()
        named = [c for c in containers if selector in c.names]
        if named:
            return named[0]
        return _by_id(containers, selector.removeprefix("@"), self.root, "container")


_Record = TypeVar("_Record", ImageRecord, ContainerRecord)


def _by_id(records: list[_Record], prefix: str, root: str, kind: str) -> _Record:
    if not re.fullmatch(r"[0-9a-f]{1,64}", prefix):
        raise ImageNotFoundError(f"{root}: no {kind} named {prefix!r}")
    found = [r for r in records if r.id.startswith(prefix)]
    if not found:
        raise ImageNotFoundError(f"{root}: no {kind} with ID {prefix}")
    if len(found) > 1:
        raise AmbiguousImageError(f"{root}: several {kind}s have IDs starting {prefix}")
    return found[0]


@dataclass(frozen=True, slots=True)
class _Opened:
    """An image of the store, its blobs added to ``blobs``."""

    manifest_bytes: bytes
    media_type: str
    digest: Digest
    config: dict[str, Any]
    manifest: dict[str, Any]
    unchecked: dict[Digest, Unchecked]


def _read_manifest(store: Store, image: ImageRecord) -> tuple[bytes, dict[str, Any]]:
    """The image's manifest as stored; for a list, the instance whose config is this image."""
    what = f"{store.root}: image {image.id[:12]} manifest"
    data = store.big_data(image.id, "manifest", MAX_MANIFEST_BYTES)
    doc = load_json(data, what)
    if not isinstance(doc, dict):
        raise ImageFormatError(f"{what}: expected an object")
    if media_type_of(doc) not in INDEX_TYPES and "manifests" not in doc:
        return data, doc
    for digest in image.digests:
        try:
            data = store.big_data(image.id, f"manifest-{digest}", MAX_MANIFEST_BYTES)
        except ImageNotFoundError:
            continue
        doc = load_json(data, f"{what} {digest}")
        config = doc.get("config") if isinstance(doc, dict) else None
        if isinstance(config, dict) and config.get("digest") == f"sha256:{image.id}":
            return data, doc
    raise ImageNotFoundError(f"{what}: a list, and the store keeps no manifest of this image from it")


def open_store_image(store: Store, image: ImageRecord, blobs: Blobs) -> _Opened:
    data, doc = _read_manifest(store, image)
    what = f"{store.root}: image {image.id[:12]}"
    config_desc, layers = doc.get("config"), doc.get("layers")
    if not isinstance(config_desc, dict) or not isinstance(layers, list):
        raise ImageFormatError(f"{what}: manifest has no config or layers")
    config_digest = Digest.parse(config_desc.get("digest"), f"{what} config digest")
    config_bytes = store.big_data(image.id, str(config_digest), MAX_CONFIG_BYTES)
    config_doc = load_json(config_bytes, f"{what} config", MAX_CONFIG_BYTES)
    diff_ids = parse_config(config_doc, f"{what} config").diff_ids
    blobs.add(config_digest, memory(config_bytes), len(config_bytes))
    chain = store.chain(image.layer, f"image {image.id[:12]}")
    if len(chain) != len(layers) or len(diff_ids) != len(layers):
        raise ImageFormatError(
            f"{what}: the store holds {len(chain)} layers, the manifest lists {len(layers)}, "
            f"the config {len(diff_ids)} diff_ids"
        )
    unchecked: dict[Digest, Unchecked] = {}
    for i, (record, desc, diff_id) in enumerate(zip(chain, layers, diff_ids, strict=True)):
        digest = Digest.parse(desc.get("digest") if isinstance(desc, dict) else None, f"{what} layer {i}")
        if record.diff_digest is not None and record.diff_digest != diff_id:
            raise ImageFormatError(
                f"{what}: layer {record.id[:12]} holds diff {record.diff_digest}, the config says {diff_id}"
            )
        opener, exact = store.layer_opener(record)
        if not exact:
            unchecked[digest] = walked(NO_TAR_SPLIT)
        elif digest != diff_id:
            unchecked[digest] = Unchecked(blob=UNCOMPRESSED)
        blobs.add(digest, opener, record.diff_size if digest == diff_id else None)
    return _Opened(data, media_type_of(doc) or "", Digest.of_bytes(data), config_doc, doc, unchecked)


class StorageImages(Blobs):
    """``containers-storage:``: images of a graph root."""

    transport = CONTAINERS_STORAGE

    def __init__(self, spec: StoreSpec) -> None:
        self.store = Store(spec)
        super().__init__(self.store.root)
        self.spec = spec

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        return self.resolve_name(require_name(self.spec, self.transport))

    def each_image(self) -> list[tuple[str, Callable[[], Resolved]]]:
        """Every image of the store (``imgtool images``): the name that opens it (its first name,
        else ``@ID``) and how to resolve it, in the order images.json lists them."""
        return [
            (
                image.names[0] if image.names else f"@{image.id}",
                functools.partial(self.resolve_name, f"@{image.id}"),
            )
            for image in self.store.images()
        ]

    def resolve_name(self, name: str) -> Resolved:
        image = self.store.find_image(name)
        opened = open_store_image(self.store, image, self)
        return Resolved(
            opened.manifest_bytes, opened.media_type, opened.digest, image.names, unchecked=opened.unchecked
        )

    def names(self) -> list[str]:
        return sorted({n for i in self.store.images() for n in i.names})


class StorageContainer(Blobs):
    """``podman-container:``: a container of a graph root, its writable layer on top of its image."""

    transport = PODMAN_CONTAINER

    def __init__(self, spec: StoreSpec) -> None:
        self.store = Store(spec)
        super().__init__(self.store.root)
        self.spec = spec

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        store = self.store
        container = store.find_container(require_name(self.spec, self.transport))
        label = container.names[0] if container.names else container.id[:12]
        config: dict[str, Any] | None = None
        base_layers: list[Any] = []
        unchecked: dict[Digest, Unchecked] = {}
        top: str | None = None
        if container.image is not None:
            image = _by_id(store.images(), container.image, store.root, "image")
            opened = open_store_image(store, image, self)
            config, base_layers, unchecked, top = (
                opened.config,
                opened.manifest["layers"],
                opened.unchecked,
                image.layer,
            )
        record = store.layer(container.layer, f"container {label}")
        if record.parent != top:
            raise ImageFormatError(
                f"{store.root}: container {label}: its layer's parent is not the top layer of its image"
            )
        opener, _ = store.layer_opener(record)
        layer: WalkedLayer = measure(opener, f"the writable layer of container {label}")
        self.add(layer.digest, opener, layer.size)
        unchecked[layer.digest] = walked(f"the writable layer of container {label}: {NO_TAR_SPLIT}")
        manifest_bytes, config_bytes = synthesize(config, base_layers, [layer])
        self.add(Digest.of_bytes(config_bytes), memory(config_bytes), len(config_bytes))
        return Resolved(
            manifest_bytes,
            "application/vnd.oci.image.manifest.v1+json",
            None,
            container.names,
            unchecked=unchecked,
        )

    def names(self) -> list[str]:
        return sorted({n for c in self.store.containers() for n in c.names})


def open_images(ref: Reference) -> StorageImages:
    return StorageImages(parse_spec(ref.path, CONTAINERS_STORAGE))


def open_container(ref: Reference) -> StorageContainer:
    return StorageContainer(parse_spec(ref.path, PODMAN_CONTAINER))
