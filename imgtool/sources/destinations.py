"""Where ``imgtool copy`` can write: ``oci:DIR[:REF]`` (a layout, made or added to),
``oci-archive:FILE[:REF]`` (a layout in a tar), ``docker-archive:FILE[:NAME:TAG]`` (a ``docker
save`` tarball, its layers uncompressed) and ``docker://HOST/REPO[:TAG|@DIGEST]`` (a push)."""

from __future__ import annotations

from imgtool.errors import UsageError
from imgtool.image.destination import Destination
from imgtool.sources.archive_writer import OciArchiveDestination
from imgtool.sources.docker_writer import DockerArchiveDestination
from imgtool.sources.oci_writer import LayoutDestination
from imgtool.sources.reference import (
    DOCKER,
    DOCKER_ARCHIVE,
    OCI,
    OCI_ARCHIVE,
    parse_docker_name,
    parse_reference,
)
from imgtool.sources.registry import RegistryOptions

DESTINATIONS = (
    "oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG] or docker://HOST/REPO[:TAG]"
)


def open_destination(text: str, registry: RegistryOptions | None = None) -> Destination:
    """The destination ``text`` names; a registry is pinged (and its authentication learnt) here."""
    if text.startswith(f"{DOCKER}://"):
        from imgtool.sources.registry.client import Client  # noqa: PLC0415 - urllib3 only when needed
        from imgtool.sources.registry.push import RegistryDestination  # noqa: PLC0415

        name = parse_docker_name(text[len(DOCKER) + 3 :])
        client = Client(name, registry or RegistryOptions(), text)
        try:
            client.ping()
        except BaseException:
            client.close()
            raise
        return RegistryDestination(name, client, text)
    ref = parse_reference(text, (OCI, OCI_ARCHIVE, DOCKER_ARCHIVE))
    if ref.transport == OCI:
        return LayoutDestination(ref.path, ref.selector, text)
    if ref.transport == OCI_ARCHIVE:
        return OciArchiveDestination(ref.path, ref.selector, text)
    if ref.transport == DOCKER_ARCHIVE:
        return DockerArchiveDestination(ref.path, ref.selector, text)
    raise UsageError(f"{text}: name the destination's transport: {DESTINATIONS}")
