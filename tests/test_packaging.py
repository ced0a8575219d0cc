"""The wheel: what it holds, and that an install of it gives a working imgtool and python -m imgtool.

Building needs setuptools from the package index (pip's build isolation) and installing needs
click, zstandard and tabulate from it; the test skips if the index cannot be reached.
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources so that the checkout gets no build/ directory."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheels")
    _require(_pip("wheel", ".", "--no-deps", "--quiet", "-w", str(out), cwd=source), "pip wheel")
    (found,) = out.glob("imgtool-*.whl")
    return found


def test_wheel_holds_the_completions_and_py_typed(wheel: Path) -> None:
    assert wheel.name == f"imgtool-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        data = f"imgtool-{__version__}.data/data/"
        for installed, committed in DATA_FILES.items():
            assert data + installed in names, installed
            assert archive.read(data + installed) == (ROOT / committed).read_bytes(), installed
        assert "imgtool/py.typed" in names
        assert "imgtool/__main__.py" in names
        assert not any(n.startswith(("tests/", "benchmarks/", "scripts/", "examples/")) for n in names)
        entry_points = archive.read(f"imgtool-{__version__}.dist-info/entry_points.txt").decode()
        assert "imgtool = imgtool.cli:entry" in entry_points


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
