"""Shell completion: the committed scripts, click's completion API, and a real bash driving them."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.shell_completion import CompletionItem, ShellComplete

from imgtool.cli import cli
from imgtool.console.completion import COMPLETE_VAR, SHELLS, completion_script
from imgtool.image.image import Layer
from tests.helpers.cli import ImgtoolCli

ROOT = Path(__file__).resolve().parents[2]
COMPLETIONS = ROOT / "completions"
SAMPLE = "examples/sample.tar"
LAYOUT = "examples/sample-oci"
BREAKS = "\"'><=;|&(:"  # bash's default COMP_WORDBREAKS, less whitespace

needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


# -- the committed scripts ---------------------------------------------------------------------


@pytest.mark.parametrize("shell", SHELLS)
def test_committed_script_is_what_the_cli_generates(shell: str, imgtool_cli: ImgtoolCli) -> None:
    committed = (COMPLETIONS / f"imgtool.{shell}").read_text(encoding="utf-8")
    generated = completion_script(cli, shell)
    assert committed == generated, f"completions/imgtool.{shell} is stale: run scripts/generate-completions"
    run = imgtool_cli("completion", shell)
    assert (run.code, run.stdout) == (0, committed)


@pytest.mark.parametrize(("name", "target"), [("imgtool", "imgtool.bash"), ("_imgtool", "imgtool.zsh")])
def test_installed_names_link_to_the_generated_scripts(name: str, target: str) -> None:
    link = COMPLETIONS / "installed" / name
    assert link.is_symlink()
    assert os.readlink(link) == f"../{target}"
    assert link.read_bytes() == (COMPLETIONS / target).read_bytes()


def test_completion_rejects_an_unknown_shell(imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("completion", "tcsh")
    assert run.code == 2
    assert "tcsh" in run.stderr


# -- click's completion API --------------------------------------------------------------------


@pytest.fixture
def in_checkout(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture
def forbid_layer_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[str]]:
    """Call it to make opening any layer blob fail the test from then on; returns the list of attempts."""

    def forbid() -> list[str]:
        attempts: list[str] = []

        def refuse(self: Layer, *args: object, **kwargs: object) -> None:
            attempts.append(self.what)
            raise AssertionError(f"completion opened {self.what}")

        monkeypatch.setattr(Layer, "open_blob", refuse)
        monkeypatch.setattr(Layer, "open", refuse)
        return attempts

    return forbid


def complete(args: list[str], incomplete: str) -> list[CompletionItem]:
    return ShellComplete(cli, {}, "imgtool", COMPLETE_VAR).get_completions(args, incomplete)


def values(args: list[str], incomplete: str) -> list[str]:
    return [item.value for item in complete(args, incomplete)]


def test_commands_and_options_complete() -> None:
    assert values([], "di") == ["diff"]
    assert values(["diff"], "") == ["images", "layers"]
    assert "--provenance" in values(["flatten", SAMPLE], "--pro")


def test_image_is_a_file_path_left_to_the_shell(in_checkout: Path) -> None:
    items = complete(["inspect"], "examples/sa")
    assert [(i.type, i.value) for i in items] == [("file", "examples/sa")]
    items = complete(["inspect"], "")
    assert [(i.type, i.value) for i in items] == [("file", "")]


def test_transport_prefixes_are_offered_with_matching_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.tar").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    assert values(["inspect"], "o") == ["oci:", "oci-archive:", "overlay:", "overlay-mount:", "old.tar"]
    assert values(["inspect"], "oci") == ["oci:", "oci-archive:"]
    assert values(["inspect"], "d") == [
        "docker-archive:",
        "docker-storage:",
        "docker-container:",
        "docker://",
        "dir/",
    ]
    assert values(["diff", "images", "old.tar"], "docker") == [
        "docker-archive:",
        "docker-storage:",
        "docker-container:",
        "docker://",
    ]
    assert values(["inspect"], "c") == ["containers-storage:"]
    assert values(["inspect"], "podman") == ["podman-container:"]
    assert values(["inspect"], "overlay") == ["overlay:", "overlay-mount:"]


def test_paths_after_a_transport_prefix(in_checkout: Path) -> None:
    assert values(["inspect"], "oci:examples/sa") == ["oci:examples/sample-oci/"]  # directories only
    assert values(["inspect"], "docker-archive:examples/sa") == [
        "docker-archive:examples/sample-oci/",
        "docker-archive:examples/sample.tar",
    ]
    assert values(["inspect"], "oci:nowhere/") == []


def test_tags_inside_a_layout_and_archives(in_checkout: Path, tmp_path: Path) -> None:
    assert values(["inspect"], f"oci:{LAYOUT}:") == [f"oci:{LAYOUT}:1.0", f"oci:{LAYOUT}:1.1"]
    assert values(["inspect"], f"oci:{LAYOUT}:1.1") == [f"oci:{LAYOUT}:1.1"]
    assert values(["ls"], f"docker-archive:{SAMPLE}:") == [
        f"docker-archive:{SAMPLE}:localhost/sample:1.0",
        f"docker-archive:{SAMPLE}:@0",
    ]
    assert values(["ls"], f"docker-archive:{SAMPLE}:localhost/sample:") == [
        f"docker-archive:{SAMPLE}:localhost/sample:1.0"
    ]
    archive = tmp_path / "sample-oci.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(ROOT / LAYOUT, arcname=".")
    assert values(["diff", "images", SAMPLE], f"oci-archive:{archive}:") == [
        f"oci-archive:{archive}:1.0",
        f"oci-archive:{archive}:1.1",
    ]
    assert values(["inspect"], f"oci:{SAMPLE}:") == []  # not a layout: nothing, and no error


def test_image_paths_need_the_index_cache(
    in_checkout: Path, forbid_layer_reads: Callable[[], list[str]]
) -> None:
    attempts = forbid_layer_reads()
    started = time.monotonic()
    for args in (["ls", SAMPLE], ["cat", SAMPLE], ["which-layer", SAMPLE]):
        assert values(args, "/") == [], args
        assert values(args, "/etc/") == [], args
    assert time.monotonic() - started < 5
    assert attempts == []


def test_image_paths_come_from_the_cached_index(
    in_checkout: Path, imgtool_cli: ImgtoolCli, forbid_layer_reads: Callable[[], list[str]]
) -> None:
    assert imgtool_cli("ls", SAMPLE).code == 0  # builds and caches the layer indexes
    attempts = forbid_layer_reads()
    started = time.monotonic()
    assert values(["ls", SAMPLE], "") == [
        "/bin/",
        "/etc/",
        "/home/",
        "/lib/",
        "/opt/",
        "/root/",
        "/sbin/",
        "/tmp/",
        "/usr/",
        "/var/",
    ]
    assert values(["ls", SAMPLE], "/e") == ["/etc/"]
    assert values(["cat", SAMPLE], "/etc/app/") == ["/etc/app/app.conf", "/etc/app/token"]
    assert values(["cat", SAMPLE], "/etc/m") == ["/etc/motd"]
    assert values(["which-layer", SAMPLE, "/etc/passwd"], "/bin/h") == ["/bin/hello", "/bin/hi"]
    assert values(["which-layer", SAMPLE], "/usr/bin/a") == ["/usr/bin/app"]  # a symlink to a file
    assert values(["which-layer", SAMPLE], "/opt/app/share/") == ["/opt/app/share/greeting.txt"]
    assert values(["ls", SAMPLE], "/var/cache/app/") == []  # hidden names need a leading dot
    assert values(["ls", SAMPLE], "/var/cache/app/.") == ["/var/cache/app/.keep"]
    assert values(["ls", SAMPLE], "etc/a") == ["etc/app/"]
    assert values(["ls", SAMPLE], "/nowhere/") == []
    assert values(["ls", f"oci:{LAYOUT}:1.0"], "/etc/mo") == ["/etc/motd"]  # same layers, same cache
    assert values(["ls", f"oci:{LAYOUT}:1.1"], "/etc/mo") == []  # layer 4 was never indexed
    assert time.monotonic() - started < 5
    assert attempts == []


# -- a real bash -------------------------------------------------------------------------------


def _comp_words(line: str) -> list[str]:
    """COMP_WORDS as bash splits ``line`` (no quotes in it): at whitespace and at break characters."""
    words = re.findall(rf"[^\s{re.escape(BREAKS)}]+|[{re.escape(BREAKS)}]+", line)
    if not line or line[-1].isspace():
        words.append("")
    return words


@pytest.fixture
def bash_env(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working directory with ``examples/`` and an ``imgtool`` on PATH running this checkout."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    (work / "old.tar").write_bytes(b"")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "imgtool"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m imgtool "$@"\n')
    wrapper.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(ROOT),
    }
    yield work, env


def bash_complete(work: Path, env: dict[str, str], line: str) -> tuple[list[str], list[str]]:
    """Source the committed script in bash, complete ``line`` at its end: (COMPREPLY, compopt calls)."""
    words = _comp_words(line)
    script = f"""
