"""Run the commands shown in the documentation's tour blocks and write their real output back.

A tour block is a fenced ``console`` block between ``<!-- tour:NAME -->`` and ``<!-- /tour -->``.
Its lines starting with ``$ `` are commands; everything else in it is output, and is replaced by
what the commands print now. Each block runs in a fresh directory holding a link to ``examples/``,
with a private index cache, no colour, UTC and unbuffered output, so the output is the same on every
run. ``imgtool`` there runs ``python -m imgtool`` from this checkout.

    python scripts/readme_tour.py            rewrite README.md and docs/json.md
    python scripts/readme_tour.py --check    exit 1 (and show a diff) if either would change

tests/test_readme.py runs the check, so the documentation never shows output imgtool does not print.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
FILES: Final = ("README.md", "docs/json.md")
BLOCK: Final = re.compile(
    r"(?P<open><!-- tour:(?P<name>[\w.-]+) -->\n```console\n)(?P<body>.*?)(?P<close>```\n<!-- /tour -->)",
    re.DOTALL,
)
PROMPT: Final = "$ "
TIMEOUT: Final = 120.0


class TourError(Exception):
    """A tour block is malformed, or one of its commands failed unexpectedly."""


@dataclass(frozen=True)
class Block:
    name: str
    commands: list[str]


def parse_blocks(text: str) -> list[Block]:
    blocks = []
    for match in BLOCK.finditer(text):
        commands = [line[len(PROMPT) :] for line in match["body"].splitlines() if line.startswith(PROMPT)]
        if not commands:
            raise TourError(f"tour block {match['name']!r} has no '$ ' command line")
        blocks.append(Block(match["name"], commands))
    return blocks


def _environment(workdir: Path) -> dict[str, str]:
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "imgtool"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m imgtool "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(workdir / "home"),
        "XDG_CACHE_HOME": str(workdir / "cache"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "NO_COLOR": "1",
        "TZ": "UTC",
        "LC_ALL": "C.UTF-8",
        "COLUMNS": "80",
    }


def run_block(block: Block, workdir: Path, env: dict[str, str]) -> str:
    """The block's console text: each command after its prompt, then what it printed."""
    here = workdir / "blocks" / block.name
    here.mkdir(parents=True)
    (here / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    out = []
    for command in block.commands:
        result = subprocess.run(
            ["bash", "--norc", "--noprofile", "-c", command],
            cwd=here,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=TIMEOUT,
            check=False,
        )
        text = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0 and "$?" not in command:
            raise TourError(
                f"tour block {block.name!r}: {command!r} exited {result.returncode} "
                f"(show the status with '; echo \"exit status: $?\"' if that is the point):\n{text}"
            )
        out.append(PROMPT + command + "\n")
        out.append(text if not text or text.endswith("\n") else text + "\n")
    return "".join(out)


def render(text: str, workdir: Path) -> str:
    """``text`` with every tour block's output replaced by what its commands print now."""
    env = _environment(workdir)
    (workdir / "home").mkdir()
    blocks = parse_blocks(text)
    names = [b.name for b in blocks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TourError(f"tour block names used twice: {', '.join(duplicates)}")
    # Blocks are independent (each has its own directory), so they run side by side.
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        bodies = dict(zip(names, pool.map(lambda b: run_block(b, workdir, env), blocks), strict=True))
    return BLOCK.sub(lambda m: m["open"] + bodies[m["name"]] + m["close"], text)


def rendered_files(files: tuple[str, ...] = FILES) -> dict[str, tuple[str, str]]:
    """For each file: (current text, text with fresh tour output)."""
    result = {}
    for name in files:
        path = ROOT / name
        current = path.read_text(encoding="utf-8")
        with tempfile.TemporaryDirectory(prefix="imgtool-tour-") as tmp:
            result[name] = (current, render(current, Path(tmp)))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report whether a file would change")
    args = parser.parse_args(argv)
    status = 0
    for name, (current, fresh) in rendered_files().items():
        if current == fresh:
            print(f"{name}: up to date")
            continue
        if args.check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(keepends=True), fresh.splitlines(keepends=True), name, name + " (now)"
                )
            )
            status = 1
        else:
            (ROOT / name).write_text(fresh, encoding="utf-8")
            print(f"{name}: rewritten")
    return status


if __name__ == "__main__":
    sys.exit(main())
