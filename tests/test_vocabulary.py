"""One vocabulary: the entry kinds and change words are the words docs/json.md documents, and every
map between kinds (or change words) and something else is keyed by the one enum."""

from __future__ import annotations

import marshal
import re
import stat
from pathlib import Path
from typing import Final

from imgtool.console.output import CHANGE_COLOURS, to_json
from imgtool.flatten import export
from imgtool.image.digest import Digest
from imgtool.layers import tarreader, tarstream
from imgtool.layers.tarstream import KIND_BY_VALUE, KIND_NAMES, KIND_TYPEFLAGS, Entry, Kind
from imgtool.merge.changes import REMOVALS, ChangeWord
from imgtool.merge.index import IndexCache, LayerIndex
from imgtool.ops import listing

DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "json.md"


def _documented(field: str) -> list[set[str]]:
    """The backquoted words of each table row that documents ``field``, one set per row."""
    rows = re.findall(rf"^\| `{field}` \|[^|]*\|(.*)\|$", DOC.read_text(), re.MULTILINE)
    assert rows, field
    return [set(re.findall(r"`([a-z]+)`", row)) for row in rows]  # words, not options such as `--only`


def test_kinds_are_the_documented_type_words() -> None:
    rows = _documented("type")
    assert set().union(*rows) == set(KIND_NAMES.values())
    # which-layer's own row: every kind a path of the merged tree can be (no whiteout, no opaque)
    assert {"file", "dir", "symlink", "hardlink", "char", "block", "fifo"} in rows


def test_change_words_are_the_documented_change_words() -> None:
    rows = _documented("change")
    assert set().union(*rows) == {str(word) for word in ChangeWord}
    # diff's coarser vocabulary: every removal is a deletion
    assert {"added", "modified", "deleted"} in rows
    assert set(ChangeWord) - REMOVALS | {ChangeWord.DELETED} == {"added", "modified", "deleted"}


def test_kind_words_and_values() -> None:
    assert {kind: kind.word for kind in Kind} == KIND_NAMES
    assert all(KIND_NAMES[kind] == kind.name.lower() for kind in Kind)
    # the values are stored in the header cache: renumbering them would misread every cached index
    assert [(kind.name, kind.value) for kind in KIND_BY_VALUE] == [
        ("FILE", 0),
        ("DIR", 1),
        ("SYMLINK", 2),
        ("HARDLINK", 3),
        ("CHAR", 4),
        ("BLOCK", 5),
        ("FIFO", 6),
        ("WHITEOUT", 7),
        ("OPAQUE", 8),
    ]


def test_every_map_is_keyed_by_the_enums() -> None:
    assert set(KIND_TYPEFLAGS) == set(Kind) - {Kind.WHITEOUT, Kind.OPAQUE}
    assert KIND_TYPEFLAGS == {
        Kind.FILE: tarreader.REGULAR,
        Kind.DIR: tarreader.DIRECTORY,
        Kind.SYMLINK: tarreader.SYMLINK,
        Kind.HARDLINK: tarreader.HARDLINK,
        Kind.CHAR: tarreader.CHAR,
        Kind.BLOCK: tarreader.BLOCKDEV,
        Kind.FIFO: tarreader.FIFO,
    }
    assert {flag: kind for kind, flag in KIND_TYPEFLAGS.items()} == tarstream._TYPEFLAG_KINDS
    assert export._TYPEFLAGS.items() <= KIND_TYPEFLAGS.items()
    assert set(export._TYPEFLAGS) == set(KIND_TYPEFLAGS) - {Kind.FILE, Kind.HARDLINK}
    assert set(listing._TYPE_CHARS) == set(Kind)
    assert listing._KIND_BITS == {
        Kind.FILE: stat.S_IFREG,
        Kind.DIR: stat.S_IFDIR,
        Kind.SYMLINK: stat.S_IFLNK,
        Kind.CHAR: stat.S_IFCHR,
        Kind.BLOCK: stat.S_IFBLK,
        Kind.FIFO: stat.S_IFIFO,
    }
    assert set(CHANGE_COLOURS) == set(ChangeWord)
    assert all(type(key) is Kind for key in [*KIND_NAMES, *KIND_TYPEFLAGS, *listing._TYPE_CHARS])
    assert all(type(key) is ChangeWord for key in [*CHANGE_COLOURS, *REMOVALS])


def test_change_words_dump_as_their_words() -> None:
    doc = {"change": ChangeWord.HIDDEN, "summary": {ChangeWord.ADDED: 1, ChangeWord.DELETED: 2}}
    assert to_json(doc) == to_json({"change": "hidden", "summary": {"added": 1, "deleted": 2}})
    assert (
        to_json(doc) == '{\n  "change": "hidden",\n  "summary": {\n    "added": 1,\n    "deleted": 2\n  }\n}'
    )
    assert f"{ChangeWord.REPLACED} by layer 2" == "replaced by layer 2"


def _entry(ordinal: int, kind: Kind) -> Entry:
    return Entry(f"p{ordinal}".encode(), kind, 0o644, 0, 0, 0, 0, b"", 0, 0, None, None, ordinal)


def test_the_cache_stores_plain_ints_and_loads_kinds(tmp_path: Path) -> None:
    diff_id = Digest("sha256", "ab" * 32)
    cache = IndexCache(tmp_path)
    cache.store(LayerIndex(diff_id, [_entry(i, kind) for i, kind in enumerate(Kind)], [], False))
    stored = marshal.loads(cache._path(diff_id).read_bytes())
    assert stored["kind"] == bytes(range(9))  # one byte an entry: the values, never renumbered
    loaded = cache.load(diff_id, need_digests=False)
    assert loaded is not None
    assert [entry.kind for entry in loaded.entries] == list(Kind)
    assert {type(entry.kind) for entry in loaded.entries} == {Kind}
