"""Errors keep their class, attributes and cause when context is added to their message."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from imgtool.errors import DigestMismatchError, ImgtoolError, with_context
from imgtool.image.digest import Digest
from imgtool.merge.index import LayerIndex
from imgtool.merge.view import apply_indexes


def test_with_context_keeps_the_class_and_attributes() -> None:
    original = DigestMismatchError(
        "blob sha256:ab: content hashes to sha256:cd", check="diff_id", actual="sha256:cd"
    )
    found = with_context(original, "layer 2")
    assert type(found) is DigestMismatchError
    assert (str(found), found.check, found.actual) == (
        "layer 2: blob sha256:ab: content hashes to sha256:cd",
        "diff_id",
        "sha256:cd",
    )
    assert (str(original), original.check) == ("blob sha256:ab: content hashes to sha256:cd", "diff_id")


def test_applying_a_layer_keeps_the_error_and_its_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgtool.merge import overlay

    failure = DigestMismatchError("entry etc/a: bad", check="diff_id", actual="sha256:ef")

    def broken(self: object, number: int, entries: object, recorder: object = None) -> None:
        raise failure

    monkeypatch.setattr(overlay.Tree, "apply", broken)

    image = SimpleNamespace(layers=[SimpleNamespace(what="layer 0 (sha256:12)")])
    index = LayerIndex(Digest.of_bytes(b""), [])
    with pytest.raises(ImgtoolError) as caught:
        apply_indexes(image, [index])  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, DigestMismatchError)
    assert (str(error), error.check, error.actual) == (
        "layer 0 (sha256:12): entry etc/a: bad",
        "diff_id",
        "sha256:ef",
    )
    assert error.__cause__ is failure
