"""Deep trees, long paths, long chains of symlinks and damaged cache files, through every command.

Each command runs in a child process (``tests.helpers.childproc``) so that its peak memory is its own;
each must give the exact answer or one ``imgtool: error:`` line, within a time and memory bound, and leave
nothing beside its output. The trees here are deeper than Python recurses (1 000 levels) and than PATH_MAX.
"""

from __future__ import annotations

import io
import json
import marshal
import os
import re
import resource
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from imgtool.system.fsutil import remove_tree
from tests.helpers.childproc import ChildRun, run_child
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    ImageSpec,
    Member,
    Opaque,
    Symlink,
    make_layer,
    write_oci_layout,
)
from tests.hostile.cases import layer_re
from tests.hostile.harness import Workspace, error_message

MiB: Final = 1 << 20
MAX_RSS: Final = 256 * MiB
MAX_SECONDS: Final = 60
ADDRESS_SPACE: Final = 2 << 30
LIMIT: Final = 8192  # imgtool.merge.resolution.MAX_PATH_BYTES, written out: the documented value

DEEP: Final = 1000
DEEP_DIR: Final = "/".join(f"d{i % 10}" for i in range(DEEP))  # 1 000 levels, a path of 3 000 bytes
LINKS: Final = 100
UNDER_LINK: Final = 2000
CHAIN_SECONDS: Final = 10  # 2 s at most here; resolving the whole chain for each entry took 20 s and more


@pytest.fixture(autouse=True)
def _remove_deep_trees(tmp_path: Path) -> Iterator[None]:
    """pytest removes old temporary directories recursively, which fails on these trees: remove them here."""
    yield
    for child in tmp_path.iterdir():
        remove_tree(str(child))


def oci(where: Path, *layers: bytes) -> str:
    return write_oci_layout(where, [Entry(ImageSpec(list(layers)), ref="v1")]).reference("v1")