source {ROOT / "completions" / "imgtool.bash"}
compopt() {{ printf 'compopt' >&2; printf ' %s' "$@" >&2; printf '\\n' >&2; }}
COMP_LINE={_quote(line)}
COMP_POINT=${{#COMP_LINE}}
COMP_WORDS=({" ".join(_quote(w) for w in words)})
COMP_CWORD={len(words) - 1}
_imgtool_completion imgtool "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    replies = [line for line in result.stdout.split("\n") if line]
    calls = [line for line in result.stderr.splitlines() if line.startswith("compopt ")]
    return replies, calls


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


@needs_bash
def test_bash_registers_the_completion(bash_env: tuple[Path, dict[str, str]]) -> None:
    work, env = bash_env
    result = subprocess.run(
        [
            "bash",
            "--norc",
            "--noprofile",
            "-c",
            f"source {COMPLETIONS / 'imgtool.bash'}; complete -p imgtool",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "complete -o nosort -F _imgtool_completion imgtool\n"


@needs_bash
def test_bash_completes_commands_and_file_paths(bash_env: tuple[Path, dict[str, str]]) -> None:
    work, env = bash_env
    assert bash_complete(work, env, "imgtool di") == (["diff"], [])
    assert bash_complete(work, env, "imgtool diff ") == (["images", "layers"], [])
    assert bash_complete(work, env, "imgtool inspect exa") == ([], ["compopt -o default"])
    assert bash_complete(work, env, "imgtool inspect o") == (
        ["oci:", "oci-archive:", "overlay:", "overlay-mount:", "old.tar"],
        [],
    )
    assert bash_complete(work, env, "imgtool inspect docker") == (
        ["docker-archive:", "docker-storage:", "docker-container:", "docker://"],
        [],
    )
    assert bash_complete(work, env, "imgtool ls old.tar --format=gi") == (["github"], [])


@needs_bash
def test_bash_completes_after_colons(bash_env: tuple[Path, dict[str, str]]) -> None:
    """bash splits oci:DIR:TAG at each ':' and replaces only the text after the last one."""
    work, env = bash_env
    assert bash_complete(work, env, "imgtool inspect oci:exa") == (["examples/"], ["compopt -o nospace"])
    assert bash_complete(work, env, "imgtool inspect oci:examples/") == (
        ["examples/sample-oci/"],
        ["compopt -o nospace"],
    )
    assert bash_complete(work, env, f"imgtool inspect oci:{LAYOUT}:") == (["1.0", "1.1"], [])
    assert bash_complete(work, env, f"imgtool inspect oci:{LAYOUT}:1.1") == (["1.1"], [])
    assert bash_complete(work, env, f"imgtool ls docker-archive:{SAMPLE}:") == (
        ["localhost/sample:1.0", "@0"],
        [],
    )
    assert bash_complete(work, env, f"imgtool ls docker-archive:{SAMPLE}:localhost/sample:") == (["1.0"], [])
    assert bash_complete(work, env, f"imgtool diff images {SAMPLE} oci:{LAYOUT}:1") == (["1.0", "1.1"], [])


@needs_bash
def test_bash_completes_paths_inside_the_image(
    bash_env: tuple[Path, dict[str, str]], imgtool_cli: ImgtoolCli
) -> None:
    work, env = bash_env
    assert bash_complete(work, env, f"imgtool cat {SAMPLE} /etc/app/") == ([], [])  # cold cache
    assert imgtool_cli("ls", str(ROOT / SAMPLE)).code == 0  # the same XDG_CACHE_HOME as bash sees
    assert bash_complete(work, env, f"imgtool cat {SAMPLE} /etc/app/") == (
        ["/etc/app/app.conf", "/etc/app/token"],
        [],
    )
    assert bash_complete(work, env, f"imgtool ls {SAMPLE} /b") == (["/bin/"], ["compopt -o nospace"])
    assert bash_complete(work, env, f"imgtool which-layer oci:{LAYOUT}:1.0 /bin/h") == (
        ["/bin/hello", "/bin/hi"],
        [],
    )


def _read_until(fd: int, pattern: str, timeout: float = 20.0) -> str:
    """Read a terminal until ``pattern`` (a regex) appears in what it showed, escapes removed."""
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                shown += os.read(fd, 4096)
            except OSError:
                break
            text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x07|\r", "", shown.decode("utf-8", "replace"))
            if re.search(pattern, text):
                return text
    raise AssertionError(f"the terminal never showed {pattern!r}; it showed:\n{shown!r}")


@needs_bash
def test_interactive_bash_completes_a_tag(bash_env: tuple[Path, dict[str, str]]) -> None:
    """What a user sees: Tab in an interactive bash on a terminal, readline and all."""
    work, env = bash_env
    env = {**env, "TERM": "dumb", "INPUTRC": "/dev/null", "HISTFILE": "/dev/null", "PS1": "$ "}
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes bash
        os.chdir(work)
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
    try:
        os.write(fd, f"PS1='$ '; source {COMPLETIONS / 'imgtool.bash'}; echo rea''dy\n".encode())
        _read_until(fd, r"ready\n")
        # Tab inserts what 1.0 and 1.1 share; as readline does after a partial insertion, the next
        # Tab only rings the bell and the one after lists both; then "1" and Tab pick 1.1, and
        # Ctrl-A "echo " Enter prints the line as completed.
        os.write(fd, f"imgtool inspect oci:{LAYOUT}:".encode() + b"\t")
        _read_until(fd, rf"oci:{LAYOUT}:1\.$")
        os.write(fd, b"\t\t")
        _read_until(fd, r"1\.0\s+1\.1")
        os.write(fd, b"1\t\x01echo \n")
        _read_until(fd, rf"\nimgtool inspect oci:{LAYOUT}:1\.1\n")
    finally:
        os.kill(pid, signal.SIGKILL)  # an interactive bash ignores SIGTERM
        os.waitpid(pid, 0)
        os.close(fd)


# -- zsh and fish, where installed ---------------------------------------------------------------


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_tags_and_image_paths(
    bash_env: tuple[Path, dict[str, str]], imgtool_cli: ImgtoolCli
) -> None:
    work, env = bash_env
    assert imgtool_cli("ls", str(ROOT / SAMPLE)).code == 0

    def fish(line: str) -> list[str]:
        script = f"source {COMPLETIONS / 'imgtool.fish'}; complete -C {_quote(line)}"
        result = subprocess.run(
            ["fish", "--no-config", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [row.split("\t")[0] for row in result.stdout.splitlines()]

    assert fish(f"imgtool inspect oci:{LAYOUT}:") == [f"oci:{LAYOUT}:1.0", f"oci:{LAYOUT}:1.1"]
    assert fish("imgtool inspect oci:exa") == ["oci:examples/"]
    assert fish(f"imgtool cat {SAMPLE} /etc/app/") == ["/etc/app/app.conf", "/etc/app/token"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_interactive_zsh_completes_a_directory_then_a_tag(bash_env: tuple[Path, dict[str, str]]) -> None:
    work, env = bash_env
    env = {**env, "TERM": "dumb", "HISTFILE": "/dev/null"}
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child becomes zsh
        os.chdir(work)
        os.execvpe("zsh", ["zsh", "-f", "-i"], env)
    try:
        setup = f"PS1='$ '; autoload -Uz compinit; compinit -u; source {COMPLETIONS / 'imgtool.zsh'}"
        os.write(fd, f"{setup}; echo rea''dy\n".encode())
        _read_until(fd, r"ready\n")
        # a directory gets no trailing space, so the next Tab goes on inside it
        os.write(fd, b"imgtool inspect oci:exa\t")
        _read_until(fd, r"oci:examples/$")
        os.write(fd, b"\t")
        _read_until(fd, r"sample-oci/$")
        os.write(fd, b"\x08:1.1\x01echo \n")
        _read_until(fd, rf"\nimgtool inspect oci:{LAYOUT}:1\.1\n")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def test_docker_prefix_is_offered_and_nothing_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert values(["inspect"], "docker:") == ["docker://"]
    assert values(["copy", "oci:x"], "docker:/") == ["docker://"]
    # after it, nothing: no tags or repositories are asked for (completion never reaches the network)
    for typed in ("docker://", "docker://127.0.0.1:1/", "docker://127.0.0.1:1/repo:"):
        assert complete(["inspect"], typed) == []
        assert complete(["copy", "oci:x"], typed) == []


@needs_bash
def test_bash_completes_the_docker_prefix(bash_env: tuple[Path, dict[str, str]]) -> None:
    work, env = bash_env
    assert bash_complete(work, env, "imgtool inspect docker:") == (["//"], ["compopt -o nospace"])
    assert bash_complete(work, env, "imgtool copy oci:x docker://127.0.0.1:1/r") == ([], [])


# -- --platform values -------------------------------------------------------------------------


def _two_platform_layout(where: Path) -> str:
    from tests.helpers.imagefactory import Entry, File, ImageSpec, IndexSpec, make_layer, write_oci_layout

    spec = IndexSpec(
        [
            ImageSpec([make_layer([File("p", b"amd64\n")])]),
            ImageSpec([make_layer([File("p", b"arm64\n")])], architecture="arm64", variant="v8"),
        ],
        attestations=True,
    )
    both = Entry(spec, ref="v1")
    one = Entry(ImageSpec([make_layer([File("p", b"s390x\n")])], architecture="s390x"), ref="v2")
    return write_oci_layout(where / "multi", [both, one]).reference()


@pytest.mark.parametrize("shell", SHELLS)
def test_platform_values_come_from_the_image(shell: str, tmp_path: Path, in_checkout: Path) -> None:
    """Each shell's completer (click's own loses the image when --platform waits for its value)."""
    from imgtool.console.shells import SHELL_CLASSES

    layout = _two_platform_layout(tmp_path)

    def offered(args: list[str], incomplete: str) -> list[str]:
        completer = SHELL_CLASSES[shell](cli, {}, "imgtool", COMPLETE_VAR)
        return [item.value for item in completer.get_completions(args, incomplete)]

    assert offered(["ls", f"{layout}:v1", "--platform"], "") == ["linux/amd64", "linux/arm64/v8"]
    assert offered(["ls", f"{layout}:v1", "--platform"], "linux/ar") == ["linux/arm64/v8"]
    assert offered(["ls", f"{layout}:v1"], "--platform=linux/a") == ["linux/amd64", "linux/arm64/v8"]
    assert offered(["ls", f"{layout}:v2", "--platform"], "") == ["linux/s390x"]
    assert offered(["inspect", layout, "--platform"], "") == ["linux/amd64", "linux/arm64/v8", "linux/s390x"]
    assert offered(["inspect", f"oci:{LAYOUT}:1.1", "--platform"], "") == ["linux/amd64"]
    side = ["diff", "images", f"{layout}:v2", f"{layout}:v1"]
    assert offered([*side, "--platform1"], "") == ["linux/s390x"]
    assert offered([*side, "--platform2"], "") == ["linux/amd64", "linux/arm64/v8"]
    assert offered([*side, "--platform"], "") == ["linux/s390x"]  # the first image's
    assert offered(["ls", "docker://127.0.0.1:9/none:1", "--platform"], "") == []  # no network
    assert offered(["ls", str(tmp_path / "absent"), "--platform"], "") == []
    assert offered(["ls", "--platform"], "") == []


@needs_bash
def test_bash_completes_platforms(bash_env: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    work, env = bash_env
    layout = _two_platform_layout(tmp_path)
    assert bash_complete(work, env, f"imgtool ls {layout}:v1 --platform ") == (
        ["linux/amd64", "linux/arm64/v8"],
        [],
    )


def test_directories_after_the_overlay_prefixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "low").mkdir()
    (tmp_path / "lower.tar").write_bytes(b"")
    (tmp_path / "up").mkdir()
    assert values(["inspect"], "overlay:lo") == ["overlay:low/"]  # directories only
    assert values(["inspect"], "overlay:low:lo") == ["overlay:low:low/"]  # each directory of the stack
    assert values(["inspect"], "overlay:low+u") == ["overlay:low+up/"]
    assert values(["inspect"], "overlay-mount:u") == ["overlay-mount:up/"]
    assert values(["inspect"], "overlay:nowhere/") == []


@needs_bash
def test_bash_completes_the_stores_and_directories_prefixes(bash_env: tuple[Path, dict[str, str]]) -> None:
    work, env = bash_env
    assert bash_complete(work, env, "imgtool inspect cont") == (
        ["containers-storage:"],
        ["compopt -o nospace"],
    )
    assert bash_complete(work, env, "imgtool ls podman-") == (["podman-container:"], ["compopt -o nospace"])
    (work / "low").mkdir()
    # after the colons bash splits at, only the last part of the word is replaced
    assert bash_complete(work, env, "imgtool ls overlay:examples:lo") == (["low/"], ["compopt -o nospace"])
    assert bash_complete(work, env, "imgtool ls overlay-mount:lo") == (["low/"], ["compopt -o nospace"])
