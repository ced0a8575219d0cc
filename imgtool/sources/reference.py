"""Image references, spelled as skopeo spells them, and auto-detection of bare paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from imgtool.errors import ImageNotFoundError, UsageError

OCI: Final = "oci"
OCI_ARCHIVE: Final = "oci-archive"
DOCKER_ARCHIVE: Final = "docker-archive"
TRANSPORTS: Final = (OCI, OCI_ARCHIVE, DOCKER_ARCHIVE)
# skopeo's other transports, which imgtool does not read (yet): named, not taken for paths.
UNSUPPORTED_TRANSPORTS: Final = (
    "docker://",
    "docker-daemon:",
    "dir:",
    "ostree:",
    "sif:",
)


# Transports whose whole remainder is the path: they spell their own selectors (a store's
# ``[DRIVER@ROOT+RUN]NAME:TAG``, a list of directories ``A:B+C``), parsed by the source.
WHOLE_REMAINDER: Final = frozenset(
    {"containers-storage", "podman-container", "overlay", "docker-storage", "docker-container"}
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
        tail = f":{self.selector}" if self.selector else ""
        return f"{self.transport}:{self.path}{tail}"


def parse_reference(text: str, transports: tuple[str, ...] = TRANSPORTS) -> Reference:
    """``oci:DIR[:REF]``, ``oci-archive:PATH[:REF]``, ``docker-archive:PATH[:NAME:TAG|:@N]`` or a path
    (``transports``: the transport names known, those of the registry in :mod:`imgtool.sources`).

    As in skopeo, the path ends at the first colon; a path that itself holds a
    colon is still found when the whole remainder names an existing file.
    """
    if not text:
        raise UsageError("empty image reference")
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
