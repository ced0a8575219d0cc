"""cat: a file's bytes as the final image (or the tree after layer N) has them, read from the one
layer that holds them. The layers are indexed from the top down, and those below the one that
settles the file are never read (from a registry: never fetched)."""

from __future__ import annotations

import tempfile
from typing import BinaryIO, Final

from imgtool.errors import ImageNotFoundError, ImgtoolError, LayerError
from imgtool.image.image import Image
from imgtool.layers.paths import display
from imgtool.layers.tarstream import Kind, LayerReader
from imgtool.merge.index import check_indexed
from imgtool.merge.lookup import find, normalize_query, not_a_directory, settled_file
from imgtool.merge.overlay import Tree
from imgtool.merge.view import check_layer_number, trees_from_top
from imgtool.ops.common import Reading

_IN_MEMORY: Final = 8 << 20


class NotAFileError(ImgtoolError):
    """The path exists but is no regular file: a negative answer about the image, not a usage error."""


def read_file(
    image: Image,
    tree: Tree,
    path: bytes,
    out: BinaryIO,
    max_size: int | None = None,
    *,
    upto: int | None = None,
) -> int:
    """Write the content of ``path`` (symlinks followed, inside the image) to ``out``; ``upto``: the
    tree is the one after that layer (errors say so).

    The content is held aside (in memory, or a temporary file when large) until its layer
    has been read to the end and verified: nothing unverified ever reaches ``out``.
    """
    found = find(tree, path, follow_last=True)
    resolved, node = found.path, found.node
    if node is None:
        after = f" after layer {upto}" if upto is not None else ""
        raise ImageNotFoundError(f"{display(path)}: no such file in the image{after}")
    content = node.content
    if node.is_dir or content is None or content.kind == Kind.DIR:
        raise NotAFileError(f"{display(path)}: is a directory")
    if content.kind != Kind.FILE:
        raise NotAFileError(f"{display(path)}: is not a regular file ({content.kind_name})")
    inode = node.inode
    assert inode is not None
    layer = image.layers[inode[0]]
    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY, prefix="imgtool-") as held:
        with layer.open(max_size) as stream:
            reader = LayerReader(stream, layer.what)
            for entry in reader:
                if entry.ordinal != content.ordinal:
                    continue
                check_indexed(entry, content, layer.what)
                while chunk := reader.read_data():
                    held.write(chunk)
                break
            stream.finish(reader)
        if held.tell() != content.size:
            raise LayerError(f"{layer.what}: {display(resolved)} is shorter than its header says")
        held.seek(0)
        while chunk := held.read(1 << 20):
            out.write(chunk)
    return content.size


def cat(image: Image, path: str, out: BinaryIO, reading: Reading, layer: int | None = None) -> int:
    """``cat PATH``: the file's bytes to ``out`` (see :func:`read_file`), as the final image has
    them or (``layer``) as they stood after layer N; returns how many.

    The layers are indexed top down (:func:`~imgtool.merge.view.trees_from_top`): once the upper
    ones settle the file, the lower ones are not read. The warnings of the layers read are given
    bottom first, as for every command."""
    check_layer_number(image, layer, "--layer")
    query = normalize_query(path)
    said: list[tuple[int, list[str]]] = []
    tree: Tree | None = None
    for number, tree, warnings in trees_from_top(image, upto=layer, cache=reading.cache):
        said.append((number, warnings))
        if tree is not None and settled_file(tree, query):
            break
    assert tree is not None  # the last one, of every layer, is the image's
    if reading.warn is not None:
        for _, warnings in sorted(said):
            for message in warnings:
                reading.warn(message)
    if (error := not_a_directory(tree, path, query)) is not None:
        raise NotAFileError(str(error))
    return read_file(image, tree, query, out, upto=layer)
