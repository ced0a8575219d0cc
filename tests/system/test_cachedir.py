"""What the caches share: sizes as people write them, and removing the least recently used files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgtool.errors import UsageError
from imgtool.system.cachedir import cache_files, evict, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0), ("1234", 1234), ("5B", 5), ("1k", 1000), ("3 M", 3_000_000), ("10G", 10**10),
        ("10GB", 10**10), ("2T", 2 * 10**12), ("1Ki", 1024), ("512MiB", 512 << 20), ("2GiB", 2 << 30),
    ],
)  # fmt: skip
def test_a_size_is_bytes_or_a_number_with_a_unit(text: str, size: int) -> None:
    assert parse_size(text, "--max-size") == size


@pytest.mark.parametrize("text", ["", " ", "x", "1.5G", "-1", "10Q", "G", "10 G B", "0x10"])
def test_anything_else_is_no_size(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_size(text, "--max-size")
    assert str(caught.value) == (
        f"--max-size: not a size: {text!r} (bytes, or a number with K, M, G, T, Ki, Mi, Gi or Ti)"
    )


def test_the_least_recently_used_go_first_and_keep_stays(tmp_path: Path) -> None:
    folder = tmp_path / "sha256"
    folder.mkdir()
    for age, name in enumerate(["old", "mid", "new", "kept"]):
        (folder / name).write_bytes(b"x" * 10)
        os.utime(folder / name, ns=(age + 1, age + 1))
    (folder / ".tmp-1-ab").write_bytes(b"partial")
    (folder / "link").symlink_to(folder / "new")
    (tmp_path / "stray").write_bytes(b"not in an algorithm's folder")
    files, temps = cache_files(tmp_path)
    assert [f.path.name for f in files] == ["kept", "mid", "new", "old"]
    assert [t.path.name for t in temps] == [".tmp-1-ab"]
    oldest_first = sorted(files, key=lambda f: f.used_ns)
    assert [f.path.name for f in oldest_first] == ["old", "mid", "new", "kept"]
    removed = evict(files, 20, keep=folder / "old")
    assert [f.path.name for f in removed] == ["mid", "new"]
    assert sorted(os.listdir(folder)) == [".tmp-1-ab", "kept", "link", "old"]
