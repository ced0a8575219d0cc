"""Where ``imgtool copy`` can write: ``oci:DIR[:REF]`` (a layout, made or added to) and
``docker://HOST/REPO[:TAG|@DIGEST]`` (a push)."""

from __future__ import annotations

from imgtool.errors import UsageError
from imgtool.image.destination import Destination
from imgtool.sources.oci_writer import LayoutDestination
from imgtool.sources.reference import DOCKER, OCI, parse_docker_name, parse_reference
from imgtool.sources.registry import RegistryOptions

DESTINATIONS = "oci:DIR[:REF] or docker://HOST/REPO[:TAG]"


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
    ref = parse_reference(text, (OCI, "oci-archive", "docker-archive"))
    if ref.transport == OCI:
        return LayoutDestination(ref.path, ref.selector, text)
    if ref.transport is not None:
        raise UsageError(f"{text}: copy does not write {ref.transport}: yet; it writes {DESTINATIONS}")
    raise UsageError(f"{text}: name the destination's transport: {DESTINATIONS}")