def _address_space_limit() -> None:
    """A child that goes wrong fails alone rather than take the machine's memory (its peak is far lower)."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def measured(args: list[str], cwd: Path, stdout: Path | None = None) -> tuple[ChildRun, float]:
    start = time.monotonic()
    run = run_child(args, cwd, stdout=stdout, preexec=_address_space_limit)
    elapsed = time.monotonic() - start
    assert "Traceback" not in run.stderr, run.stderr
    assert run.max_rss < MAX_RSS, f"{args[0]}: peak RSS {run.max_rss / MiB:.0f} MiB"
    assert elapsed < MAX_SECONDS, f"{args[0]}: {elapsed:.0f} s"
    return run, elapsed


def walk(root: Path) -> Iterator[tuple[bytes, os.stat_result]]:
    """Every path under ``root`` (relative, as bytes) with its lstat, by dir fds: any depth, no recursion."""
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    stack = [(b"", top)]
    try:
        while stack:
            prefix, fd = stack.pop()
            try:
                for name in sorted(os.listdir(fd)):
                    raw = os.fsencode(name)
                    path = prefix + b"/" + raw if prefix else raw
                    st = os.lstat(name, dir_fd=fd)
                    yield path, st
                    if stat.S_ISDIR(st.st_mode):
                        stack.append((path, os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)))
            finally:
                os.close(fd)
    finally:
        for _prefix, fd in stack:
            os.close(fd)


def read_at(root: Path, path: bytes) -> bytes:
    """A file's content, opened component by component (the path may be longer than PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    *dirs, name = path.split(b"/")
    for part in dirs:
        child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = child
    try:
        with open(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def tar_names(data: bytes) -> dict[str, bytes | str | None]:
    """Member name -> file content, symlink target, or None for a directory."""
    out: dict[str, bytes | str | None] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            name = member.name.rstrip("/")
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                out[name] = handle.read()
            elif member.issym():
                out[name] = member.linkname
            else:
                out[name] = None
    return out


# -- one entry 30 000 directories deep ------------------------------------------------------------------

DEEP_NAME: Final = "a/" * 30_000 + "f"


@pytest.fixture(scope="module")
def deep_path_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    where = tmp_path_factory.mktemp("deep-path")
    return oci(where / "oci", make_layer([File(DEEP_NAME, b"x")]), make_layer([File("z", b"z")]))


DEEP_PATH_COMMANDS: Final = {
    "flatten-dir": ["flatten", "{ref}", "-o", "{work}/out"],
    "flatten-tar": ["flatten", "{ref}", "-o", "{work}/out.tar"],
    "flatten-stdout": ["flatten", "{ref}", "-o", "-"],
    "which-layer": ["which-layer", "{ref}", "/z"],
    "ls": ["ls", "{ref}", "/", "-R"],
    "cat": ["cat", "{ref}", "/a/f"],  # /z would be settled by layer 1 alone: layer 0 never read
    "diff-layers": ["diff", "layers", "{ref}", "0", "1"],
    "diff-images": ["diff", "images", "{ref}", "{ref}"],
}


@pytest.mark.parametrize("command", list(DEEP_PATH_COMMANDS))
def test_a_path_beyond_the_limit_is_one_error_in_bounded_memory(
    deep_path_image: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "space").mkdir()
    space = Workspace.create(tmp_path / "space")
    before = space.listing()
    args = [a.format(ref=deep_path_image, work=space.work) for a in DEEP_PATH_COMMANDS[command]]
    run, _ = measured(args, tmp_path, stdout=tmp_path / "stdout")
    message = error_message(run.stderr)
    assert re.fullmatch(
        layer_re(0) + r": entry '(a/)+\.\.\.' at offset \d+: name of 60001 bytes \(the limit is 8192\)",
        message,
    ), message
    assert run.code == 1
    assert (tmp_path / "stdout").read_bytes() == b""
    assert space.listing() == before
    assert space.leftovers() == []


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_commands_that_read_no_entries_pass_a_deep_path(
    deep_path_image: str, command: str, tmp_path: Path
) -> None:
    run, _ = measured([command, deep_path_image], tmp_path)
    assert (run.code, run.stderr) == (0, "")


# -- a tree 1 000 levels deep ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deep_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Layer 0: DEEP_DIR/f and a symlink to DEEP_DIR; layer 1: DEEP_DIR/g, then an opaque root (which
    hides layer 0's f and link but keeps what layer 1 wrote). A second image holds DEEP_DIR/f only."""
    where = tmp_path_factory.mktemp("deep-tree")
    first = oci(
        where / "a",
        make_layer([File(f"{DEEP_DIR}/f", b"lower"), Symlink("l", DEEP_DIR)]),
        make_layer([File(f"{DEEP_DIR}/g", b"upper"), Opaque("")]),
    )
    second = oci(where / "b", make_layer([File(f"{DEEP_DIR}/f", b"other")]))
    return first, second


def _dirs() -> list[str]:
    parts = DEEP_DIR.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def test_deep_tree_flattens_to_a_directory(deep_tree: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    run, _ = measured(["flatten", deep_tree[0], "-o", str(out)], tmp_path)
    assert run.code == 0, run.stderr
    found = {path: stat.S_IFMT(st.st_mode) for path, st in walk(out)}
    expected = {os.fsencode(d): stat.S_IFDIR for d in _dirs()}
    expected[os.fsencode(f"{DEEP_DIR}/g")] = stat.S_IFREG
    assert found == expected
    assert read_at(out, os.fsencode(f"{DEEP_DIR}/g")) == b"upper"
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("output", ["file", "stdout"])
def test_deep_tree_flattens_to_a_tar(deep_tree: tuple[str, str], output: str, tmp_path: Path) -> None:
    target = tmp_path / "out.tar"
    if output == "file":
        run, _ = measured(["flatten", deep_tree[0], "-o", str(target)], tmp_path)
    else:
        run, _ = measured(["flatten", deep_tree[0], "-o", "-"], tmp_path, stdout=target)
    dest = target if output == "file" else "stdout"
    assert (run.code, run.stderr) == (0, f"imgtool: wrote 1002 paths (5 B of file data) to {dest}\n")
    expected: dict[str, bytes | str | None] = {".": None, **dict.fromkeys(_dirs())}
    expected[f"{DEEP_DIR}/g"] = b"upper"
    names = tar_names(target.read_bytes())
    names = {("." if name in ("", ".") else name.removeprefix("./")): value for name, value in names.items()}
    assert names == expected


def test_deep_tree_lists_recursively(deep_tree: tuple[str, str], tmp_path: Path) -> None:
    stdout = tmp_path / "ls.json"
    run, _ = measured(["ls", deep_tree[0], "/", "-R", "--json", "--no-cache"], tmp_path, stdout=stdout)
    assert (run.code, run.stderr) == (0, "")
    rows = json.loads(stdout.read_bytes())
    assert [(row["path"], row["type"], row["layer"]) for row in rows] == [
        *((f"/{d}", "dir", 0) for d in _dirs()),
        (f"/{DEEP_DIR}/g", "file", 1),
    ]


def test_deep_tree_which_layer_and_cat(deep_tree: tuple[str, str], tmp_path: Path) -> None:
    stdout = tmp_path / "which.json"
    run, _ = measured(["which-layer", deep_tree[0], f"/{DEEP_DIR}/f", "--json"], tmp_path, stdout=stdout)
    assert (run.code, run.stderr) == (1, "")
    (answer,) = json.loads(stdout.read_bytes())
    assert (answer["exists"], [(h["index"], h["change"]) for h in answer["history"]]) == (
        False,
        [(0, "added"), (1, "hidden")],
    )
    run, _ = measured(["cat", deep_tree[0], f"/{DEEP_DIR}/g"], tmp_path, stdout=stdout)
    assert (run.code, run.stderr, stdout.read_bytes()) == (0, "", b"upper")


def test_deep_tree_diff_layers(deep_tree: tuple[str, str], tmp_path: Path) -> None:
    stdout = tmp_path / "diff.json"
    run, _ = measured(["diff", "layers", deep_tree[0], "0", "1", "--json"], tmp_path, stdout=stdout)
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(stdout.read_bytes())
    assert [(c["path"], c["change"], c["type"]) for c in doc["changes"]] == [
        (f"/{DEEP_DIR}/f", "deleted", "file"),
        (f"/{DEEP_DIR}/g", "added", "file"),
        ("/l", "deleted", "symlink"),
    ]


def test_deep_tree_diff_images(deep_tree: tuple[str, str], tmp_path: Path) -> None:
    stdout = tmp_path / "diff.json"
    run, _ = measured(["diff", "images", deep_tree[1], deep_tree[0], "--json"], tmp_path, stdout=stdout)
    assert run.stderr == ""
    doc = json.loads(stdout.read_bytes())
    assert [(c["path"], c["change"]) for c in doc["changes"]] == [
        (f"/{DEEP_DIR}/f", "deleted"),
        (f"/{DEEP_DIR}/g", "added"),
    ]


def _deep_dirs(root: Path, depth: int) -> None:
    """A chain of ``depth`` directories under ``root``, made by dir fds (deeper than PATH_MAX allows)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("old", dir_fd=fd)
        child = os.open("old", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as handle:
        handle.write(b"the previous run\n")
    os.chmod(".", 0o555, dir_fd=fd)
    os.close(fd)


def test_force_replaces_an_output_deeper_than_path_max(deep_tree: tuple[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _deep_dirs(out, 3000)  # 12 000 bytes of path
    run, _ = measured(["flatten", deep_tree[0], "-o", str(out), "--force"], tmp_path)
    assert run.code == 0, run.stderr
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert sorted(os.listdir(out)) == ["d0"]
    assert read_at(out, os.fsencode(f"{DEEP_DIR}/g")) == b"upper"


def test_a_deep_write_that_fails_leaves_nothing(tmp_path: Path) -> None:
    """2 500 levels (7 500 bytes: within the merge's limit, beyond PATH_MAX): some 1 300 directories
    are written before the system refuses the path; the staging tree is then removed, whatever its depth."""
    name = "/".join(["dd"] * 2500) + "/f"
    ref = oci(tmp_path / "oci", make_layer([File(name, b"x")]))
    work = tmp_path / "work"
    work.mkdir()
    run, _ = measured(["flatten", ref, "-o", str(work / "out")], tmp_path)
    message = error_message(run.stderr)
    assert re.fullmatch(r"cannot write (/dd)+: File name too long", message), message[:200]
    assert run.code == 1
    assert os.listdir(work) == []


# -- a long chain of long symlinks ------------------------------------------------------------------------


def _link_target(i: int) -> str:
    """About 3 KB (within PATH_MAX): 1 000 ``./`` and 200 ``d/..`` before the next link of the chain."""
    nxt = f"l{i + 1}" if i + 1 < LINKS else "real"
    return "./" * 1000 + "d/../" * 200 + nxt


@pytest.fixture(scope="module")
def link_chain(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``x`` -> l0 -> l1 -> ... -> l99 -> real, each link 3 KB long; then 2 000 files in 2 000
    directories under ``x/``: each entry's parent resolves through 100 hops of 1 201 components."""
    where = tmp_path_factory.mktemp("links")
    members: list[Member] = [Dir("real/"), Symlink("x", "l0")]
    members += [Symlink(f"l{i}", _link_target(i)) for i in range(LINKS)]
    members += [File(f"x/d{i:04d}/f", b"%d" % i) for i in range(UNDER_LINK)]
    return oci(where / "oci", make_layer(members), make_layer([File("top", b"t")]))


def _chain_tree() -> list[tuple[str, str]]:
    rows = [(f"/l{i}", "symlink") for i in range(LINKS)]
    rows += [("/real", "dir")]
    for i in range(UNDER_LINK):
        rows += [(f"/real/d{i:04d}", "dir"), (f"/real/d{i:04d}/f", "file")]
    rows += [("/top", "file"), ("/x", "symlink")]
    return sorted(rows)


def test_long_symlink_chains_cost_little_per_entry(link_chain: str, tmp_path: Path) -> None:
    stdout = tmp_path / "ls.json"
    run, elapsed = measured(["ls", link_chain, "/", "-R", "--json", "--no-cache"], tmp_path, stdout=stdout)
    assert (run.code, run.stderr) == (0, "")
    rows = json.loads(stdout.read_bytes())
    assert sorted((row["path"], row["type"]) for row in rows) == _chain_tree()
    assert elapsed < CHAIN_SECONDS, f"ls took {elapsed:.1f} s"


DEEP_UNDER: Final = 20


@pytest.fixture(scope="module")
def deep_under_chain(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same chain, then 2 000 files each 20 new directories deep under ``x/``."""
    where = tmp_path_factory.mktemp("links-deep")
    members: list[Member] = [Dir("real/"), Symlink("x", "l0")]
    members += [Symlink(f"l{i}", _link_target(i)) for i in range(LINKS)]
    below = "/".join(f"e{j}" for j in range(DEEP_UNDER))
    members += [File(f"x/d{i:04d}/{below}/f", b"") for i in range(UNDER_LINK)]
    return oci(where / "oci", make_layer(members))


def test_new_directories_deep_under_a_chain_cost_little(deep_under_chain: str, tmp_path: Path) -> None:
    stdout = tmp_path / "ls.json"
    args = ["ls", deep_under_chain, "/real", "-R", "--json", "--no-cache"]
    run, elapsed = measured(args, tmp_path, stdout=stdout)
    assert (run.code, run.stderr) == (0, "")
    paths = [row["path"] for row in json.loads(stdout.read_bytes())]
    assert len(paths) == UNDER_LINK * (DEEP_UNDER + 2)
    assert paths[-1] == "/real/d1999/" + "/".join(f"e{j}" for j in range(DEEP_UNDER)) + "/f"
    assert elapsed < CHAIN_SECONDS, f"ls took {elapsed:.1f} s"


CHAIN_COMMANDS: Final = {
    "which-layer": (["which-layer", "{ref}", "/x/d1999/f"], 0, None),
    "cat": (["cat", "{ref}", "/x/d0042/f"], 0, b"42"),
    "diff-layers": (["diff", "layers", "{ref}", "0", "1", "--json"], 0, None),
    "diff-images": (["diff", "images", "{ref}", "{ref}"], 0, None),
    "flatten-tar": (["flatten", "{ref}", "-o", "-"], 0, None),
    "flatten-dir": (["flatten", "{ref}", "-o", "{tmp}/out"], 0, None),
}


@pytest.mark.parametrize("command", list(CHAIN_COMMANDS))
def test_every_command_resolves_a_long_chain_quickly(link_chain: str, command: str, tmp_path: Path) -> None:
    template, code, want = CHAIN_COMMANDS[command]
    stdout = tmp_path / "stdout"
    args = [a.format(ref=link_chain, tmp=tmp_path) for a in template]
    run, elapsed = measured(
        [*args, "--no-cache"] if command != "flatten-dir" else args, tmp_path, stdout=stdout
    )
    assert elapsed < CHAIN_SECONDS, f"{command} took {elapsed:.1f} s"
    assert run.code == code, run.stderr
    data = stdout.read_bytes()
    if want is not None:
        assert data == want
    if command == "flatten-tar":
        names = tar_names(data)
        assert names["real/d1999/f"] == b"1999"
        assert names["l99"] == _link_target(99)
    if command == "flatten-dir":
        assert read_at(tmp_path / "out", b"real/d0007/f") == b"7"
        assert os.readlink(tmp_path / "out" / "x") == "l0"
    if command == "diff-layers":
        assert json.loads(data)["changes"] == [{"path": "/top", "change": "added", "type": "file", "size": 1}]


# -- the header cache --------------------------------------------------------------------------------------


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "imgtool").rglob("*") if p.is_file())


@pytest.fixture
def cached_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    ref = oci(tmp_path / "oci", make_layer([File("a/one", b"1"), File("a/two", b"2"), File("b", b"3")]))
    assert run_child(["ls", ref, "/", "-R"], tmp_path).code == 0
    (path,) = _cache_files(cache)
    return ref, path


def _edit(path: Path, change: str) -> None:
    doc = marshal.loads(path.read_bytes())
    paths = doc["path"].split(b"\x00")
    numbers, by_position = doc["numbers"], doc["by_position"]
    if change == "int-paths":
        doc["path"] = list(range(len(paths)))
    elif change == "truncated-columns":
        doc["kind"] = doc["kind"][:1]
        numbers["size"] = numbers["size"][:8]
    elif change == "climbing-path":
        paths[0] = b"../../escape"
    elif change == "unknown-kind":
        doc["kind"] = b"\x63" + doc["kind"][1:]
    elif change == "not-a-dict":
        doc = [doc]
    elif change == "short-number-column":  # sizes are stored unsigned: no negative one can be read
        numbers["size"] = numbers["size"][:-1]
    elif change == "root-as-file":
        paths[0] = b""
    elif change == "trailing-slash":
        paths[0] = b"a/one/"
    elif change == "bool-mode":
        numbers["mode"] = [True] * len(paths)
    elif change == "odd-sparse-map":
        by_position["sparse"][0] = (0, 1, 2)
    elif change == "negative-sparse-map":
        by_position["sparse"][0] = (-1, 1)
    elif change == "sparse-map-of-text":
        by_position["sparse"][0] = ("0", "1")
    elif change == "link-of-text":
        by_position["link"][0] = "target"
    elif change == "link-past-the-end":
        by_position["link"][len(paths)] = b"target"
    if isinstance(doc, dict) and change in ("climbing-path", "root-as-file", "trailing-slash"):
        doc["path"] = b"\x00".join(paths)
    path.write_bytes(marshal.dumps(doc))


@pytest.mark.parametrize(
    "change",
    [
        "int-paths",
        "truncated-columns",
        "climbing-path",
        "unknown-kind",
        "not-a-dict",
        "short-number-column",
        "root-as-file",
        "trailing-slash",
        "bool-mode",
        "odd-sparse-map",
        "negative-sparse-map",
        "sparse-map-of-text",
        "link-of-text",
        "link-past-the-end",
    ],
)
def test_a_cache_file_that_fails_validation_is_rebuilt(
    cached_image: tuple[str, Path], change: str, tmp_path: Path
) -> None:
    ref, path = cached_image
    original = marshal.loads(path.read_bytes())
    _edit(path, change)
    stdout = tmp_path / "ls.json"
    run = run_child(["ls", ref, "/", "-R", "--json"], tmp_path, stdout=stdout)
    assert (run.code, run.stderr) == (0, "")
    assert [row["path"] for row in json.loads(stdout.read_bytes())] == ["/a", "/a/one", "/a/two", "/b"]
    # Rebuilt, and stored again: the next run reads a good file.
    rebuilt = marshal.loads(path.read_bytes())
    assert rebuilt["path"] == b"a/one\x00a/two\x00b"
    assert rebuilt == original


def test_the_cache_is_checked_by_the_library_too(cached_image: tuple[str, Path]) -> None:
    """Loading a damaged file gives None (the caller then rebuilds); a good one loads."""
    from imgtool.merge.index import IndexCache

    _ref, path = cached_image
    cache = IndexCache(path.parents[2])
    from imgtool.image.digest import Digest

    digest = Digest.parse(f"{path.parent.name}:{path.name}")
    assert cache.load(digest) is not None
    _edit(path, "int-paths")
    assert cache.load(digest) is None
