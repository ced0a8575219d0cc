"""Images straight from a registry (``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]``): the Registry HTTP
API v2 / OCI distribution spec, pull side.

``options`` (how to reach it), ``credentials`` (where credentials come from), ``auth`` (challenges
and tokens), ``client`` (HTTP on urllib3: retries, redirects), ``transfer`` (a blob streamed and
resumed), ``blobcache`` (blobs kept on disk by digest), ``source`` (the
:class:`~imgtool.sources.core.ImageSource` itself). The HTTP modules are imported only when a
registry is opened: a command on a local image does not pay for urllib3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgtool.sources.reference import Reference, parse_docker_name
from imgtool.sources.registry.options import RegistryOptions

if TYPE_CHECKING:
    from imgtool.sources.registry.source import RegistrySource

__all__ = ["RegistryOptions", "open_registry"]


def open_registry(ref: Reference, options: RegistryOptions | None = None) -> RegistrySource:
    """``docker://NAME``: pings the registry (learning how it authenticates) and returns the source."""
    from imgtool.sources.registry.client import Client  # noqa: PLC0415 - urllib3 only when needed
    from imgtool.sources.registry.source import RegistrySource  # noqa: PLC0415

    name = parse_docker_name(ref.path)
    location = str(ref)
    client = Client(name, options or RegistryOptions(), location)
    try:
        client.ping()
    except BaseException:
        client.close()
        raise
    return RegistrySource(name, client, location, (options or RegistryOptions()).blob_cache)
