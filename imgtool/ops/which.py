"""which-layer: the layer that supplies a path in the final image, and every layer that touched it."""

from __future__ import annotations

from dataclasses import dataclass, field

from imgtool.image.image import Image
from imgtool.layers.tarstream import Kind
from imgtool.merge.changes import REMOVALS, Change, ChangeLog, kind_name
from imgtool.merge.lookup import find, has_glob, normalize_query, not_a_directory, queries
from imgtool.merge.overlay import Node, Tree
from imgtool.ops.common import LayerRef, Reading, layer_refs, merged


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
    not_a_directory: bool = False  # asked as ``file/``: absent, as stat says; the history is the file's

    @property
    def exists(self) -> bool:
        return self.node is not None

    @property
    def removed_by(self) -> Change | None:
        if self.node is None and self.history and self.history[-1].change in REMOVALS:
            return self.history[-1]
        return None


def answer(tree: Tree, log: ChangeLog, asked: str, path: bytes) -> Answer:
    if not_a_directory(tree, asked, path) is not None:
        return Answer(asked, path, None, log.for_path(path), not_a_directory=True)
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


@dataclass(slots=True)
class WhichResult:
    """which-layer's answer: one Answer per path asked (a pattern gives one per match)."""

    layers: list[LayerRef]
    answers: list[Answer]

    @property
    def all_found(self) -> bool:
        return all(a.exists for a in self.answers)


def which_layer(image: Image, paths: list[str], reading: Reading) -> WhichResult:
    """The layer that supplies each of ``paths`` in the final image, with every change to it.

    Only the changes of the paths asked are recorded while the layers are applied (most of a
    which-layer's time would otherwise go to recording every change of every path). A path that
    resolves elsewhere (a symlink on the way) or a pattern is known only once the tree is built:
    the layers are then applied again, recording the changes of what they resolved to.
    """
    asked = None if any(map(has_glob, paths)) else {normalize_query(text) for text in paths}
    log = ChangeLog(asked)
    view = merged(image, reading, recorder=log)
    answers = answers_for(view.tree, log, paths)
    resolved = {answer.path for answer in answers if not answer.unmatched_pattern}
    if asked is not None and not resolved <= asked:
        log = ChangeLog(resolved)
        view = merged(image, reading, recorder=log)
        answers = answers_for(view.tree, log, paths)
    return WhichResult(layer_refs(image), answers)


__all__ = ["Answer", "WhichResult", "answers_for", "kind_name", "which_layer"]
