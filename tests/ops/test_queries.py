"""which-layer, ls, cat and diff on hand-made images, and the index cache behind them."""

from __future__ import annotations

import hashlib
import io
import json
import marshal
import tarfile
from pathlib import Path

import pytest

from imgtool.image import digest
from imgtool.layers import tarstream
from imgtool.merge import index
from imgtool.ops import listing
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    Hardlink,
    ImageSpec,
    Opaque,
    Symlink,
    Whiteout,
    aufs_bookkeeping_layers,
    compress,
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


def test_which_layer_words(ref: str, imgtool_cli: ImgtoolCli) -> None:
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


def test_ls(ref: str, imgtool_cli: ImgtoolCli) -> None:
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


def test_cat(ref: str, imgtool_cli: ImgtoolCli) -> None:
    assert imgtool_cli("cat", ref, "/bin/sh").stdout_bytes == b"sh"
    assert imgtool_cli("cat", ref, "/var/cache/y").stdout_bytes == b"y"
    gone = imgtool_cli("cat", ref, "/etc/conf")
    assert (gone.code, gone.stderr) == (1, "imgtool: error: /etc/conf: no such file in the image\n")


def test_diff_layers(ref: str, imgtool_cli: ImgtoolCli) -> None:
    docs = json.loads(imgtool_cli("diff", "layers", ref, "--json").stdout)["layers"]
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
    ref: str, imgtool_cli: ImgtoolCli, opened: list[int], private_cache: Path
) -> None:
    assert imgtool_cli("which-layer", ref, "/etc/conf").code == 1
    assert sorted(opened) == [0, 1, 2]
    assert len(list((private_cache / "imgtool" / "index-v5" / "sha256").iterdir())) == 3
    opened.clear()
    for args in (["which-layer", ref, "/bin/sh"], ["ls", ref, "/", "-R"], ["diff", "layers", ref]):
        assert imgtool_cli(*args).code == 0
    assert opened == []
    assert imgtool_cli("ls", ref, "/", "--no-cache").code == 0
    assert sorted(opened) == [0, 1, 2]


def test_no_cache_writes_nothing(ref: str, imgtool_cli: ImgtoolCli, private_cache: Path) -> None:
    assert imgtool_cli("ls", ref, "/", "--no-cache").code == 0
    assert not (private_cache / "imgtool").exists()


def test_a_corrupt_cache_file_is_rebuilt(ref: str, imgtool_cli: ImgtoolCli, private_cache: Path) -> None:
    assert imgtool_cli("ls", ref, "/").code == 0
    for path in (private_cache / "imgtool" / "index-v5" / "sha256").iterdir():
        path.write_bytes(b"garbage")
    run = imgtool_cli("ls", ref, "/usr", "--json")
    assert run.code == 0
    assert [r["path"] for r in json.loads(run.stdout)] == ["/usr/bin"]


