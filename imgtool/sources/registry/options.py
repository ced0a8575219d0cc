"""How to reach a registry: what the command line says about TLS, credentials and retries."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from imgtool.sources.registry.blobcache import BlobCache

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """``creds``: a user and password given on the command line; ``authfile``: the one credentials
    file to read (else ``$REGISTRY_AUTH_FILE``, else docker's config and the containers auth.json).
    ``plain_http``: speak HTTP, not HTTPS, to any registry (by default only to a loopback one
    that does not answer HTTPS);
    ``tls_verify=False``: accept any certificate. ``retries`` is how often one request is tried
    again after a connection error, 408, 429 or 5xx, waiting ``backoff`` seconds doubled each time
    (or what ``Retry-After`` asks, up to ``max_wait``). ``warn`` hears what is worth a warning
    (a credential helper that fails). ``blob_cache``: where blobs fetched are kept, and read again
    from (None: nowhere, every blob is fetched)."""

    creds: tuple[str, str] | None = None
    authfile: str | None = None
    plain_http: bool = False
    tls_verify: bool = True
    retries: int = 5
    backoff: float = 0.5
    max_wait: float = 60.0
    timeout: float = 60.0
    warn: Warn | None = None
    blob_cache: BlobCache | None = None


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address, with or without a port (``127.0.0.1:5000``, ``[::1]:5000``)."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
