"""Shell completion: image references, tags inside archives, and paths inside an image.

Completion must be quick or say nothing: paths inside an image come only from
the layer index cache, and nothing here ever reads a layer.

The scripts each shell sources are :mod:`imgtool.console.shells` (click's ``ShellComplete``
classes, with imgtool's scripts); :func:`completion_script` is what ``imgtool completion SHELL``
prints.
"""

from __future__ import annotations

import os
from typing import Final

import click
from click.shell_completion import CompletionItem

from imgtool.console.shells import SHELL_CLASSES
from imgtool.errors import ImgtoolError
from imgtool.image.platform import Platform
from imgtool.layers.paths import join_path
from imgtool.layers.tarstream import Kind
from imgtool.merge.index import IndexCache
from imgtool.merge.overlay import Node, Tree
from imgtool.merge.view import apply_indexes
from imgtool.sources import catalog, list_images, open_image, parse_reference
from imgtool.sources.reference import DOCKER, TRANSPORTS

SHELLS: Final = tuple(SHELL_CLASSES)  # bash, zsh, fish
COMPLETE_VAR: Final = "_IMGTOOL_COMPLETE"
PROG_NAME: Final = "imgtool"
REGISTRY_PREFIX: Final = f"{DOCKER}://"


def completion_script(command: click.Command, shell: str) -> str:
    """The completion script for ``shell``: what its ShellComplete class makes for ``command``."""
    cls = SHELL_CLASSES.get(shell)
    if cls is None:
        raise click.BadParameter(f"unsupported shell {shell!r}; choose one of {', '.join(SHELLS)}")
    return cls(command, {}, PROG_NAME, COMPLETE_VAR).source()


# -- image references --------------------------------------------------------------------------


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
    """An image reference: a path, a transport prefix, a path after it, a tag after ``PATH:``.

    A bare path is left to the shell's own file completion, except when what is typed
    could still become a transport prefix: then the prefixes and the matching paths
    are offered together (bash cannot mix its file completion with other words).
    ``docker://`` is offered as a prefix too; what follows it is not completed (that would
    reach the network). The stores' and the directories' transports are offered as prefixes
    as well, and complete their own way once typed.
    """
    if incomplete.startswith(REGISTRY_PREFIX):
        return []
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
    for transport in STORE_TRANSPORTS:
        if incomplete.startswith(transport + ":"):
            return _complete_store(transport + ":", incomplete[len(transport) + 1 :])
    for transport in DIRECTORY_TRANSPORTS:
        if incomplete.startswith(transport + ":"):
            return _complete_directories(transport + ":", incomplete[len(transport) + 1 :])
    prefixes = [*(t + ":" for t in (*TRANSPORTS, *STORE_TRANSPORTS, *DIRECTORY_TRANSPORTS)), REGISTRY_PREFIX]
    transports = [p for p in prefixes if p.startswith(incomplete)]
    if incomplete and transports:
        return [CompletionItem(item) for item in [*transports, *_paths_like(incomplete)]]
    return [CompletionItem(incomplete, type="file")]


# The stores' transports, completed once their prefix is typed: ``[DRIVER@ROOT`` as directories,
# then the names the store holds.
STORE_TRANSPORTS: Final = ("containers-storage", "podman-container", "docker-storage", "docker-container")


# Transports of directories: ``overlay:`` (each directory after ``:`` or ``+``) and ``overlay-mount:``.
DIRECTORY_TRANSPORTS: Final = ("overlay", "overlay-mount")


def _complete_directories(prefix: str, rest: str) -> list[CompletionItem]:
    cut = max(rest.rfind(":"), rest.rfind("+")) + 1 if prefix == "overlay:" else 0
    lead = prefix + rest[:cut]
    return [CompletionItem(lead + p) for p in _paths_like(rest[cut:], dirs_only=True)]


def _complete_store(prefix: str, rest: str) -> list[CompletionItem]:
    if rest.startswith("[") and "]" not in rest:
        driver, at, path = rest[1:].rpartition("@")
        lead = f"{prefix}[{driver}{at}"
        return [CompletionItem(lead + p) for p in _paths_like(path, dirs_only=True)]
    head, close, name = rest.rpartition("]")
    try:
        names = list_images(f"{prefix}{head}{close}")
    except ImgtoolError:
        return []
    return [CompletionItem(f"{prefix}{head}{close}{n}") for n in names if n.startswith(name)]


# -- paths inside an image ---------------------------------------------------------------------


def complete_image_path(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Paths inside the image named earlier on the command line, from cached indexes only.

    Returns nothing unless every layer's index is in the cache (an earlier command
    built them): completion never reads a layer. Symlinks in the directory part are
    followed inside the image, so ``/bin/`` lists what ``/usr/bin`` holds when
    ``/bin -> usr/bin``; candidates keep the directory part as it was typed.
    """
    reference = ctx.params.get("image")
    if not reference:
        return []
    tree = _cached_tree(reference, ctx.params.get("platform"))
    if tree is None:
        return []
    typed_dir, slash, start = incomplete.rpartition("/")
    lead = typed_dir + slash if incomplete else "/"
    parent = _resolved(tree, typed_dir.encode("utf-8", "surrogateescape"))
    if parent is None or parent.children is None:
        return []
    items = []
    for name in sorted(parent.children):
        text = name.decode("utf-8", "surrogateescape")
        if not text.startswith(start) or not text.isprintable():
            continue  # a name the shell could not hand back unchanged is not offered
        if text.startswith(".") and not start.startswith("."):
            continue
        child = parent.children[name]
        if child.entry is not None and child.entry.kind == Kind.SYMLINK:
            target = _resolved(tree, join_path(typed_dir.encode("utf-8", "surrogateescape"), name))
            is_dir = target is not None and target.is_dir
        else:
            is_dir = child.is_dir
        items.append(CompletionItem(f"{lead}{text}{'/' if is_dir else ''}"))
    return items


def _cached_tree(reference: str, platform: Platform | str | None) -> Tree | None:
    """The image's merged tree if every layer index is cached, else None (always for a registry's
    image: completion never reaches the network)."""
    if reference.startswith("docker://"):
        return None
    try:
        with open_image(reference, platform) as image:
            cache = IndexCache()
            indexes = []
            for layer in image.layers:
                index = cache.load(layer.diff_id) if layer.diff_id_unchecked is None else None
                if index is None:
                    return None
                indexes.append(index)
            return apply_indexes(image, indexes)
    except ImgtoolError:
        return None


def _resolved(tree: Tree, path: bytes) -> Node | None:
    try:
        _, node, _ = tree.resolve(path.strip(b"/"))
    except ImgtoolError:
        return None
    return node


# Which image each platform option chooses for: diff images' per-side options, else the image.
_PLATFORM_OF: Final = {"platform1": ("image1",), "platform2": ("image2",), "platform": ("image", "image1")}


def complete_platform(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """The platforms of the image named earlier on the command line (an archive's or a layout's:
    a registry's would need the network), those its reference's name leads to if it gives one."""
    names = _PLATFORM_OF.get(param.name or "", ())
    reference = next((ctx.params[name] for name in names if ctx.params.get(name)), None)
    if not reference or reference.startswith(REGISTRY_PREFIX):
        return []
    try:
        selector = parse_reference(reference).selector
        listed = catalog(reference)
    except ImgtoolError:
        return []
    found = sorted({str(image.platform) for image in listed if selector is None or selector in image.names})
    return [CompletionItem(text) for text in found if text.startswith(incomplete)]