def test_flatten_caches_an_index_without_digests_that_queries_complete(
    ref: str, imgtool_cli: ImgtoolCli, opened: list[int], tmp_path: Path
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
    imgtool_cli: ImgtoolCli,
    opened: list[int],
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cache written where the content hash was another (blake3 absent) is rebuilt, not mixed in."""
    with monkeypatch.context() as patch:
        patch.setattr(index, "CONTENT_HASH", "sha256")
        patch.setattr(tarstream, "content_hasher", hashlib.sha256)
        assert imgtool_cli("which-layer", ref, "/usr/bin/sh").code == 0
    cached = private_cache / "imgtool" / "index-v5" / "sha256"
    (cached / sha256_digest(LAYERS[1]).removeprefix("sha256:")).unlink()
    opened.clear()
    run = imgtool_cli("which-layer", ref, "/usr/bin/sh", "--json")
    assert sorted(opened) == [0, 1, 2]
    assert [h["what"] for h in json.loads(run.stdout)[0]["history"]] == [[], ["mode"]]
    for path in cached.iterdir():
        assert marshal.loads(path.read_bytes())["digests"] == digest.CONTENT_HASH


def test_nothing_is_below_a_file_whatever_the_command(ref: str, imgtool_cli: ImgtoolCli) -> None:
    """Every command resolves a path through the same code: /usr/bin/sh/x does not exist."""
    run = imgtool_cli("which-layer", ref, "/usr/bin/sh/x", "/bin/sh/x")
    assert (run.code, run.stderr) == (1, "")
    assert run.stdout == (
        "/usr/bin/sh/x: not in the image: no layer ever had it\n"
        "\n"
        "/usr/bin/sh/x: not in the image: no layer ever had it\n"
    )
    docs = json.loads(imgtool_cli("which-layer", ref, "/usr/bin/sh/x", "--json").stdout)
    assert [(d["path"], d["exists"], d["layer"], d["type"]) for d in docs] == [
        ("/usr/bin/sh/x", False, None, None)
    ]
    run = imgtool_cli("ls", ref, "/bin/sh/x")
    assert (run.code, run.stdout, run.stderr) == (
        1,
        "",
        "imgtool: error: /bin/sh/x: no such file or directory in the image\n",
    )
    run = imgtool_cli("cat", ref, "/usr/bin/sh/x")
    assert (run.code, run.stdout, run.stderr) == (
        1,
        "",
        "imgtool: error: /usr/bin/sh/x: no such file in the image\n",
    )


LINKS = [
    make_layer(
        [
            Dir("bin/", mtime=T),
            File("bin/busybox", b"busybox", mode=0o755, mtime=T),
            Symlink("bin/[", "busybox", mtime=T + 1),
            Symlink("bin/ls", "busybox", mtime=T + 1),
            Symlink("bin/gone", "nowhere", mtime=T + 1),
            Symlink("sbin", "bin", mtime=T + 2),
            Dir("etc/", mtime=T),
            File("etc/a.conf", b"a", mtime=T + 500_000_000 // 10**9),
            File("etc/b.conf", b"bb", mtime=T),
            File("etc/hosts", b"h", mtime=T),
        ]
    )
]


@pytest.fixture
def links_ref(tmp_path: Path) -> str:
    return write_oci_layout(tmp_path / "links", [Entry(ImageSpec(LINKS), ref="v1")]).reference("v1")


def _paths(run_stdout: str) -> list[str]:
    """The path column of an ls table."""
    lines = run_stdout.splitlines()
    column = lines[0].index("path")
    return [line[column:] for line in lines[2:]]


def test_ls_lists_a_symlink_itself_unless_asked_to_follow(links_ref: str, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("ls", links_ref, "/bin/[")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout == (
        "mode        owner    size    mtime                layer    path\n"
        "----------  -------  ------  -------------------  -------  -----------------\n"
        "lrwxrwxrwx  0:0              2020-09-13 12:26:41  0        /bin/[ -> busybox\n"
    )
    run = imgtool_cli("ls", links_ref, "/bin/[", "-L")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout == (
        "mode        owner    size    mtime                layer    path\n"
        "----------  -------  ------  -------------------  -------  ------\n"
        "-rwxr-xr-x  0:0      7       2020-09-13 12:26:40  0        /bin/[\n"
    )
    # A symlink to a directory is listed through, as ls lists it; a dangling one as itself.
    assert _paths(imgtool_cli("ls", links_ref, "/sbin").stdout) == [
        "/bin/[ -> busybox",
        "/bin/busybox",
        "/bin/gone -> nowhere",
        "/bin/ls -> busybox",
    ]
    assert _paths(imgtool_cli("ls", links_ref, "/sbin", "--dereference").stdout) == [
        "/bin/[",
        "/bin/busybox",
        "/bin/gone -> nowhere",
        "/bin/ls",
    ]
    assert _paths(imgtool_cli("ls", links_ref, "/bin/gone", "-L").stdout) == ["/bin/gone -> nowhere"]


def test_ls_accepts_the_patterns_which_layer_accepts(links_ref: str, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("ls", links_ref, "/etc/*.conf", "--json")
    assert (run.code, run.stderr) == (0, "")
    assert [(r["path"], r["size"]) for r in json.loads(run.stdout)] == [
        ("/etc/a.conf", 1),
        ("/etc/b.conf", 2),
    ]
    which = json.loads(imgtool_cli("which-layer", links_ref, "/etc/*.conf", "--json").stdout)
    assert [d["path"] for d in which] == ["/etc/a.conf", "/etc/b.conf"]
    # A pattern searches through a symlinked directory, as a shell's glob does.
    assert _paths(imgtool_cli("ls", links_ref, "/sbin/[bl]*").stdout) == [
        "/bin/busybox",
        "/bin/ls -> busybox",
    ]
    assert [
        d["path"] for d in json.loads(imgtool_cli("which-layer", links_ref, "/sbin/l?", "--json").stdout)
    ] == ["/bin/ls"]
    run = imgtool_cli("ls", links_ref, "/etc/*.txt")
    assert (run.code, run.stdout, run.stderr) == (
        1,
        "",
        "imgtool: error: /etc/*.txt: no path in the image matches\n",
    )


def test_ls_json_times_are_rfc3339(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    layer = make_layer([File("a", b"", mtime=T), File("c", b"", mtime=-1)])
    ref = write_oci_layout(tmp_path / "t", [Entry(ImageSpec([layer]), ref="v1")]).reference("v1")
    run = imgtool_cli("ls", ref, "/", "--json")
    assert (run.code, run.stderr) == (0, "")
    assert [(r["path"], r["mtime"]) for r in json.loads(run.stdout)] == [
        ("/a", "2020-09-13T12:26:40Z"),
        ("/c", "1969-12-31T23:59:59Z"),
    ]
    assert listing.rfc3339(T * 10**9 + 250_000_000) == "2020-09-13T12:26:40.25Z"
    assert listing.rfc3339(T * 10**9 + 1) == "2020-09-13T12:26:40.000000001Z"
    assert listing.rfc3339(10**21) is None  # past the year 9999


def test_diff_layers_in_either_order_as_git_diff(ref: str, imgtool_cli: ImgtoolCli) -> None:
    forward = json.loads(imgtool_cli("diff", "layers", ref, "0", "2", "--json").stdout)["changes"]
    run = imgtool_cli("diff", "layers", ref, "2", "0", "--json")
    assert (run.code, run.stderr) == (0, "")
    backward = json.loads(run.stdout)
    assert (backward["from"], backward["to"]) == (2, 0)
    undo = {"added": "deleted", "deleted": "added", "modified": "modified"}
    assert [(c["path"], c["change"]) for c in backward["changes"]] == [
        (c["path"], undo[c["change"]]) for c in forward
    ]
    run = imgtool_cli("diff", "layers", ref, "1", "1")
    assert (run.code, run.stdout, run.stderr) == (0, "no changes from layer 1 to layer 1\n", "")
    run = imgtool_cli("diff", "layers", ref, "1", "1", "--json")
    assert json.loads(run.stdout) == {"from": 1, "to": 1, "changes": []}


def test_sizes_count_files_not_names(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    """One 1000-byte file with five more hardlinks is 1000 bytes, as du counts it."""
    names = ["bin/busybox", *(f"bin/l{n}" for n in range(5))]
    layers = [
        make_layer(
            [Dir("bin/"), File("bin/busybox", b"b" * 1000), *(Hardlink(n, "bin/busybox") for n in names[1:])]
        ),
        make_layer(
            [Hardlink("bin/more", "bin/busybox"), File("bin/own", b"o" * 10), Hardlink("bin/own2", "bin/own")]
        ),
        make_layer([Whiteout(n) for n in [*names, "bin/more"]]),
    ]
    ref = write_oci_layout(tmp_path / "h", [Entry(ImageSpec(layers), ref="v1")]).reference("v1")
    run = imgtool_cli("diff", "layers", ref, "--json")
    assert (run.code, run.stderr) == (0, "")
    assert [
        (d["summary"]["bytes_added"], d["summary"]["bytes_unreachable"])
        for d in json.loads(run.stdout)["layers"]
    ] == [
        (1000, 0),
        (10, 0),  # the hardlink to layer 0's file stores no data
        (0, 1000),  # the last of seven names gone: the file is unreachable, once
    ]
    assert json.loads(run.stdout)["image"] == {
        "stored_bytes": 1010,
        "final_bytes": 10,
        "wasted_bytes": 1000,
        "efficiency": round(10 / 1010, 6),
        # the name whose removal left the file unreachable, and the layer that stored its bytes
        "wasted_files": [{"path": "/bin/more", "wasted_bytes": 1000, "versions_lost": 1, "layers": [0]}],
    }
    text = imgtool_cli("diff", "layers", ref).stdout
    assert text.endswith(
        "Image efficiency: 1.0%  (layers store 1.0 KB, the final tree holds 10 B, wasted 1.0 KB)\n"
        "wasted    versions lost    path\n"
        "--------  ---------------  ---------\n"
        "1.0 KB    1                /bin/more\n"
    )
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out"), "--layers", "1")
    assert (run.code, run.stdout) == (0, "")
    assert run.stderr == f"imgtool: wrote 11 paths (1.0 KB of file data) to {tmp_path / 'out'}\n"


def test_diff_images_says_shared_layers_once(tmp_path: Path, ref: str, imgtool_cli: ImgtoolCli) -> None:
    def image(name: str, layers: list[bytes]) -> str:
        return write_oci_layout(tmp_path / name, [Entry(ImageSpec(layers), ref="v1")]).reference("v1")

    same_base = image("two", LAYERS[:2])
    run = imgtool_cli("diff", "images", same_base, image("two-again", LAYERS[:2]))
    assert (run.code, run.stdout, run.stderr) == (
        0,
        "0 added, 0 modified, 0 deleted; 2 layers in common, all at the base\n",
        "",
    )
    run = imgtool_cli("diff", "images", ref, image("gap", [LAYERS[0], LAYERS[2]]), "-q")
    assert run.code == 1
    assert run.stdout.endswith("; 2 layers in common, 1 of them at the base\n")
    run = imgtool_cli("diff", "images", image("one", LAYERS[1:2]), image("other", LAYERS[:1]))
    assert run.stdout.endswith("; no layers in common\n")


AUFS = [make_layer(members) for members in aufs_bookkeeping_layers(T)]


def test_aufs_bookkeeping_stays_out_and_its_hardlinks_resolve(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    """As Docker applies a layer saved by its aufs driver: no .wh..wh.* in the tree, links resolved."""
    ref = write_oci_layout(tmp_path / "aufs", [Entry(ImageSpec(AUFS), ref="v1")]).reference("v1")
    run = imgtool_cli("ls", ref, "/", "-R", "--json")
    assert (run.code, run.stderr) == (0, "")
    assert [(r["path"], r["type"], r["size"], r["mode"], r["layer"]) for r in json.loads(run.stdout)] == [
        ("/bin", "dir", 0, "0755", 1),
        ("/bin/ls", "hardlink", 8, "0755", 1),
        ("/bin/old", "file", 3, "0644", 0),
        ("/bin/sh", "hardlink", 8, "0755", 1),
    ]
    assert imgtool_cli("cat", ref, "/bin/sh").stdout == "busybox\n"
    run = imgtool_cli("which-layer", ref, "/.wh..wh.plnk/264.1045", "/.wh..wh.aufs")
    assert (run.code, run.stderr) == (1, "")
    assert run.stdout == (
        "/.wh..wh.plnk/264.1045: not in the image: no layer ever had it\n"
        "\n"
        "/.wh..wh.aufs: not in the image: no layer ever had it\n"
    )
    run = imgtool_cli("flatten", ref, "-o", "-")
    assert (run.code, run.stderr) == (0, "imgtool: wrote 5 paths (11 B of file data) to stdout\n")
    with tarfile.open(fileobj=io.BytesIO(run.stdout_bytes)) as tar:
        members = [(m.name, m.type, m.linkname) for m in tar.getmembers()]
    assert members == [
        (".", tarfile.DIRTYPE, ""),
        ("bin", tarfile.DIRTYPE, ""),
        ("bin/ls", tarfile.REGTYPE, ""),
        ("bin/old", tarfile.REGTYPE, ""),
        ("bin/sh", tarfile.LNKTYPE, "bin/ls"),
    ]
    docs = json.loads(imgtool_cli("diff", "layers", ref, "--json").stdout)["layers"]
    assert [(c["path"], c["change"]) for c in docs[1]["changes"]] == [
        ("/bin/ls", "added"),
        ("/bin/sh", "added"),
    ]
    assert docs[1]["summary"]["bytes_added"] == 8


def test_a_hardlink_into_plnk_needs_its_file_earlier_in_the_layer(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    layers = [make_layer([Hardlink("sh", ".wh..wh.plnk/1.2"), File(".wh..wh.plnk/1.2", b"x")])]
    ref = write_oci_layout(tmp_path / "aufs", [Entry(ImageSpec(layers), ref="v1")]).reference("v1")
    run = imgtool_cli("ls", ref, "/")
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr == (
        f"imgtool: error: layer 0 ({sha256_digest(compress(layers[0], 'gzip'))}): entry /sh: hardlink target "
        "/.wh..wh.plnk/1.2 is not a file this layer put in .wh..wh.plnk before it\n"
    )
