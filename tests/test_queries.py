"""which-layer, ls, cat and diff on hand-made images, and the index cache behind them."""

from __future__ import annotations

import hashlib
import json
import marshal
from pathlib import Path

import pytest

from imgtool import digest, index, tarstream
from tests.conftest import CliRunner
from tests.imagefactory import (
    Dir,
    Entry,
    File,
    Hardlink,
    ImageSpec,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    sha256_digest,
    write_oci_layout,
)

T = 1_600_000_000
LAYERS = [
    make_layer(
        [
            Dir("usr/", mtime=T),
            Dir("usr/bin/", mtime=T),
            File("usr/bin/sh", b"sh", mode=0o755, mtime=T),
            Symlink("bin", "usr/bin", mtime=T),
            Dir("etc/", mtime=T),
            File("etc/conf", b"v1", mtime=T),
            Dir("var/", mtime=T),
            Dir("var/cache/", mtime=T),
            File("var/cache/x", b"x" * 10, mtime=T),
        ]
    ),
    make_layer([File("etc/conf", b"v2", mtime=T + 1), File("usr/bin/sh", b"sh", mode=0o700, mtime=T)]),
    make_layer(
        [
            Whiteout("etc/conf", mtime=T),
            Dir("var/cache/", mtime=T),
            Opaque("var/cache/", mtime=T),
            File("var/cache/y", b"y", mtime=T),
            Hardlink("usr/bin/bash", "usr/bin/sh", mtime=T),
        ]
    ),
]


@pytest.fixture
def ref(tmp_path: Path) -> str:
    spec = ImageSpec(LAYERS, created_by=["base", "update conf", "cleanup"])
    return write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v1")]).reference("v1")


def test_which_layer_words(ref: str, imgtool_cli: CliRunner) -> None:
    run = imgtool_cli("which-layer", ref, "/etc/conf", "/var/cache/x", "/bin/sh", "usr/bin/bash", "--json")
    assert run.code == 1
    docs = {d["query"]: d for d in json.loads(run.stdout)}
    conf = docs["/etc/conf"]
    assert [(h["index"], h["change"], h["what"]) for h in conf["history"]] == [
        (0, "added", []),
        (1, "modified", ["content", "mtime"]),
        (2, "deleted", []),
    ]
    assert [(h["index"], h["change"]) for h in docs["/var/cache/x"]["history"]] == [
        (0, "added"),
        (2, "hidden"),
    ]
    sh = docs["/bin/sh"]
    assert (sh["path"], sh["layer"]["index"], sh["mode"], sh["via"][0]["symlink"]) == (
        "/usr/bin/sh",
        1,
        "0700",
        "/bin",
    )
    assert [(h["index"], h["change"], h["what"]) for h in sh["history"]] == [
        (0, "added", []),
        (1, "modified", ["mode"]),
    ]
    bash = docs["usr/bin/bash"]
    assert (bash["type"], bash["linkname"], bash["layer"]["index"], bash["mode"]) == (
        "hardlink",
        "/usr/bin/sh",
        2,
        "0700",
    )


def test_ls(ref: str, imgtool_cli: CliRunner) -> None:
    run = imgtool_cli("ls", ref, "/var/cache", "--json")
    assert [(r["path"], r["layer"], r["type"]) for r in json.loads(run.stdout)] == [
        ("/var/cache/y", 2, "file")
    ]
    run = imgtool_cli("ls", ref, "/var/cache", "--layer", "1", "--json")
    assert [(r["path"], r["layer"]) for r in json.loads(run.stdout)] == [("/var/cache/x", 0)]
    run = imgtool_cli("ls", ref, "/", "--layer", "2", "--only", "--json")
    assert [(r["path"], r["type"]) for r in json.loads(run.stdout)] == [
        ("/etc/conf", "whiteout"),
        ("/usr/bin/bash", "hardlink"),
        ("/var/cache", "dir"),
        ("/var/cache", "opaque"),
        ("/var/cache/y", "file"),
    ]
    text = imgtool_cli("ls", ref, "/", "--layer", "2", "--only").stdout.splitlines()
    assert text[2].split()[-2:] == ["/etc/conf", "(deleted)"]
    run = imgtool_cli("ls", ref, "/bin")  # a symlink to a directory is listed through
    assert [line.split(maxsplit=6)[-1] for line in run.stdout.splitlines()[2:]] == [
        "/usr/bin/bash => /usr/bin/sh",
        "/usr/bin/sh",
    ]
    recursive = imgtool_cli("ls", ref, "/usr", "-R", "--json")
    assert [r["path"] for r in json.loads(recursive.stdout)] == ["/usr/bin", "/usr/bin/bash", "/usr/bin/sh"]


def test_cat(ref: str, imgtool_cli: CliRunner) -> None:
    assert imgtool_cli("cat", ref, "/bin/sh").stdout_bytes == b"sh"
    assert imgtool_cli("cat", ref, "/var/cache/y").stdout_bytes == b"y"
    gone = imgtool_cli("cat", ref, "/etc/conf")
    assert (gone.code, gone.stderr) == (1, "imgtool: error: /etc/conf: no such file in the image\n")


