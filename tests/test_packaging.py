"""The wheel: what it holds, and that an install of it (with pip, or pipx from the wheel or the
sources) gives a working imgtool and python -m imgtool.

The distribution is called container-imgtool: on PyPI, imgtool is MCUboot's image-signing tool.
The import package and the command stay imgtool.

Building needs setuptools from the package index (pip's build isolation) and installing needs
click, zstandard and tabulate from it (and pipx, for the pipx test); the tests skip if the index
cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from imgtool import __version__

ROOT = Path(__file__).resolve().parent.parent
DATA_FILES = {
    "share/bash-completion/completions/imgtool": "completions/imgtool.bash",
    "share/zsh/site-functions/_imgtool": "completions/imgtool.zsh",
    "share/fish/vendor_completions.d/imgtool.fish": "completions/imgtool.fish",
}
SOURCES = ("pyproject.toml", "README.md", "imgtool", "completions")
DISTRIBUTION = "container-imgtool"
STEM = DISTRIBUTION.replace("-", "_")  # in file names of the wheel


def _pip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _require(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode == 0:
        return
    text = result.stdout + result.stderr
    if any(s in text for s in ("No matching distribution", "Could not find a version", "NewConnectionError")):
        pytest.skip(f"{what}: the package index is not reachable")
    pytest.fail(f"{what} failed:\n{text}")


def _copy_sources(source: Path) -> Path:
    """The files a build reads, copied, so that the checkout gets no build/ directory."""
    source.mkdir(exist_ok=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    return source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources."""
    source = _copy_sources(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheels")
    _require(_pip("wheel", ".", "--no-deps", "--quiet", "-w", str(out), cwd=source), "pip wheel")
    (found,) = out.glob(f"{STEM}-*.whl")
    return found


def test_wheel_holds_the_completions_and_py_typed(wheel: Path) -> None:
    assert wheel.name == f"{STEM}-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = f"{STEM}-{__version__}.data/data/"
        for installed, committed in DATA_FILES.items():
            assert data + installed in names, installed
            assert archive.read(data + installed) == (ROOT / committed).read_bytes(), installed
        assert "imgtool/py.typed" in names
        assert "imgtool/__main__.py" in names
        assert not any(n.startswith(("tests/", "benchmarks/", "scripts/", "examples/")) for n in names)
        entry_points = archive.read(f"{STEM}-{__version__}.dist-info/entry_points.txt").decode()
        assert "imgtool = imgtool.cli:entry" in entry_points
        metadata = archive.read(f"{STEM}-{__version__}.dist-info/METADATA").decode().splitlines()
        assert f"Name: {DISTRIBUTION}" in metadata
        assert not any(
            n.split("/")[0]
            not in ("imgtool", f"{STEM}-{__version__}.data", f"{STEM}-{__version__}.dist-info")
            for n in names
        )


def test_wheel_installs_a_working_imgtool(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(target)
    python = target / "bin" / "python"
    _require(_pip("--python", str(python), "install", "--quiet", str(wheel), cwd=tmp_path), "pip install")
    away = tmp_path / "elsewhere"  # not the checkout: python -m must find the installed package
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for argv in ([str(target / "bin" / "imgtool"), "--version"], [str(python), "-m", "imgtool", "--version"]):
        result = subprocess.run(argv, cwd=away, env=env, capture_output=True, text=True, check=False)
        assert (result.returncode, result.stdout, result.stderr) == (0, f"imgtool {__version__}\n", ""), argv
    located = subprocess.run(
        [str(python), "-c", "import imgtool; print(imgtool.__file__)"],
        cwd=away,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(located.stdout.strip()).is_relative_to(target)
    for installed, committed in DATA_FILES.items():
        assert (target / installed).read_bytes() == (ROOT / committed).read_bytes(), installed
    result = subprocess.run(
        [str(target / "bin" / "imgtool"), "ls", str(ROOT / "examples" / "sample.tar"), "/etc/app"],
        cwd=away,
        env={**env, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "/etc/app/app.conf" in result.stdout


def test_pipx_installs_from_the_wheel_and_from_the_sources(wheel: Path, tmp_path: Path) -> None:
    """pipx from the package index, in a PIPX_HOME of the test's own: the command it puts on the
    PATH is imgtool, of the distribution container-imgtool."""
    tools = tmp_path / "tools"
    venv.EnvBuilder(with_pip=False).create(tools)
    _require(
        _pip("--python", str(tools / "bin" / "python"), "install", "--quiet", "pipx", cwd=tmp_path),
        "pip install pipx",
    )
    source = _copy_sources(tmp_path / "source")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIPX_"))}
    for name, what in (("wheel", wheel), ("sources", source)):
        home = tmp_path / name
        env.update(
            PIPX_HOME=str(home / "pipx"), PIPX_BIN_DIR=str(home / "bin"), PIPX_MAN_DIR=str(home / "man")
        )
        installed = subprocess.run(
            [str(tools / "bin" / "pipx"), "install", str(what)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        _require(installed, f"pipx install from the {name}")
        listed = subprocess.run(
            [str(tools / "bin" / "pipx"), "list", "--short"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert listed.stdout == f"{DISTRIBUTION} {__version__}\n", name
        result = subprocess.run(
            [str(home / "bin" / "imgtool"), "--version"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, f"imgtool {__version__}\n", ""), name
