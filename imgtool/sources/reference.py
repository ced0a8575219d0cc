"""Image references, spelled as skopeo spells them, and auto-detection of bare paths."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Final

from imgtool.errors import ImageFormatError, ImageNotFoundError, UsageError
from imgtool.image.digest import Digest

OCI: Final = "oci"
OCI_ARCHIVE: Final = "oci-archive"
DOCKER_ARCHIVE: Final = "docker-archive"
DOCKER: Final = "docker"  # docker://NAME: an image in a registry (imgtool.sources.registry)
TRANSPORTS: Final = (OCI, OCI_ARCHIVE, DOCKER_ARCHIVE)  # the transports of local files
# skopeo's other transports, which imgtool does not read (yet): named, not taken for paths.
UNSUPPORTED_TRANSPORTS: Final = (
    "docker-daemon:",
    "dir:",
    "ostree:",
    "sif:",
)


# Transports whose whole remainder is the path: they spell their own selectors (a store's
# ``[DRIVER@ROOT+RUN]NAME:TAG``, a list of directories ``A:B+C``), parsed by the source.
WHOLE_REMAINDER: Final = frozenset(
    {
        "containers-storage",
        "podman-container",
        "overlay",
        "docker-storage",
        "docker-container",
        "overlay-mount",
    }
)


@dataclass(frozen=True, slots=True)
class Reference:
    """``transport`` is None for a bare path, to be detected from what is there."""

    transport: str | None
    path: str
    selector: str | None

    def __str__(self) -> str:
        if self.transport is None:
            return self.path
        if self.transport == DOCKER:
            return f"{DOCKER}://{self.path}"
        tail = f":{self.selector}" if self.selector else ""
        return f"{self.transport}:{self.path}{tail}"


def parse_reference(text: str, transports: tuple[str, ...] = TRANSPORTS) -> Reference:
    """``oci:DIR[:REF]``, ``oci-archive:PATH[:REF]``, ``docker-archive:PATH[:NAME:TAG|:@N]``,
    ``docker://NAME`` or a path (``transports``: the transport names known, those of the registry in
    :mod:`imgtool.sources`).

    As in skopeo, the path ends at the first colon; a path that itself holds a
    colon is still found when the whole remainder names an existing file. Of ``docker://NAME``
    the path is NAME as given (checked here, see :func:`parse_docker_name`) and there is no selector.
    """
    if not text:
        raise UsageError("empty image reference")
    if DOCKER in transports and text.startswith(f"{DOCKER}://"):
        name = text[len(DOCKER) + 3 :]
        parse_docker_name(name)
        return Reference(DOCKER, name, None)
    for prefix in UNSUPPORTED_TRANSPORTS:
        if text.startswith(prefix) and not os.path.lexists(text):
            raise UsageError(
                f"{text}: the {prefix.rstrip(':')} transport is not supported yet; "
                "use skopeo copy to make an oci: layout"
            )
    for transport in transports:
        prefix = transport + ":"
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            if transport in WHOLE_REMAINDER:
                if not rest:
                    raise UsageError(f"image reference {text!r} names nothing after {prefix}")
                return Reference(transport, rest, None)
            path, _, selector = rest.partition(":")
            if not os.path.lexists(path) and os.path.lexists(rest):
                path, selector = rest, ""
            if not path:
                raise UsageError(f"image reference {text!r} names no path")
            return Reference(transport, path, selector or None)
    return Reference(None, text, None)


def require_exists(ref: Reference) -> None:
    if not os.path.lexists(ref.path):
        raise ImageNotFoundError(f"{ref.path}: no such file or directory")


# -- docker://NAME: names of images in a registry, as docker/distribution's reference package reads them

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_REGISTRY: Final = "registry-1.docker.io"  # the host Docker Hub's API answers on
MAX_NAME_LENGTH: Final = 255  # of the repository name with its registry, as docker/distribution limits it
_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE: Final = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST_RE: Final = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?"
)
_TAG_RE: Final = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)


@dataclass(frozen=True, slots=True)
class DockerName:
    """A ``docker://`` reference, normalised as docker and skopeo do: ``registry`` is the registry's
    name (``docker.io`` for Docker Hub), ``host`` where its API answers (``registry-1.docker.io``),
    ``repository`` the repository in it (``library/alpine``); exactly one of ``tag`` (``latest``
    when neither is given) and ``digest`` is set."""

    registry: str
    repository: str
    tag: str | None
    digest: Digest | None

    @property
    def host(self) -> str:
        return DOCKER_HUB_REGISTRY if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What the manifest is fetched by: the tag, or the digest."""
        return str(self.digest) if self.digest is not None else str(self.tag)

    def __str__(self) -> str:
        tail = f"@{self.digest}" if self.digest is not None else f":{self.tag}"
        return f"{self.registry}/{self.repository}{tail}"


def parse_docker_name(text: str) -> DockerName:
    """``[HOST[:PORT]/]REPO[:TAG|@sha256:HEX]``. The first component is a host if it holds a dot or
    a colon or is ``localhost``; otherwise the image is on Docker Hub, where a one-component name is
    in ``library/``. A tag and a digest together are refused, as skopeo refuses them."""
    what = f"docker://{text}"
    rest, at, digest_text = text.partition("@")
    digest = None
    if at:
        try:
            digest = Digest.parse(digest_text, what)
        except ImageFormatError as exc:
            raise UsageError(str(exc)) from None
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
        if _HOST_RE.fullmatch(registry) is None:
            raise UsageError(f"{what}: not a valid registry host: {registry!r}")
    else:
        registry, path = DOCKER_HUB, rest
    tag = None
    colon = path.rfind(":")
    if colon >= 0:
        path, tag = path[:colon], path[colon + 1 :]
        if _TAG_RE.fullmatch(tag) is None:
            raise UsageError(f"{what}: not a valid tag: {tag!r}")
    if not path:
        raise UsageError(f"{what}: names no repository")
    if path != path.lower() and _REPOSITORY_RE.fullmatch(path.lower()):
        raise UsageError(f"{what}: repository name must be lowercase: {path!r}")
    if _REPOSITORY_RE.fullmatch(path) is None:
        raise UsageError(f"{what}: not a valid repository name: {path!r}")
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > MAX_NAME_LENGTH:
        raise UsageError(f"{what}: repository name longer than {MAX_NAME_LENGTH} characters")
    if tag is not None and digest is not None:
        raise UsageError(f"{what}: a tag and a digest together are not supported; give one of them")
    return DockerName(registry, path, tag if tag is not None or digest is not None else "latest", digest)
