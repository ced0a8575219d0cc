"""The merge's bounds: the resolved path length limit, deep trees without recursion, and resolution that
resumes from a resolved ancestor with the same answer as a resolution from the root."""

from __future__ import annotations

import pytest

from imgtool.errors import LimitExceededError
from imgtool.layers.tarreader import MAX_PATH_BYTES
from imgtool.merge.changes import ChangeLog
from imgtool.merge.overlay import Tree
from imgtool.ops.diff import compare_trees
from tests.merge.test_overlay import D, E, O, S, W, apply, summary

DEEP = "/".join(["d"] * 3000)  # 5 999 bytes, 3 000 levels: deeper than Python recurses


def test_the_limit_is_the_documented_value() -> None:
    assert MAX_PATH_BYTES == 8192


def test_a_path_of_the_limit_is_kept_one_byte_longer_is_refused() -> None:
    longest = "d/" * 2000 + "f" * (MAX_PATH_BYTES - 4000)
    tree = apply([E(longest)])
    assert tree.lookup(longest.encode()) is not None
    with pytest.raises(LimitExceededError) as caught:
        apply([E(longest + "f")])
    assert str(caught.value) == (
        f"entry /{'d/' * 48}… (8193 bytes): path /{'d/' * 48}… (8193 bytes) is longer than the limit of "
        "8192 bytes"
    )


def test_the_limit_counts_the_path_as_resolved_through_symlinks() -> None:
    target = "a/" * 3000 + "b"  # 6 001 bytes
    fits = "l/" + "y" * (MAX_PATH_BYTES - len(target) - 3) + "/f"  # 8 192 bytes resolved
    tree = apply([S("l", target), E(fits)])
    assert tree.resolve(fits.encode())[0] == f"{target}/{'y' * 2188}/f".encode()
    with pytest.raises(LimitExceededError, match=r"^entry /l/yyy.*: path /a/a/.* is longer than the limit"):
        apply([S("l", target), E("l/" + "y" * 2300)])


def test_a_query_beyond_the_limit_is_a_limit_error() -> None:
    tree = apply([S("l", "a/" * 3000)])
    with pytest.raises(LimitExceededError, match="is longer than the limit of 8192 bytes"):
        tree.resolve(b"l/l2/" + b"x" * 3000)


def test_resuming_from_a_resolved_ancestor_follows_dotdot_through_links() -> None:
    # a/b is resolved (for up and c) before a/b/up/g/h needs a/b/up/g: up -> ../.. is the root.
    tree = apply([D("a/b/c"), S("a/b/up", "../.."), E("a/b/c/f1"), E("a/b/up/g/h"), E("a/b/up/a/b/c/f2")])
    assert summary(tree) == {
        "a": "dir*@0",
        "a/b": "dir*@0",
        "a/b/c": "dir@0",
        "a/b/c/f1": "file@0",
        "a/b/c/f2": "file@0",
        "a/b/up": "symlink@0",
        "g": "dir*@0",
        "g/h": "file@0",
    }


def test_a_cached_directory_is_not_used_once_a_layer_replaced_it() -> None:
    tree = apply([E("a/b/f1"), E("a"), S("a", "real"), E("a/b/f2")])
    assert summary(tree) == {
        "a": "symlink@0",
        "real": "dir*@0",
        "real/b": "dir*@0",
        "real/b/f2": "file@0",
    }


def test_targets_of_dots_and_slashes_resolve_as_written() -> None:
    tree = apply([D("real/"), S("x", "./" * 10_000 + "real//./"), E("x/f"), S("abs", "//.//real/")])
    assert tree.resolve(b"x/f")[0] == b"real/f"
    assert tree.resolve(b"abs/f")[0] == b"real/f"
    assert tree.resolve(b"x/f", follow_last=False)[2] == [b"x"]


def test_an_opaque_root_over_a_deep_tree_keeps_the_layer_s_own_paths() -> None:
    log = ChangeLog()
    tree = apply([E(f"{DEEP}/old")], [E(f"{DEEP}/new"), O("")], log=log)
    assert [path for path, node in tree.walk() if node.entry is not None] == [f"{DEEP}/new".encode()]
    hidden = [(c.layer, c.path) for c in log.changes if c.change == "hidden"]
    assert hidden == [(1, f"{DEEP}/old".encode())]


def test_a_whiteout_of_a_deep_tree_reports_every_path() -> None:
    log = ChangeLog()
    apply([E(f"{DEEP}/f")], [W("d")], log=log)
    deleted = [c.path for c in log.changes if c.change == "deleted"]
    assert len(deleted) == 3001
    assert deleted[0] == b"d"


def test_comparing_deep_trees() -> None:
    old, new = apply([E(f"{DEEP}/a")]), apply([E(f"{DEEP}/b")])
    assert [(c.path, c.change) for c in compare_trees(old, new)] == [
        (f"{DEEP}/a".encode(), "deleted"),
        (f"{DEEP}/b".encode(), "added"),
    ]
    assert compare_trees(new, Tree())[0].path == b"d"


def test_a_symlink_created_where_a_resolution_passed_lexically_is_followed_from_then_on() -> None:
    # a -> b/.. is the root while b does not exist; once b -> d/e exists, a is d (as umoci, which
    # resolves every entry against the tree as it stands, has it).
    tree = apply([D("d/e"), S("a", "b/.."), E("a/x"), S("b", "d/e"), E("a/y")])
    assert summary(tree) == {
        "a": "symlink@0",
        "b": "symlink@0",
        "d": "dir*@0",
        "d/e": "dir@0",
        "d/y": "file@0",
        "x": "file@0",
    }
