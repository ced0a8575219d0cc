"""which-layer: the layer that supplies a path in the final image, and every layer that touched it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgtool.image.image import Image
from imgtool.layers.paths import display, escape
from imgtool.layers.tarstream import Kind
from imgtool.merge.changes import REMOVALS, Change, ChangeLog, kind_name
from imgtool.merge.lookup import find, queries
from imgtool.merge.overlay import Node, Tree


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


def answer(tree: Tree, log: ChangeLog, asked: str, path: bytes) -> Answer:
    found = find(tree, path, follow_last=False)
    via = []
    for link_path in found.links:
        link = find(tree, link_path, follow_last=False)
        content = link.node.content if link.node is not None else None
        if link.node is not None and content is not None and content.kind == Kind.SYMLINK:
            via.append(LinkStep(link_path, content.link, link.node.layer))
    return Answer(asked, found.path, found.node, log.for_path(found.path), via)


def answers_for(tree: Tree, log: ChangeLog, texts: list[str]) -> list[Answer]:
    result: list[Answer] = []
    for text in texts:
        paths = queries(tree, text)
        if paths is None:
            result.append(Answer(text, b"", None, unmatched_pattern=True))
            continue
        result.extend(answer(tree, log, text, path) for path in paths)
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
        "type": (entry.kind_name if entry is not None else Kind.DIR.word) if node is not None else None,
        "size": content.size if content is not None and content.kind == Kind.FILE else (0 if node else None),
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
        if node.entry.kind == Kind.SYMLINK:
            return escape(node.entry.link)
        return display(node.entry.link)
    return None


__all__ = ["Answer", "answers_for", "kind_name", "to_json"]
