"""which-layer: the layer that supplies a path in the final image, and every layer that touched it."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from imgtool.changes import REMOVALS, Change, ChangeLog, kind_name
from imgtool.errors import UnsafePathError, UsageError
from imgtool.image import Image
from imgtool.overlay import Node, Tree
from imgtool.paths import clean_path, display, escape, join_path
from imgtool.tarstream import FILE, SYMLINK_KIND

GLOB_CHARS = frozenset("*?[")


@dataclass(slots=True)
class LinkStep:
    """A symlink followed while resolving the asked path, and the layer that supplied it."""

    path: bytes
    target: bytes
    layer: int


@dataclass(slots=True)
class Answer:
    asked: str
    path: bytes  # the resolved path
    node: Node | None
    history: list[Change] = field(default_factory=list)
    via: list[LinkStep] = field(default_factory=list)
    unmatched_pattern: bool = False

    @property
    def exists(self) -> bool:
        return self.node is not None

    @property
    def removed_by(self) -> Change | None:
        if self.node is None and self.history and self.history[-1].change in REMOVALS:
            return self.history[-1]
        return None


def has_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def normalize_query(text: str) -> bytes:
    try:
        return clean_path(text.encode("utf-8", "surrogateescape"))
    except UnsafePathError as exc:
        raise UsageError(f"invalid path {text!r}: {exc}") from None


def glob_paths(tree: Tree, pattern: str) -> list[bytes]:
    """Paths of the final tree matching a shell pattern; ``*`` does not cross ``/``."""
    parts = [p for p in pattern.encode("utf-8", "surrogateescape").split(b"/") if p not in (b"", b".")]
    level: list[tuple[bytes, Node]] = [(b"", tree.root)]
    for part in parts:
        next_level: list[tuple[bytes, Node]] = []
        for path, node in level:
            if not node.children:
                continue
            if any(c in part for c in (b"*", b"?", b"[")):
                names = [n for n in node.children if fnmatch.fnmatchcase(n, part)]
            else:
                names = [part] if part in node.children else []
            next_level.extend((join_path(path, n), node.children[n]) for n in sorted(names))
        level = next_level
    return [path for path, _ in level]


def answer(tree: Tree, log: ChangeLog, asked: str, path: bytes) -> Answer:
    resolved, node, links = tree.resolve(path, follow_last=False)
    via = []
    for link_path in links:
        link_node = tree.lookup(link_path)
        content = link_node.content if link_node is not None else None
        if link_node is not None and content is not None and content.kind == SYMLINK_KIND:
            via.append(LinkStep(link_path, content.link, link_node.layer))
    return Answer(asked, resolved, node, log.for_path(resolved), via)


def answers_for(tree: Tree, log: ChangeLog, queries: list[str]) -> list[Answer]:
    result: list[Answer] = []
    for query in queries:
        if has_glob(query):
            matched = glob_paths(tree, query)
            if not matched:
                result.append(Answer(query, b"", None, unmatched_pattern=True))
                continue
            result.extend(answer(tree, log, query, path) for path in matched)
        else:
            result.append(answer(tree, log, query, normalize_query(query)))
    return result


def _layer_ref(image: Image, index: int) -> dict[str, Any] | None:
    if index < 0:
        return None
    layer = image.layers[index]
    return {"index": index, "digest": str(layer.digest), "created_by": layer.created_by}


def to_json(image: Image, item: Answer) -> dict[str, Any]:
    node = item.node
    content = node.content if node is not None else None
    entry = node.entry if node is not None else None
    return {
        "path": None if item.unmatched_pattern else display(item.path),
        "query": escape(item.asked.encode("utf-8", "surrogateescape")),
        "exists": node is not None,
        "layer": _layer_ref(image, node.layer) if node is not None else None,
        "type": (entry.kind_name if entry is not None else "dir") if node is not None else None,
        "size": content.size if content is not None and content.kind == FILE else (0 if node else None),
        "mode": f"{content.mode:04o}" if content is not None else ("0755" if node else None),
        "uid": content.uid if content is not None else (0 if node else None),
        "gid": content.gid if content is not None else (0 if node else None),
        "linkname": _linkname(node),
        "via": [
            {
                "symlink": display(step.path),
                "target": escape(step.target),
                "layer": _layer_ref(image, step.layer),
            }
            for step in item.via
        ],
        "history": [
            {
                "index": change.layer,
                "digest": str(image.layers[change.layer].digest),
                "change": change.change,
                "what": list(change.what),
                "type": change.kind,
                "size": change.size,
            }
            for change in item.history
        ],
    }


def _linkname(node: Node | None) -> str | None:
    if node is None or node.entry is None:
        return None
    if node.entry.link:
        if node.entry.kind == SYMLINK_KIND:
            return escape(node.entry.link)
        return display(node.entry.link)
    return None


__all__ = ["Answer", "answers_for", "kind_name", "to_json"]
