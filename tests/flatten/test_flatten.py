"""flatten: the exact tree, the tar stream, and the promises about the output location."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from imgtool.flatten import rootfs
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    CharDev,
    Dir,
    Entry,
    Fifo,
    File,
    Hardlink,
    ImageSpec,
    Layer,
    Opaque,
    OverlayOpaque,
    OverlayWhiteout,
    Symlink,
    Whiteout,
    make_layer,
    write_oci_layout,
)
from tests.helpers.treesnap import hardlink_groups, snapshot

T0, T1, T2 = 1_600_000_000, 1_650_000_000, 1_700_000_000
LONG = "long/" + "d" * 120 + "/" + "f" * 200

LAYERS = [
    make_layer(
        [
            Dir("etc/", mtime=T0),
            File("etc/passwd", b"root:x:0:0\n", mtime=T0),
            File("etc/shadow", b"root:*:1::\n", mode=0o640, gid=42, mtime=T0),
            Dir("var/", mtime=T0),
            Dir("var/cache/", mtime=T0),
            File("var/cache/a", b"a" * 100, mtime=T0),
            Dir("opt/", mtime=T0),
            File("opt/tool", b"tool", mtime=T0),
            Dir("bin/", mtime=T0),
            File("bin/suid", b"\x7fELF", mode=0o4755, mtime=T0),
            Dir("tmp/", mode=0o1777, mtime=T0),
            Dir("usr/", mtime=T0),
            Dir("usr/lib/", mtime=T0),
            File("usr/lib/libc.so", b"libc-1", mtime=T0),
            Hardlink("usr/lib/libc2.so", "usr/lib/libc.so", mtime=T0),
            Symlink("lib", "usr/lib", mtime=T0),
            Dir("dev/", mtime=T0),
            CharDev("dev/null", 1, 3, mode=0o666, mtime=T0),
            Dir("run/", mtime=T0),
            Fifo("run/fifo", mtime=T0),
            File("etc/attr", b"x", xattrs={"user.comment": b"kept"}, mtime=T0),
            File(b"caf\xe9", b"latin-1 name", mtime=T0),
            File(LONG, b"long", mtime=T0),
            Symlink("passwd-link", "/etc/passwd", mtime=T0),
            Dir("srv/", mtime=T0),
            File("srv/old", b"old", mtime=T0),
        ]
    ),
    make_layer(
        [
            Whiteout("etc/shadow", mtime=T1),
            Dir("var/cache/", mtime=T1),
            Opaque("var/cache/", mtime=T1),
            File("var/cache/b", b"b", mtime=T1),
            File("usr/lib/libc.so", b"libc-2", mtime=T1),
            File("lib/extra.so", b"extra", mtime=T1),
            File("opt", b"opt is a file now", mtime=T1),
            File("etc/passwd", b"root:x:0:0\n", mode=0o600, mtime=T1),
        ]
    ),
    make_layer(
        [
            OverlayWhiteout("run/fifo", mtime=T2),
            OverlayOpaque("srv/", mtime=T2),
            File("srv/new", b"new", mtime=T2),
            File("etc/owned", b"o", uid=1234, gid=5678, mtime=T2),
        ]
    ),
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


EXPECTED = {
    # path: (type, mode, uid, gid, sha256 or link target)
    "": ("dir", 0o755, 0, 0, None),
    "bin": ("dir", 0o755, 0, 0, None),
    "bin/suid": ("file", 0o4755, 0, 0, sha(b"\x7fELF")),
    "caf\udce9": ("file", 0o644, 0, 0, sha(b"latin-1 name")),
    "dev": ("dir", 0o755, 0, 0, None),
    "dev/null": ("char", 0o666, 0, 0, None),
    "etc": ("dir", 0o755, 0, 0, None),
    "etc/attr": ("file", 0o644, 0, 0, sha(b"x")),
    "etc/owned": ("file", 0o644, 1234, 5678, sha(b"o")),
    "etc/passwd": ("file", 0o600, 0, 0, sha(b"root:x:0:0\n")),
    "lib": ("symlink", 0o777, 0, 0, "usr/lib"),
    "long": ("dir", 0o755, 0, 0, None),
    "long/" + "d" * 120: ("dir", 0o755, 0, 0, None),
    LONG: ("file", 0o644, 0, 0, sha(b"long")),
    "opt": ("file", 0o644, 0, 0, sha(b"opt is a file now")),
    "passwd-link": ("symlink", 0o777, 0, 0, "/etc/passwd"),
    "run": ("dir", 0o755, 0, 0, None),
    "srv": ("dir", 0o755, 0, 0, None),
    "srv/new": ("file", 0o644, 0, 0, sha(b"new")),
    "tmp": ("dir", 0o1777, 0, 0, None),
    "usr": ("dir", 0o755, 0, 0, None),
    "usr/lib": ("dir", 0o755, 0, 0, None),
    "usr/lib/extra.so": ("file", 0o644, 0, 0, sha(b"extra")),
    "usr/lib/libc.so": ("file", 0o644, 0, 0, sha(b"libc-2")),
    "usr/lib/libc2.so": ("file", 0o644, 0, 0, sha(b"libc-1")),
    "var": ("dir", 0o755, 0, 0, None),
    "var/cache": ("dir", 0o755, 0, 0, None),
    "var/cache/b": ("file", 0o644, 0, 0, sha(b"b")),
}


def image_ref(tmp_path: Path, compression: str = "gzip") -> str:
    spec = ImageSpec(LAYERS, compression=compression, created_by=["base", "changes", "overlay"])  # type: ignore[arg-type]
    return write_oci_layout(tmp_path / f"oci-{compression}", [Entry(spec, ref="v1")]).reference("v1")


def summarize(root: Path) -> dict[str, tuple[object, ...]]:
    result: dict[str, tuple[object, ...]] = {}
    for path, node in snapshot(root).items():
        detail = (
            node.sha256 if node.type == "file" else (node.link.decode() if node.link is not None else None)
        )
        result[path.decode("utf-8", "surrogateescape")] = (node.type, node.mode, node.uid, node.gid, detail)
    return result


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_flatten_to_dir_gives_the_exact_tree(
    tmp_path: Path, imgtool_cli: ImgtoolCli, compression: str
) -> None:
    out = tmp_path / "rootfs"
    run = imgtool_cli("flatten", image_ref(tmp_path, compression), "-o", str(out))
    assert run.code == 0, run.stderr
    assert run.stdout == ""
    assert run.stderr == f"imgtool: wrote {len(EXPECTED)} paths (71 B of file data) to {out}\n"
    assert summarize(out) == EXPECTED
    snap = snapshot(out)
    assert snap[b"dev/null"].rdev == (1, 3)
    assert snap[b"etc/attr"].xattrs == (("user.comment", b"kept"),)
    assert snap[b"etc/passwd"].mtime_ns == T1 * 10**9
    assert snap[b"var/cache"].mtime_ns == T1 * 10**9
    assert snap[b"srv"].mtime_ns == T2 * 10**9  # the overlay-opaque directory's own entry
    assert snap[b"long"].mtime_ns == 0  # implied directories: 0755 root:root at the epoch
    assert snap[b""].mtime_ns == 0
    assert hardlink_groups(out) == set()  # libc2.so kept the old inode; libc.so is a new one
    assert list(tmp_path.glob(".rootfs.imgtool-*")) == []


def test_tar_output_equals_dir_output(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = image_ref(tmp_path)
    assert imgtool_cli("flatten", ref, "-o", str(tmp_path / "dir"), "-q").code == 0
    assert imgtool_cli("flatten", ref, "-o", str(tmp_path / "out.tar")).code == 0
    (tmp_path / "x").mkdir()
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "-C",
            str(tmp_path / "x"),
            "-xpf",
            str(tmp_path / "out.tar"),
        ],
        check=True,
    )
    assert snapshot(tmp_path / "x") == snapshot(tmp_path / "dir")


def test_tar_stream_order_and_determinism(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = image_ref(tmp_path)
    first = imgtool_cli("flatten", ref, "-o", "-", "-q")
    assert (first.code, first.stderr) == (0, "")
    again = imgtool_cli("flatten", ref, "-o", "-", "-q")
    assert first.stdout_bytes == again.stdout_bytes
    names = []
    with tarfile.open(
        fileobj=io.BytesIO(first.stdout_bytes), encoding="utf-8", errors="surrogateescape"
    ) as tar:
        members = tar.getmembers()
    for member in members:
        name = member.name.rstrip("/")
        names.append("" if name == "." else name)
    assert sorted(names) == sorted(EXPECTED)
    assert len(names) == len(set(names))  # each path exactly once
    seen: set[str] = set()
    for name in names:
        parent = name.rpartition("/")[0]
        assert parent in seen or name == "", f"{name} comes before its parent"
        seen.add(name)
        by_dir: dict[str, list[str]] = {}
    for name in names[1:]:
        by_dir.setdefault(name.rpartition("/")[0], []).append(name.rpartition("/")[2])
    for children in by_dir.values():
        encoded = [c.encode("utf-8", "surrogateescape") for c in children]
        assert encoded == sorted(encoded)


def test_hardlinks_in_tar_follow_their_target(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    layer = make_layer([File("a", b"shared"), Hardlink("b", "a"), Hardlink("c", "a")])
    ref = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([layer]), ref="v1")]).reference("v1")
    run = imgtool_cli("flatten", ref, "-o", "-", "-q")
    with tarfile.open(fileobj=io.BytesIO(run.stdout_bytes)) as tar:
        members = [(m.name, m.type, m.linkname) for m in tar.getmembers()]
    assert members == [
        (".", tarfile.DIRTYPE, ""),
        ("a", tarfile.REGTYPE, ""),
        ("b", tarfile.LNKTYPE, "a"),
        ("c", tarfile.LNKTYPE, "a"),
    ]
    assert imgtool_cli("flatten", ref, "-o", str(tmp_path / "d"), "-q").code == 0
    assert hardlink_groups(tmp_path / "d") == {frozenset({b"a", b"b", b"c"})}


def test_layers_option_stops_early(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = image_ref(tmp_path)
    assert imgtool_cli("flatten", ref, "-o", str(tmp_path / "l0"), "--layers", "0", "-q").code == 0
    tree = summarize(tmp_path / "l0")
    assert tree["etc/shadow"] == ("file", 0o640, 0, 42, sha(b"root:*:1::\n"))
    assert tree["usr/lib/libc.so"][4] == sha(b"libc-1")
    assert "run/fifo" in tree
    assert tree["opt"][0] == "dir"
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "l9"), "--layers", "9")
    assert (run.code, run.stderr) == (2, "imgtool: error: --layers 9: the image has layers 0 to 2\n")
    assert not (tmp_path / "l9").exists()


@pytest.mark.parametrize("suffix", [".tsv", ".json"])
def test_provenance(tmp_path: Path, imgtool_cli: ImgtoolCli, suffix: str) -> None:
    ref = image_ref(tmp_path)
    report = tmp_path / f"prov{suffix}"
    assert imgtool_cli("flatten", ref, "-o", str(tmp_path / "d"), "-q", "--provenance", str(report)).code == 0
    from imgtool import open_image

    with open_image(ref) as img:
        digests = [str(layer.diff_id) for layer in img.layers]  # the same in every format of the image
        assert digests != [str(layer.digest) for layer in img.layers]
    if suffix == ".json":
        rows = {r["path"]: (r["layer"], r["diff_id"]) for r in json.loads(report.read_text())}
    else:
        lines = report.read_text().splitlines()
        assert lines[0] == "path\tlayer\tdiff_id"
        rows = {}
        for line in lines[1:]:
            path, layer, digest = line.split("\t")
            rows[path] = (None if layer == "-" else int(layer), None if digest == "-" else digest)
    assert len(rows) == len(EXPECTED)
    assert rows["/"] == (None, None)
    assert rows["/etc/passwd"] == (1, digests[1])
    assert rows["/usr/lib/libc2.so"] == (0, digests[0])
    assert rows["/usr/lib/extra.so"] == (1, digests[1])
    assert rows["/srv/new"] == (2, digests[2])
    assert rows["/caf\\xe9"] == (0, digests[0])  # bytes that are not UTF-8 are shown as \xNN
    assert rows["/long"] == (0, digests[0])  # implied by layer 0's entries below it


def test_output_directory_rules(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = image_ref(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert imgtool_cli("flatten", ref, "-o", str(empty), "-q").code == 0
    assert (empty / "etc" / "passwd").exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("mine")
    run = imgtool_cli("flatten", ref, "-o", str(full), "-q")
    assert (run.code, run.stderr) == (
        1,
        f"imgtool: error: {full}: directory is not empty (use --force to replace it)\n",
    )
    assert [p.name for p in full.iterdir()] == ["keep"]
    assert imgtool_cli("flatten", ref, "-o", str(full), "-q", "--force").code == 0
    assert not (full / "keep").exists() and (full / "etc" / "passwd").exists()
    (tmp_path / "file").write_text("x")
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "file"), "-q")
    assert run.stderr == f"imgtool: error: {tmp_path}/file: exists and is not a directory\n"
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "no" / "such" / "dir"), "-q")
    assert (
        run.stderr
        == f"imgtool: error: {tmp_path}/no/such/dir: parent directory {tmp_path}/no/such does not exist\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("failure", "code", "message"),
    [
        (KeyboardInterrupt(), 130, "imgtool: error: interrupted\n"),
        (OSError(28, "No space left on device"), 1, "imgtool: error: No space left on device\n"),
    ],
)
def test_failure_leaves_the_destination_as_it_was(
    tmp_path: Path,
    imgtool_cli: ImgtoolCli,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
    code: int,
    message: str,
) -> None:
    ref = image_ref(tmp_path)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old").write_text("previous run")
    calls = 0
    real = rootfs.RootfsWriter.write_file

    def fail_later(self: rootfs.RootfsWriter, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise failure
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rootfs.RootfsWriter, "write_file", fail_later)
    run = imgtool_cli("flatten", ref, "-o", str(dest), "-q", "--force")
    assert (run.code, run.stderr) == (code, message)
    assert [p.name for p in dest.iterdir()] == ["old"]
    assert sorted(os.listdir(tmp_path)) == sorted(["dest", "oci-gzip"])


def test_tar_file_is_written_atomically(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = image_ref(tmp_path)
    target = tmp_path / "out.tar"
    target.write_bytes(b"old")
    run = imgtool_cli("flatten", ref, "-o", str(target), "-q")
    assert run.stderr == f"imgtool: error: {target}: already exists (use --force to replace it)\n"
    assert target.read_bytes() == b"old"
    assert imgtool_cli("flatten", ref, "-o", str(target), "-q", "--force").code == 0
    assert tarfile.is_tarfile(target)
    assert sorted(os.listdir(tmp_path)) == ["oci-gzip", "out.tar"]


def test_missing_layer_blob_fails_before_writing(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    from tests.helpers.imagefactory import MISSING

    spec = ImageSpec([LAYERS[0], Layer(LAYERS[1], fault=MISSING)])
    ref = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v1")]).reference("v1")
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out"), "-q")
    assert run.code == 1
    assert run.stderr.startswith("imgtool: error: layer 1 (sha256:")
    assert run.stderr.endswith("): layer blob is not present in the image\n")
    assert sorted(os.listdir(tmp_path)) == ["oci"]


def test_tar_output_reports_what_it_wrote_as_directory_output_does(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    ref = image_ref(tmp_path)
    summary = f"imgtool: wrote {len(EXPECTED)} paths (71 B of file data) to "
    to_dir = imgtool_cli("flatten", ref, "-o", str(tmp_path / "dir"))
    to_file = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out.tar"))
    to_stdout = imgtool_cli("flatten", ref, "-o", "-")
    assert (to_dir.code, to_dir.stderr) == (0, summary + f"{tmp_path / 'dir'}\n")
    assert (to_file.code, to_file.stderr) == (0, summary + f"{tmp_path / 'out.tar'}\n")
    assert (to_stdout.code, to_stdout.stderr) == (0, summary + "stdout\n")
    assert to_stdout.stdout_bytes == (tmp_path / "out.tar").read_bytes()
    quiet = imgtool_cli("flatten", ref, "-o", str(tmp_path / "quiet.tar"), "-q")
    assert (quiet.code, quiet.stderr) == (0, "")
    assert imgtool_cli("flatten", ref, "-o", "-", "-q").stderr == ""
