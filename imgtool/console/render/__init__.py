"""What each command prints: its table or its JSON document, made from the data the operation
returned (schemas in docs/json.md). Every function returns the whole text, newline-terminated;
the CLI writes it.

One module per subject: ``summary`` (inspect), ``copying`` (copy), ``verification`` (verify),
``which_layer``, ``listing`` (ls), ``diff`` (diff layers, diff images), ``ci`` (diff layers --ci),
``flatten`` (its notes on stderr), ``catalog`` (images), ``caches`` (cache info, cache prune),
``squashing`` (squash), and ``common`` for what they share. The entry points the CLI calls, one per
command, are here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgtool.console.render.caches import cache_info, cache_pruned
    from imgtool.console.render.catalog import images
    from imgtool.console.render.ci import ci_report
    from imgtool.console.render.copying import copy
    from imgtool.console.render.diff import diff_images, diff_layers
    from imgtool.console.render.flatten import flatten_notes
    from imgtool.console.render.listing import ls
    from imgtool.console.render.squashing import squash
    from imgtool.console.render.summary import inspect
    from imgtool.console.render.verification import verify
    from imgtool.console.render.which_layer import which

__all__ = [
    "cache_info",
    "cache_pruned",
    "ci_report",
    "copy",
    "diff_images",
    "diff_layers",
    "flatten_notes",
    "images",
    "inspect",
    "ls",
    "squash",
    "verify",
    "which",
]

# Each entry point's module, imported when the entry point is first asked for: a command loads
# the rendering (and the operation types) of its own output only, which keeps start-up short.
_MODULES = {
    "cache_info": "caches",
    "cache_pruned": "caches",
    "ci_report": "ci",
    "copy": "copying",
    "diff_images": "diff",
    "diff_layers": "diff",
    "flatten_notes": "flatten",
    "images": "catalog",
    "ls": "listing",
    "inspect": "summary",
    "squash": "squashing",
    "verify": "verification",
    "which": "which_layer",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
