"""The image's JSON documents as typed, validated values (no I/O here).

Each ``parse_*`` function takes decoded JSON and either returns a value whose
fields have the types they claim, or raises ImageFormatError naming the field.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from imgtool.errors import ImageFormatError
from imgtool.image.digest import Digest
from imgtool.image.mediatypes import OCI_INDEX, OCI_MANIFEST, SCHEMA1_TYPES
from imgtool.image.platform import Platform

REF_NAME: Final = "org.opencontainers.image.ref.name"

MAX_MANIFEST_BYTES: Final = 4 << 20  # a manifest, an index, index.json, manifest.json
MAX_CONFIG_BYTES: Final = 32 << 20  # an image config (its history can be long)
MAX_SMALL_JSON_BYTES: Final = 64 << 10  # oci-layout
MAX_JSON_DEPTH: Final = 100  # arrays and objects nested in one another; real documents use under 10


# How buildx marks the attestation manifests it puts in an index beside the images.
_REFERENCE_TYPE: Final = "vnd.docker.reference.type"
_ATTESTATION: Final = "attestation-manifest"


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    urls: tuple[str, ...] = ()

    @property
    def ref_name(self) -> str | None:
        return self.annotations.get(REF_NAME)

    @property
    def is_attestation(self) -> bool:
        """A buildx attestation manifest an index lists beside the images: not an image."""
        return self.annotations.get(_REFERENCE_TYPE) == _ATTESTATION


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One entry of the image index an image was chosen from."""

    digest: Digest
    media_type: str
    size: int
    platform: Platform | None
    chosen: bool  # the manifest this image is
    attestation: bool  # a buildx attestation manifest, not an image

    @classmethod
    def of(cls, desc: Descriptor, chosen: bool) -> IndexEntry:
        """The entry of the index descriptor ``desc``; ``chosen``: the image is that manifest."""
        return cls(desc.digest, desc.media_type, desc.size, desc.platform, chosen, desc.is_attestation)


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """The image index (its digest and media type) an image was chosen from, and what it lists."""

    digest: Digest | None  # None: index.json itself
    media_type: str
    entries: tuple[IndexEntry, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    created: str | None
    created_by: str | None
    comment: str | None
    author: str | None
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class ImageConfig:
    platform: Platform
    created: str | None
    diff_ids: tuple[Digest, ...]
    history: tuple[HistoryEntry, ...]
    container: Mapping[str, Any]
    raw: Mapping[str, Any]
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def layer_history(self, layer_count: int) -> list[HistoryEntry | None]:
        """The history entry that made each layer: entries marked ``empty_layer`` made none."""
        made = [h for h in self.history if not h.empty_layer]
        return [made[i] if i < len(made) else None for i in range(layer_count)]


# A string, or an unterminated one to the end of the data: each byte is looked at once.
_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS: Final = bytes(range(256)).translate(None, b"[]{}")
_DEPTH_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(data: bytes) -> int:
    """How deeply arrays and objects nest in ``data``, brackets inside strings not counted.

    It never recurses, so it is safe on any input; on malformed JSON its answer is only a
    bound, and json.loads then reports the fault.
    """
    openers = data.count(b"[") + data.count(b"{")
    if openers <= MAX_JSON_DEPTH:
        return openers  # nothing can nest deeper than the number of brackets
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(_DEPTH_STEP[c] for c in brackets), default=0)


