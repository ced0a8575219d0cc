"""Each operation called directly: an opened Image and plain options in, data out."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgtool.errors import ImageNotFoundError, UsageError
from imgtool.image.image import Image
from imgtool.merge.changes import ChangeWord
from imgtool.merge.index import IndexCache
from imgtool.ops.common import LayerRef, Reading
from imgtool.ops.diff import ImageDiff, LayerChanges, LayerRange, PathChange, diff_images, diff_layers
from imgtool.ops.listing import list_image
from imgtool.ops.readfile import NotAFileError, cat
from imgtool.ops.summary import LayerFacts, describe_image
from imgtool.ops.verify import all_ok, verify_image
from imgtool.ops.which import which_layer
from imgtool.sources import open_image
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    ImageSpec,
    Layer,
    OciResult,
    Symlink,
    Whiteout,
    make_layer,
    write_oci_layout,
)

LAYERS = [
    make_layer([Dir("etc/"), File("etc/a", b"aaa"), File("etc/b", b"b")]),
    make_layer([Whiteout("etc/a"), File("etc/b", b"bb", mode=0o600), Symlink("etc/l", "b")]),
    make_layer([File("etc/c", b"cccc")]),
]


@pytest.fixture
def layout(tmp_path: Path) -> OciResult:
    return write_oci_layout(tmp_path / "oci", [Entry(ImageSpec(LAYERS), ref="v1")])


@pytest.fixture
def image(layout: OciResult) -> Iterator[Image]:
    with open_image(layout.reference("v1")) as img:
        yield img


def test_which_layer_gives_the_supplier_and_the_history(image: Image, layout: OciResult) -> None:
    result = which_layer(image, ["/etc/b", "/etc/a", "/nope*"], Reading())
    digests = layout.image.layer_digests
    assert result.layers == [
        LayerRef(n, digests[n], f"/bin/sh -c #(nop) ADD file:layer{n} in / ") for n in range(3)
    ]
    b, a, nope = result.answers
    assert (b.path, b.node is not None and b.node.layer) == (b"etc/b", 1)
    assert [(c.layer, c.change, c.what) for c in b.history] == [
        (0, "added", ()),
        (1, "modified", ("content", "mode")),
    ]
    assert a.node is None
    assert a.removed_by is not None and (a.removed_by.layer, a.removed_by.change) == (1, "deleted")
    assert nope.unmatched_pattern
    assert not result.all_found


def test_which_layer_names_a_symlink_itself(image: Image) -> None:
    (answer,) = which_layer(image, ["/etc/l"], Reading()).answers
    assert answer.path == b"etc/l"
    assert answer.node is not None and answer.node.entry is not None
    assert (answer.node.layer, answer.node.entry.link) == (1, b"b")


def test_list_image_final_tree_and_layer_states(image: Image, layout: OciResult) -> None:
    final = list_image(image, "/etc", Reading())
    assert [(r.path, r.layer, r.kind, r.target) for r in final.rows] == [
        (b"etc/b", 1, "file", None),
        (b"etc/c", 2, "file", None),
        (b"etc/l", 1, "symlink", "b"),
    ]
    assert final.digests == layout.image.layer_digests
    after0 = list_image(image, "/etc/*", Reading(), layer=0)
    assert [(r.path, r.entry.size) for r in after0.rows] == [(b"etc/a", 3), (b"etc/b", 1)]
    deref = list_image(image, "/etc/l", Reading(), dereference=True)
    assert [(r.path, r.entry.size, r.layer) for r in deref.rows] == [(b"etc/l", 2, 1)]


def test_list_image_only_gives_the_layers_own_entries(image: Image) -> None:
    rows = list_image(image, "/", Reading(), layer=1, only=True).rows
    assert [(r.path, r.kind) for r in rows] == [
        (b"etc/a", "whiteout"),
        (b"etc/b", "file"),
        (b"etc/l", "symlink"),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"only": True}, "--only needs --layer N"),
        ({"layer": 3}, "--layer 3: the image has layers 0 to 2"),
    ],
)
def test_list_image_refuses_bad_options(image: Image, options: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        list_image(image, "/", Reading(), **options)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_list_image_absent_path(image: Image) -> None:
    with pytest.raises(ImageNotFoundError, match=r"^/etc/a: no such file or directory in the image$"):
        list_image(image, "/etc/a", Reading())


def test_cat_writes_the_final_content(image: Image, tmp_path: Path) -> None:
    out = io.BytesIO()
    assert cat(image, "/etc/l", out, Reading(cache=IndexCache(tmp_path / "cache"))) == 2
    assert out.getvalue() == b"bb"
    with pytest.raises(NotAFileError, match=r"^/etc: is a directory$"):
        cat(image, "/etc", io.BytesIO(), Reading())


def test_diff_layers_per_layer(image: Image) -> None:
    result = diff_layers(image, Reading())
    assert isinstance(result, LayerChanges)
    assert result.only is None
    assert [(s.index, s.added, s.modified, s.deleted, s.bytes_added) for s in result.summaries] == [
        (0, 3, 0, 0, 4),
        (1, 1, 1, 1, 2),
        (2, 1, 0, 0, 4),
    ]
    assert result.efficiency.stored_bytes == 10
    assert result.efficiency.final_bytes == 6
    assert result.efficiency.top_wasters == [(b"etc/a", 3, 1), (b"etc/b", 1, 1)]
    one = diff_layers(image, Reading(), first=1)
    assert isinstance(one, LayerChanges) and one.only == 1
    assert [(c.path, c.change) for c in one.summaries[0].changes] == [
        (b"etc/a", "deleted"),
        (b"etc/b", "modified"),
        (b"etc/l", "added"),
    ]


def test_diff_layers_a_against_b(image: Image) -> None:
    forward = diff_layers(image, Reading(), first=0, second=2)
    assert forward == LayerRange(
        0,
        2,
        [
            PathChange(b"etc/a", ChangeWord.DELETED, "file", 3),
            PathChange(b"etc/b", ChangeWord.MODIFIED, "file", 2, ("content", "mode")),
            PathChange(b"etc/c", ChangeWord.ADDED, "file", 4),
            PathChange(b"etc/l", ChangeWord.ADDED, "symlink", 0),
        ],
    )
    backward = diff_layers(image, Reading(), first=2, second=0)
    assert isinstance(backward, LayerRange)
    assert [(c.path, c.change) for c in backward.changes] == [
        (b"etc/a", "added"),
        (b"etc/b", "modified"),
        (b"etc/c", "deleted"),
        (b"etc/l", "deleted"),
    ]
    with pytest.raises(UsageError, match=r"^B = 3: the image has layers 0 to 2$"):
        diff_layers(image, Reading(), first=0, second=3)


def test_diff_images(layout: OciResult, tmp_path: Path) -> None:
    other = write_oci_layout(tmp_path / "other", [Entry(ImageSpec(LAYERS[:2]), ref="v1")])
    with open_image(layout.reference("v1")) as first, open_image(other.reference("v1")) as second:
        result = diff_images(first, second, Reading())
        same = diff_images(first, first, Reading())
    assert result == ImageDiff(
        [PathChange(b"etc/c", ChangeWord.DELETED, "file", 4)], 2, layout.image.diff_ids[:2]
    )
    assert result.counts() == {"added": 0, "modified": 0, "deleted": 1}
    assert not result.identical
    assert same.identical and same.shared_base_layers == 3


def test_inspect_and_verify(image: Image, layout: OciResult) -> None:
    facts = describe_image(image)
    assert facts.layers == [
        LayerFacts(
            n,
            layout.image.layer_digests[n],
            layout.image.diff_ids[n],
            layout.image.layer_sizes[n],
            layout.image.layer_media_types[n],
            "gzip",
            f"/bin/sh -c #(nop) ADD file:layer{n} in / ",
        )
        for n in range(3)
    ]
    assert (facts.manifest_digest, facts.config_digest) == (
        layout.image.manifest_digest,
        layout.image.config_digest,
    )
    assert (facts.index, facts.tags, facts.warnings) == (None, ["v1"], [])
    findings = verify_image(image)
    assert all_ok(findings)
    assert {f.status for f in findings} == {"ok"}
    assert [f.expected for f in findings if f.kind == "blob"] == layout.image.layer_digests
    assert [f.expected for f in findings if f.kind == "diff_id"] == layout.image.diff_ids


def test_verify_reports_a_tampered_layer(tmp_path: Path) -> None:
    bad = Layer(LAYERS[0], postprocess=lambda blob: blob[:-1] + b"\x01")
    built = write_oci_layout(tmp_path / "bad", [Entry(ImageSpec([bad]), ref="v1")])
    with open_image(built.reference("v1")) as img:
        findings = verify_image(img)
    assert not all_ok(findings)
    assert [(f.blob, f.kind, f.status) for f in findings if f.status != "ok"][:1] == [
        ("layer 0", "blob", "broken")
    ]
