"""The flatten plan on in-memory trees: which paths are directories, special files, data to stream
(grouped by the layer holding it) and links to an inode already written."""

from __future__ import annotations

from imgtool.flatten.plan import WritePlan, make_plan, shared_inodes
from imgtool.layers.tarstream import Entry, Kind
from imgtool.merge.overlay import Tree
from tests.merge.test_overlay import D, E, H, S, W


def plan_of(*layers: list[Entry]) -> tuple[Tree, WritePlan]:
    tree = Tree()
    for number, entries in enumerate(layers):
        tree.apply(number, entries)
    return tree, make_plan(tree)


def data_paths(plan: WritePlan) -> dict[int, list[bytes]]:
    return {layer: [path for path, _ in files.values()] for layer, files in plan.data.items()}


def test_each_kind_of_path_has_its_place() -> None:
    _, plan = plan_of([D("d"), E("d/f", size=5), E("d/empty", size=0), S("d/link", "f"), E("top", size=3)])
    assert [path for path, _ in plan.dirs] == [b"", b"d"]
    assert sorted(path for path, _ in plan.specials) == [b"d/empty", b"d/link"]
    assert data_paths(plan) == {0: [b"d/f", b"top"]}
    assert (plan.data_bytes, plan.layer_bytes, plan.path_count) == (8, {0: 8}, 6)
    assert plan.links == {} and plan.shared == set()


def test_data_is_read_from_the_layer_that_holds_it_and_shadowed_files_are_not() -> None:
    lower = E("a", size=10)
    _, plan = plan_of([lower, E("b", size=20), E("gone", size=40)], [E("a", size=1), W("gone")])
    assert data_paths(plan) == {0: [b"b"], 1: [b"a"]}
    assert plan.layers_to_read() == [0, 1]
    assert plan.layer_bytes == {0: 20, 1: 1}
    # The ranges of the layer's tar that hold what is written: the shadowed ``a`` of layer 0 is not one.
    assert plan.data_ranges(0) == [(0, 20)]
    assert lower.ordinal not in plan.data[0]


def test_hardlinks_share_the_inode_of_the_first_path_in_tree_order() -> None:
    tree, plan = plan_of([E("z/orig", size=4), H("a/link", "z/orig"), H("m/second", "z/orig")])
    (key,) = plan.shared
    assert shared_inodes(tree) == {key}
    assert data_paths(plan) == {0: [b"a/link"]}  # the first in tree order carries the data
    assert plan.links == {key: [b"m/second", b"z/orig"]}
    assert plan.data_bytes == 4  # written once, whatever its names


def test_a_hardlink_keeps_the_inode_after_its_original_is_replaced() -> None:
    _, plan = plan_of([E("orig", size=4), H("link", "orig")], [E("orig", size=7)])
    assert data_paths(plan) == {0: [b"link"], 1: [b"orig"]}
    assert plan.links == {}  # one path left for each inode
    assert plan.data_bytes == 11


def test_a_hardlink_to_an_empty_file_is_a_special_with_its_links() -> None:
    _, plan = plan_of([E("empty", size=0), H("other", "empty")])
    assert [path for path, _ in plan.specials] == [b"empty"]
    assert list(plan.links.values()) == [[b"other"]]
    assert plan.data == {}
    assert all(node.content is not None and node.content.kind == Kind.FILE for _, node in plan.specials)