def load_json(data: bytes, what: str, limit: int = MAX_MANIFEST_BYTES) -> Any:
    """The one way imgtool decodes a JSON document: bounded in size (``limit``) and nesting depth."""
    if len(data) > limit:
        raise ImageFormatError(f"{what}: larger than the {limit}-byte limit for this document")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise ImageFormatError(f"{what}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ImageFormatError(f"{what}: not valid JSON: {exc}") from None


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ImageFormatError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _str(obj: dict[str, Any], key: str, what: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ImageFormatError(f"{what}: field {key!r} must be a string")
    return value


def _list(obj: dict[str, Any], key: str, what: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ImageFormatError(f"{what}: field {key!r} must be a list")
    return value


def _str_map(value: Any, what: str) -> dict[str, str]:
    """A map of strings to strings (annotations, labels); ``what`` names it in the error."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ImageFormatError(f"{what} must map strings to strings")
    return value


def parse_platform(value: Any, what: str) -> Platform | None:
    if value is None:
        return None
    obj = _obj(value, f"{what} platform")
    os_name = _str(obj, "os", f"{what} platform")
    arch = _str(obj, "architecture", f"{what} platform")
    variant = _str(obj, "variant", f"{what} platform", required=False)
    assert os_name is not None and arch is not None
    return Platform(os_name, arch, variant or None)


def parse_descriptor(value: Any, what: str) -> Descriptor:
    obj = _obj(value, what)
    media_type = _str(obj, "mediaType", what)
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageFormatError(f"{what}: field 'size' must be a non-negative integer")
    urls = _list(obj, "urls", what)
    if not all(isinstance(u, str) for u in urls):
        raise ImageFormatError(f"{what}: field 'urls' must be a list of strings")
    assert media_type is not None
    return Descriptor(
        media_type=media_type,
        digest=Digest.parse(obj.get("digest"), f"{what} digest"),
        size=size,
        annotations=_str_map(obj.get("annotations"), f"{what}: annotations"),
        platform=parse_platform(obj.get("platform"), what),
        urls=tuple(urls),
    )


def media_type_of(doc: dict[str, Any]) -> str | None:
    value = doc.get("mediaType")
    return value if isinstance(value, str) else None


def media_type_by_fields(doc: Any) -> str | None:
    """What a document that names no media type is by its fields, as the OCI spec lets a manifest
    or an index leave ``mediaType`` out: a manifest (config and layers), an index (manifests)."""
    if not isinstance(doc, dict) or media_type_of(doc) is not None:
        return None
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    if "manifests" in doc:
        return OCI_INDEX
    return None


def parse_index(value: Any, what: str) -> Index:
    obj = _obj(value, what)
    manifests = tuple(
        parse_descriptor(d, f"{what} manifests[{i}]") for i, d in enumerate(_list(obj, "manifests", what))
    )
    return Index(
        media_type_of(obj) or OCI_INDEX, manifests, _str_map(obj.get("annotations"), f"{what}: annotations")
    )


def parse_manifest(value: Any, what: str) -> Manifest:
    obj = _obj(value, what)
    media_type = media_type_of(obj) or OCI_MANIFEST
    if media_type in SCHEMA1_TYPES or obj.get("schemaVersion") == 1:
        raise ImageFormatError(f"{what}: Docker schema 1 manifests are not supported")
    if "config" not in obj:
        raise ImageFormatError(f"{what}: no 'config' field: not an image manifest")
    layers = tuple(
        parse_descriptor(d, f"{what} layers[{i}]") for i, d in enumerate(_list(obj, "layers", what))
    )
    return Manifest(
        media_type,
        parse_descriptor(obj["config"], f"{what} config"),
        layers,
        _str_map(obj.get("annotations"), f"{what}: annotations"),
    )


def _history(value: Any, what: str) -> HistoryEntry:
    obj = _obj(value, what)
    empty = obj.get("empty_layer", False)
    if not isinstance(empty, bool):
        raise ImageFormatError(f"{what}: field 'empty_layer' must be a boolean")
    return HistoryEntry(
        created=_str(obj, "created", what, required=False),
        created_by=_str(obj, "created_by", what, required=False),
        comment=_str(obj, "comment", what, required=False),
        author=_str(obj, "author", what, required=False),
        empty_layer=empty,
    )


def parse_config(value: Any, what: str) -> ImageConfig:
    obj = _obj(value, what)
    rootfs = _obj(obj.get("rootfs"), f"{what} rootfs")
    rootfs_type = rootfs.get("type")
    if rootfs_type != "layers":
        raise ImageFormatError(f"{what}: unsupported rootfs.type {rootfs_type!r}")
    diff_ids = tuple(
        Digest.parse(d, f"{what} rootfs.diff_ids[{i}]") for i, d in enumerate(_list(rootfs, "diff_ids", what))
    )
    history = tuple(_history(h, f"{what} history[{i}]") for i, h in enumerate(_list(obj, "history", what)))
    container = obj.get("config") or {}
    if not isinstance(container, dict):
        raise ImageFormatError(f"{what}: field 'config' must be an object")
    runtime = f"{what} config"
    os_name = _str(obj, "os", what, required=False) or "unknown"
    arch = _str(obj, "architecture", what, required=False) or "unknown"
    variant = _str(obj, "variant", what, required=False)
    return ImageConfig(
        platform=Platform(os_name, arch, variant or None),
        created=_str(obj, "created", what, required=False),
        diff_ids=diff_ids,
        history=history,
        container=container,
        raw=obj,
        entrypoint=_command(container, "Entrypoint", runtime),
        cmd=_command(container, "Cmd", runtime),
        env=_str_list(container, "Env", runtime) or (),
        working_dir=_str(container, "WorkingDir", runtime, required=False) or None,
        user=_str(container, "User", runtime, required=False) or None,
        labels=_str_map(container.get("Labels"), f"{runtime}: field 'Labels'"),
    )


def _str_list(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    """A list of strings, or None when absent or null."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageFormatError(f"{what}: field {key!r} must be a list of strings")
    return tuple(value)


def _command(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...] | None:
    """Entrypoint and Cmd: a list of strings; a lone string is a one-word list, as Docker reads it."""
    value = obj.get(key)
    return (value,) if isinstance(value, str) else _str_list(obj, key, what)
