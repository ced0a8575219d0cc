"""The command line's parameter types and shared options: a bad platform fails while parsing,
completion lives on the types, every image command has the same shared options."""

from __future__ import annotations

import click
import pytest

from imgtool.cli import cli
from imgtool.console.params import IMAGE, IMAGE_PATH, PLATFORM, ImagePath, ImageReference, PlatformType
from imgtool.errors import UsageError
from imgtool.image.platform import Platform
from tests.helpers.cli import ImgtoolCli

BAD_PLATFORM = "imgtool: error: invalid platform 'linux': expected os/arch[/variant], e.g. linux/amd64\n"


def _command(path: str) -> click.Command:
    command: click.Command = cli
    for name in path.split():
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


IMAGE_COMMANDS = ["inspect", "verify", "flatten", "which-layer", "ls", "cat", "diff layers", "diff images"]


def test_platform_is_parsed_into_a_platform() -> None:
    assert PLATFORM.convert("linux/aarch64/v8", None, None) == Platform("linux", "arm64", "v8")
    with pytest.raises(UsageError, match=r"^invalid platform 'linux/': expected os/arch"):
        PLATFORM.convert("linux/", None, None)


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "--platform", "linux"],  # no IMAGE yet: the platform is refused first
        ["ls", "--platform", "linux", "/nonexistent/image.tar"],
        ["diff", "images", "--platform", "linux", "a.tar"],
    ],
)
def test_a_bad_platform_fails_while_parsing(args: list[str], imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli(*args)
    assert (run.code, run.stdout_bytes, run.stderr) == (2, b"", BAD_PLATFORM)


@pytest.mark.parametrize("path", IMAGE_COMMANDS)
def test_every_image_command_shares_the_image_options(path: str) -> None:
    params = {p.name: p for p in _command(path).params}
    images = [p for p in params.values() if isinstance(p.type, ImageReference)]
    assert [p.name for p in images] == (["image1", "image2"] if path == "diff images" else ["image"])
    assert isinstance(params["platform"].type, PlatformType)
    assert params["platform"].metavar == "OS/ARCH[/VARIANT]"
    if path not in ("inspect", "verify"):
        assert params["no_cache"].opts == ["--no-cache"]
    if path not in ("flatten", "cat"):
        assert params["as_json"].opts == ["--json"]
        assert params["table_format"].default == "simple"


@pytest.mark.parametrize(("path", "name"), [("which-layer", "paths"), ("ls", "path"), ("cat", "path")])
def test_paths_in_the_image_complete_through_their_type(path: str, name: str) -> None:
    (param,) = [p for p in _command(path).params if p.name == name]
    assert param.type is IMAGE_PATH
    assert isinstance(param.type, ImagePath)


def test_completion_lives_on_the_types(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def recorder(kind: str) -> object:
        def complete(ctx: click.Context, param: click.Parameter, text: str) -> list[object]:
            calls.append((kind, text))
            return []

        return complete

    monkeypatch.setattr("imgtool.console.params.complete_image", recorder("image"))
    monkeypatch.setattr("imgtool.console.params.complete_image_path", recorder("path"))
    ctx = click.Context(cli)
    param = click.Argument(["image"])
    assert IMAGE.shell_complete(ctx, param, "oci:") == []
    assert IMAGE_PATH.shell_complete(ctx, param, "/etc/") == []
    assert calls == [("image", "oci:"), ("path", "/etc/")]
