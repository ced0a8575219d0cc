"""What each command prints: its table or its JSON document, made from the data the operation
returned (schemas in docs/json.md). Every function returns the whole text, newline-terminated;
the CLI writes it.

One module per subject: ``summary`` (inspect), ``verification`` (verify), ``which_layer``,
``listing`` (ls), ``diff`` (diff layers, diff images), ``flatten`` (its notes on stderr),
``catalog`` (images), and ``common`` for what they share. The entry points the CLI calls, one per
command, are here.
"""

from __future__ import annotations

from imgtool.console.render.catalog import images
from imgtool.console.render.diff import diff_images, diff_layers
from imgtool.console.render.flatten import flatten_notes
from imgtool.console.render.listing import ls
from imgtool.console.render.summary import inspect
from imgtool.console.render.verification import verify
from imgtool.console.render.which_layer import which

__all__ = ["diff_images", "diff_layers", "flatten_notes", "images", "inspect", "ls", "verify", "which"]
