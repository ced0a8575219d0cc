"""squash, as a property: for random stacks of layers over a few names (files, directories, symlinks
through which later entries go, hardlinks, whiteouts, opaque markers) and any range, the squashed
image flattens to the original's tree byte for byte, and keeps the layers outside the range."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from imgtool.errors import ImgtoolError
from imgtool.flatten.api import flatten
from imgtool.ops.squash import squash_image
from imgtool.sources import open_destination, open_image
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    Hardlink,
    ImageSpec,
    Member,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    write_oci_layout,
)

NAMES = ["a", "b", "d", "d/x", "d/y", "d/e", "d/e/z", "l", "l/q", "m/n"]
DIRS = ["d/", "d/e/", "m/"]

member = st.one_of(
    st.builds(
        File,
        st.sampled_from(NAMES),
        st.sampled_from([b"1", b"22", b""]),
        mode=st.sampled_from([0o644, 0o600]),
    ),
    st.builds(
        Dir, st.sampled_from(DIRS), mode=st.sampled_from([0o755, 0o700]), mtime=st.sampled_from([1, 2])
    ),
    st.builds(Whiteout, st.sampled_from(NAMES)),
    st.builds(Opaque, st.sampled_from(DIRS)),
    st.builds(Hardlink, st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.builds(Symlink, st.sampled_from(["l", "d/e", "a"]), st.sampled_from(["d", "/d/e", "m", "x"])),
)
stack = st.lists(st.lists(member, min_size=1, max_size=5), min_size=1, max_size=5)


def _flat(ref: str) -> bytes:
    out = io.BytesIO()
    with open_image(ref) as image:
        flatten(image, out)
    return out.getvalue()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layers=stack, data=st.data())
def test_any_range_of_any_stack_keeps_the_tree(layers: list[list[Member]], data: st.DataObject) -> None:
    first = data.draw(st.integers(0, len(layers) - 1))
    last = data.draw(st.integers(first, len(layers) - 1))
    with tempfile.TemporaryDirectory(prefix="imgtool-squash-test-") as where:
        root = Path(where)
        src = write_oci_layout(
            root / "src", [Entry(ImageSpec([make_layer(m) for m in layers]), ref="v")]
        ).reference("v")
        try:
            expected = _flat(src)
        except ImgtoolError:
            assume(False)  # an image imgtool refuses (a hardlink to nothing, a file as a parent)
        with open_image(src) as image, open_destination(f"oci:{root / 'out'}:s") as out:
            squash_image(image, out, first=first, last=last)
            kept = [str(layer.digest) for layer in image.layers[:first] + image.layers[last + 1 :]]
        assert _flat(f"oci:{root / 'out'}:s") == expected
        with open_image(f"oci:{root / 'out'}:s") as image:
            assert [str(layer.digest) for layer in image.layers[:first] + image.layers[first + 1 :]] == kept
