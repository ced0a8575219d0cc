"""Shell completion: image references, tags inside archives, and paths inside an image.

Completion must be quick or say nothing: paths inside an image come only from
the layer index cache, and nothing here ever reads a layer.
"""

from __future__ import annotations

import os
from typing import Final

import click
from click.shell_completion import CompletionItem, get_completion_class

from imgtool.errors import ImgtoolError
from imgtool.index import IndexCache
from imgtool.sources import list_images, open_image
from imgtool.sources.reference import TRANSPORTS
from imgtool.tarstream import display, join_path
from imgtool.view import apply_indexes

SHELLS: Final = ("bash", "zsh", "fish")
COMPLETE_VAR: Final = "_IMGTOOL_COMPLETE"


def completion_script(command: click.Command, shell: str) -> str:
    """The completion script click generates for ``shell``."""
    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"unsupported shell {shell!r}; choose one of {', '.join(SHELLS)}")
    return cls(command, {}, "imgtool", COMPLETE_VAR).source()


def _paths_like(prefix: str, dirs_only: bool = False) -> list[str]:
    """Filesystem paths starting with ``prefix`` (directories get a trailing slash)."""
    directory, _, start = prefix.rpartition("/")
    base = directory or ("/" if prefix.startswith("/") else ".")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    result = []
    for name in names:
        if not name.startswith(start) or (name.startswith(".") and not start.startswith(".")):
            continue
        path = f"{directory}/{name}" if directory or prefix.startswith("/") else name
        if os.path.isdir(path):
            result.append(path + "/")
        elif not dirs_only:
            result.append(path)
    return result


def complete_image(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``oci:``/``oci-archive:``/``docker-archive:`` prefixes, paths after them, tags after ``PATH:``."""
    for transport in TRANSPORTS:
        prefix = transport + ":"
        if not incomplete.startswith(prefix):
            continue
        rest = incomplete[len(prefix) :]
        path, sep, tag = rest.partition(":")
        if sep and os.path.exists(path):
            try:
                names = list_images(f"{prefix}{path}")
            except ImgtoolError:
                return []
            return [CompletionItem(f"{prefix}{path}:{n}") for n in names if n.startswith(tag)]
        return [CompletionItem(prefix + p) for p in _paths_like(rest, dirs_only=transport == "oci")]
    items = [CompletionItem(t + ":") for t in TRANSPORTS if (t + ":").startswith(incomplete) and incomplete]
    return [*items, CompletionItem(incomplete, type="file")]


def complete_image_path(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Paths inside the image named earlier on the command line, from cached indexes only."""
    reference = ctx.params.get("image")
    if not reference:
        return []
    try:
        with open_image(reference, ctx.params.get("platform")) as image:
            cache = IndexCache()
            indexes = [cache.load(layer.diff_id) for layer in image.layers]
            if any(index is None for index in indexes):
                return []
            tree = apply_indexes(image, [i for i in indexes if i is not None])
    except ImgtoolError:
        return []
    directory, _, start = incomplete.lstrip("/").rpartition("/")
    parent_path = directory.encode("utf-8", "surrogateescape")
    parent = tree.lookup(parent_path)
    if parent is None or parent.children is None:
        return []
    items = []
    for name in sorted(parent.children):
        text = name.decode("utf-8", "surrogateescape")
        if text.startswith(start):
            child = parent.children[name]
            suffix = "/" if child.is_dir else ""
            items.append(CompletionItem(display(join_path(parent_path, name)) + suffix))
    return items
