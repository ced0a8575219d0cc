"""imgtool flatten against umoci raw unpack of the same image, entry by entry.

Compared for every path: type, mode, owner, size, content hash, link target, mtime, device numbers,
xattrs and link count. No difference is expected for images built by real tools: their layers list
every parent directory, so no implied directory (where umoci uses the time of unpacking) appears.
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
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
    aufs_bookkeeping_layers,
    make_layer,
    write_oci_layout,
)
from tests.helpers.realtools import Builder, BuiltImage, StandardImageFactory, requires, umoci_unpack
from tests.helpers.slowpipe import flatten_through_slow_pipe
from tests.helpers.treesnap import compare, hardlink_groups, snapshot

pytestmark = [pytest.mark.realtools]

STANDARD = ["basic", "whiteouts", "links", "metadata", "names", "history"]


def flatten(imgtool_cli: ImgtoolCli, ref: str, dest: Path, warnings: str = "") -> Path:
    run = imgtool_cli("flatten", ref, "-o", str(dest), "-q")
    assert run.code == 0, run.stderr
    assert re.fullmatch(warnings, run.stderr), run.stderr
    return dest


def assert_same_tree(reference: Path, ours: Path) -> None:
    assert compare(snapshot(reference), snapshot(ours)) == []
    assert hardlink_groups(reference) == hardlink_groups(ours)


@requires("buildah", "skopeo", "umoci")
@pytest.mark.parametrize("name", STANDARD)
def test_standard_images_match_umoci(
    standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, tmp_path: Path, name: str
) -> None:
    built = standard_image(name)
    assert_same_tree(
        built.reference_rootfs(), flatten(imgtool_cli, built.export("oci", "gzip"), tmp_path / "out")
    )


@requires("buildah", "skopeo", "umoci")
@pytest.mark.slow
def test_twenty_layers_rewriting_one_file(
    standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    built = standard_image("rewrite20")
    out = flatten(imgtool_cli, built.export("oci", "gzip"), tmp_path / "out")
    assert_same_tree(built.reference_rootfs(), out)
    assert (out / "r" / "counter.txt").read_bytes() == b"round 22\n"
    assert sorted(p.name for p in (out / "r").iterdir()) == ["counter.txt"]


@requires("buildah", "skopeo", "umoci")
@pytest.mark.parametrize(
    ("fmt", "compression"),
    [
        ("oci", "zstd"),
        ("oci", "none"),
        ("oci-archive", "gzip"),
        ("oci-archive", "zstd"),
        ("docker-archive", "none"),
    ],
)
def test_every_format_flattens_alike(
    standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, tmp_path: Path, fmt: str, compression: str
) -> None:
    """umoci 0.4.7 reads only gzip: other encodings of the same layers must give its gzip result."""
    for name in ("whiteouts", "links", "metadata"):
        built = standard_image(name)
        ref = built.export(fmt, compression)  # type: ignore[arg-type]
        assert_same_tree(built.reference_rootfs(), flatten(imgtool_cli, ref, tmp_path / f"{name}-{fmt}"))


@requires("buildah", "skopeo", "umoci")
@pytest.mark.parametrize("name", ["whiteouts", "links", "metadata", "names"])
def test_tar_output_extracted_by_gnu_tar_equals_dir_output(
    standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, tmp_path: Path, name: str
) -> None:
    ref = standard_image(name).export("oci", "gzip")
    out = flatten(imgtool_cli, ref, tmp_path / "dir")
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out.tar"), "-q")
    assert run.code == 0, run.stderr
    (tmp_path / "x").mkdir()
    subprocess.run(
        [
            "tar",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-C",
            str(tmp_path / "x"),
            "-xpf",
            str(tmp_path / "out.tar"),
        ],
        check=True,
    )
    assert_same_tree(out, tmp_path / "x")


@requires("buildah", "skopeo", "umoci")
def test_opaque_markers_from_overlay_builds(
    overlay_builder: Builder, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    """buildah with the overlay driver writes .wh..wh..opq for a recreated directory (vfs does not)."""
    from tests.helpers.realtools import STANDARD_IMAGES

    built = overlay_builder.standard_image("whiteouts")
    ref = built.export("oci", "gzip")
    assert "whiteouts" in STANDARD_IMAGES
    assert_same_tree(built.reference_rootfs(), flatten(imgtool_cli, ref, tmp_path / "out"))


# Hand-made layers for cases real tools do not write; umoci is still the reference.
T = 1_600_000_000
EDGE_CASES: dict[str, list[list[Member]]] = {
    "whiteout-after-own-entry": [
        [Dir("d/", mtime=T), File("d/x", b"lower", mtime=T)],
        [Dir("d/", mtime=T), File("d/x", b"upper", mtime=T), Whiteout("d/x", mtime=T)],
    ],
    "opaque-keeps-own-entries": [
        [
            Dir("d/", mtime=T),
            File("d/old", b"old", mtime=T),
            Dir("d/sub/", mtime=T),
            File("d/sub/y", b"y", mtime=T),
        ],
        [Dir("d/", mtime=T), File("d/new", b"new", mtime=T), Dir("d/sub/", mtime=T), Opaque("d/", mtime=T)],
    ],
    "symlinked-parent": [
        [Dir("usr/", mtime=T), Dir("usr/lib/", mtime=T), Symlink("lib", "usr/lib", mtime=T)],
        [Dir("lib/", mtime=T), File("lib/libx.so", b"x", mtime=T)],
    ],
    "absolute-symlinked-parent": [
        [Dir("usr/", mtime=T), Dir("usr/lib/", mtime=T), Symlink("lib", "/usr/lib", mtime=T)],
        [File("lib/liby.so", b"y", mtime=T)],
    ],
    "escaping-symlink-confined": [
        [Dir("etc/", mtime=T), Symlink("up", "../../../..", mtime=T)],
        [File("up/etc/confined", b"inside", mtime=T)],
    ],
    "hardlink-to-replaced-target": [
        [File("a", b"one", mtime=T)],
        [Hardlink("b", "a", mtime=T)],
        [File("a", b"two", mtime=T)],
    ],
    "dir-replaced-by-file": [
        [Dir("x/", mtime=T), File("x/inner", b"i", mtime=T)],
        [File("x", b"file now", mtime=T)],
    ],
    "duplicate-entries": [
        [File("dup", b"first", mtime=T), File("dup", b"second", mode=0o600, mtime=T)],
    ],
    "no-end-blocks": [
        [Dir("a/", mtime=T), File("a/f", b"data", mtime=T)],
    ],
    # What Docker's old aufs driver saved: hardlinks into .wh..wh.plnk/, and its other bookkeeping.
    "aufs-bookkeeping": aufs_bookkeeping_layers(T),
}


# Deliberate differences, by case: (paths, field or fields, why). "exists": a path only umoci writes.
KNOWN_DIFFERENCES: dict[str, tuple[set[bytes], str | frozenset[str], str]] = {
    "opaque-keeps-own-entries": (
        {b"d/sub"},
        "mtime_ns",
        "umoci removes d/sub/y while walking the opaque d/ and does not restore the mtime of d/sub, "
        "so d/sub gets the time of unpacking; imgtool keeps the mtime layer 1 states for d/sub",
    ),
    "aufs-bookkeeping": (
        {
            b".wh..wh.plnk",
            b".wh..wh.plnk/264.1045",
            b".wh..wh.orph",
            b".wh..wh.orph/lost",
            b"bin/sh",
            b"bin/ls",
            b"",
        },
        frozenset({"exists", "nlink", "mtime_ns"}),
        "umoci writes AUFS's bookkeeping directories .wh..wh.plnk/ and .wh..wh.orph/ into the rootfs "
        "(so bin/sh and bin/ls, linked to .wh..wh.plnk/264.1045, have one link more, and the root "
        "directory has the time umoci wrote them); imgtool, as "
        "Docker's layer applier, leaves the bookkeeping out and makes each hardlink into .wh..wh.plnk "
        "the file it names there",
    ),
}


def _without_bookkeeping(groups: set[frozenset[bytes]]) -> set[frozenset[bytes]]:
    kept = {frozenset(p for p in group if not p.startswith(b".wh..wh.")) for group in groups}
    return {group for group in kept if len(group) > 1}


@requires("umoci")
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_hand_made_edge_cases_match_umoci(imgtool_cli: ImgtoolCli, tmp_path: Path, case: str) -> None:
    layers = [
        make_layer(members, end_blocks=case != "no-end-blocks", record_size=512)
        for members in EDGE_CASES[case]
    ]
    ref = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec(layers), ref="v1")]).reference("v1")
    reference = umoci_unpack(tmp_path / "oci", "v1", tmp_path / "umoci")
    warning = (
        r"imgtool: warning: layer 0 \(sha256:\w+\): tar archive ends without end-of-archive blocks\n"
        if case == "no-end-blocks"
        else ""
    )
    ours = flatten(imgtool_cli, ref, tmp_path / "ours", warning)
    # Directories no layer lists exist only implicitly: umoci stamps them with the time of unpacking,
    # imgtool with the epoch (so the same image always gives the same tree).
    implied = {p for p, n in snapshot(ours).items() if n.type == "dir" and n.mtime_ns == 0 and p}
    known_paths, known_fields, _why = KNOWN_DIFFERENCES.get(case, (set(), "", ""))
    fields = {known_fields} if isinstance(known_fields, str) else known_fields

    def deliberate(path: bytes, field: str) -> bool:
        return (field == "mtime_ns" and path in implied) or (field in fields and path in known_paths)

    differences = compare(snapshot(reference), snapshot(ours), ignore=deliberate)
    assert differences == []
    if known_paths:  # the difference is real, and only there
        assert compare(snapshot(reference), snapshot(ours)) != []
    if case == "aufs-bookkeeping":
        assert (
            _without_bookkeeping(hardlink_groups(reference))
            == hardlink_groups(ours)
            == {frozenset({b"bin/sh", b"bin/ls"})}
        )
        assert not any(p.startswith(b".wh.") for p in snapshot(ours))
    else:
        assert hardlink_groups(reference) == hardlink_groups(ours)


@requires("buildah", "skopeo", "umoci")
def test_tar_output_is_read_by_go_archive_tar(
    builder: Builder, standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    """What docker import does with the tar, buildah's ADD does with Go's archive/tar: same tree."""
    ref = standard_image("metadata").export("oci", "gzip")
    ours = flatten(imgtool_cli, ref, tmp_path / "dir")
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out.tar"), "-q")
    assert run.code == 0, run.stderr
    built = builder.build(
        "imported", "FROM scratch\nADD out.tar /\n", files={"out.tar": (tmp_path / "out.tar").read_bytes()}
    )
    oci = tmp_path / "imported"
    builder.export(built, "oci", oci, "gzip")
    imported = umoci_unpack(oci, "latest", tmp_path / "imported-rootfs")
    # ADD keeps content, types, modes, owners and file times; the root directory is buildah's own.
    assert compare(snapshot(ours), snapshot(imported), ignore=lambda path, field: path == b"") == []


# Layer 2: three files of 0.7 to 3 MiB. Layer 3: a hardlink to one of them. Layer 4: another replaced
# (the lower copy is shadowed). With bin/busybox (about 2 MB), every large file kind the spool gives back.
LARGE_FILES_CONTAINERFILE = (
    "FROM scratch\nCOPY busybox /bin/busybox\nCOPY big /big/\n"
    'RUN ["/bin/busybox", "ln", "/big/kept", "/big/kept-link"]\n'
    "COPY replaced /big/shadowed\n"
)


def _large_files() -> dict[str, bytes]:
    rng = random.Random(23)
    return {
        "big/shadowed": rng.randbytes(3 << 20),
        "big/kept": rng.randbytes((2 << 20) + 999),
        "big/other": rng.randbytes(700_000),
        "replaced": rng.randbytes((1 << 20) + 5),
    }


def _extract_with_gnu_tar(tar: bytes, dest: Path) -> Path:
    dest.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C", str(dest), "-xpf", "-"],
        input=tar,
        check=True,
    )
    return dest


@requires("buildah", "skopeo", "umoci")
@pytest.mark.parametrize("name", [*STANDARD, "large-files"])
def test_tar_through_a_slow_pipe_is_the_tar_file_and_extracts_to_umocis_tree(
    builder: Builder,
    standard_image: StandardImageFactory,
    imgtool_cli: ImgtoolCli,
    tmp_path: Path,
    name: str,
) -> None:
    """The stream a slow reader gets is the tar file, byte for byte, and GNU tar makes umoci's tree of it."""
    if name == "large-files":
        built = BuiltImage(builder, name, builder.build(name, LARGE_FILES_CONTAINERFILE, _large_files()))
    else:
        built = standard_image(name)
    ref = built.export("oci", "gzip")
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out.tar"), "-q")
    assert run.code == 0, run.stderr
    code, piped, stderr = flatten_through_slow_pipe(ref, "-q")
    assert (code, stderr) == (0, "")
    assert piped == (tmp_path / "out.tar").read_bytes()
    assert_same_tree(built.reference_rootfs(), _extract_with_gnu_tar(piped, tmp_path / "x"))