def test_diff_layers(ref: str, imgtool_cli: CliRunner) -> None:
    docs = json.loads(imgtool_cli("diff", "layers", ref, "--json").stdout)
    assert [(d["index"], d["created_by"]) for d in docs] == [(0, "base"), (1, "update conf"), (2, "cleanup")]
    assert docs[1]["changes"] == [
        {"path": "/etc/conf", "change": "modified", "type": "file", "size": 2, "what": ["content", "mtime"]},
        {"path": "/usr/bin/sh", "change": "modified", "type": "file", "size": 2, "what": ["mode"]},
    ]
    assert docs[1]["summary"] == {
        "added": 0,
        "modified": 2,
        "metadata_only": 1,
        "deleted": 0,
        "bytes_added": 2,
        "bytes_unreachable": 4,
    }
    assert {(c["path"], c["change"]) for c in docs[2]["changes"]} == {
        ("/etc/conf", "deleted"),
        ("/var/cache/x", "deleted"),
        ("/var/cache/y", "added"),
        ("/usr/bin/bash", "added"),
    }
    text = imgtool_cli("diff", "layers", ref).stdout
    assert "Image efficiency: " in text
    between = json.loads(imgtool_cli("diff", "layers", ref, "0", "2", "--json").stdout)
    assert between == {
        "from": 0,
        "to": 2,
        "changes": [
            {"path": "/etc/conf", "change": "deleted", "type": "file", "size": 2},
            {"path": "/usr/bin/bash", "change": "added", "type": "file", "size": 2},
            {"path": "/usr/bin/sh", "change": "modified", "type": "file", "size": 2, "what": ["mode"]},
            {"path": "/var/cache/x", "change": "deleted", "type": "file", "size": 10},
            {"path": "/var/cache/y", "change": "added", "type": "file", "size": 1},
        ],
    }


def test_a_second_query_reads_no_layer(
    ref: str, imgtool_cli: CliRunner, opened: list[int], private_cache: Path
) -> None:
    assert imgtool_cli("which-layer", ref, "/etc/conf").code == 1
    assert sorted(opened) == [0, 1, 2]
    assert len(list((private_cache / "imgtool" / "index-v4" / "sha256").iterdir())) == 3
    opened.clear()
    for args in (["which-layer", ref, "/bin/sh"], ["ls", ref, "/", "-R"], ["diff", "layers", ref]):
        assert imgtool_cli(*args).code == 0
    assert opened == []
    assert imgtool_cli("ls", ref, "/", "--no-cache").code == 0
    assert sorted(opened) == [0, 1, 2]


def test_no_cache_writes_nothing(ref: str, imgtool_cli: CliRunner, private_cache: Path) -> None:
    assert imgtool_cli("ls", ref, "/", "--no-cache").code == 0
    assert not (private_cache / "imgtool").exists()


def test_a_corrupt_cache_file_is_rebuilt(ref: str, imgtool_cli: CliRunner, private_cache: Path) -> None:
    assert imgtool_cli("ls", ref, "/").code == 0
    for path in (private_cache / "imgtool" / "index-v4" / "sha256").iterdir():
        path.write_bytes(b"garbage")
    run = imgtool_cli("ls", ref, "/usr", "--json")
    assert run.code == 0
    assert [r["path"] for r in json.loads(run.stdout)] == ["/usr/bin"]


def test_flatten_caches_an_index_without_digests_that_queries_complete(
    ref: str, imgtool_cli: CliRunner, opened: list[int], tmp_path: Path
) -> None:
    assert imgtool_cli("flatten", ref, "-o", str(tmp_path / "one"), "-q").code == 0
    opened.clear()
    assert imgtool_cli("flatten", ref, "-o", str(tmp_path / "two"), "-q").code == 0
    assert sorted(opened) == [1, 2]  # from the cached indexes: only the layers whose files survive
    opened.clear()
    run = imgtool_cli("which-layer", ref, "/etc/conf", "--json")  # needs content digests: indexes rebuilt
    assert [h["what"] for h in json.loads(run.stdout)[0]["history"]][1] == ["content", "mtime"]
    assert sorted(opened) == [0, 1, 2]
    opened.clear()
    assert imgtool_cli("diff", "layers", ref).code == 0
    assert opened == []


def test_digests_of_another_algorithm_are_never_compared_with_ours(
    ref: str,
    imgtool_cli: CliRunner,
    opened: list[int],
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cache written where the content hash was another (blake3 absent) is rebuilt, not mixed in."""
    with monkeypatch.context() as patch:
        patch.setattr(index, "CONTENT_HASH", "sha256")
        patch.setattr(tarstream, "content_hasher", hashlib.sha256)
        assert imgtool_cli("which-layer", ref, "/usr/bin/sh").code == 0
    cached = private_cache / "imgtool" / "index-v4" / "sha256"
    (cached / sha256_digest(LAYERS[1]).removeprefix("sha256:")).unlink()
    opened.clear()
    run = imgtool_cli("which-layer", ref, "/usr/bin/sh", "--json")
    assert sorted(opened) == [0, 1, 2]
    assert [h["what"] for h in json.loads(run.stdout)[0]["history"]] == [[], ["mode"]]
    for path in cached.iterdir():
        assert marshal.loads(path.read_bytes())["digests"] == digest.CONTENT_HASH
