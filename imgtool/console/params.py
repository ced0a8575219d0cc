"""The command line's own parameter types and the options every image command shares.

``ImageReference`` and ``ImagePath`` carry their shell completion; ``PlatformType`` turns
``os/arch[/variant]`` into a :class:`~imgtool.image.model.Platform` while the command line is
parsed, so a bad platform fails before any image is opened (exit 2, the message of
:meth:`Platform.parse`, which the error funnel prints as it prints every usage error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click
from click.shell_completion import CompletionItem

from imgtool.console.completion import complete_image, complete_image_path
from imgtool.console.output import DEFAULT_TABLE_FORMAT, TABLE_FORMATS
from imgtool.image.model import Platform

P = ParamSpec("P")
R = TypeVar("R")


class ImageReference(click.ParamType[str, str]):
    """An image reference (a path, ``oci:DIR[:REF]``, ...); opened by the command, completed here."""

    name = "image"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return complete_image(ctx, param, incomplete)


class ImagePath(click.ParamType[str, str]):
    """A path inside the image named by the command's IMAGE; completed from the index cache."""

    name = "path"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return complete_image_path(ctx, param, incomplete)


class PlatformType(click.ParamType[Platform, "str | Platform"]):
    name = "platform"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Platform:
        return value if isinstance(value, Platform) else Platform.parse(str(value))


IMAGE = ImageReference()
IMAGE_PATH = ImagePath()
PLATFORM = PlatformType()

image_argument = click.argument("image", metavar="IMAGE", type=IMAGE)

_platform_option = click.option(
    "--platform",
    type=PLATFORM,
    metavar="OS/ARCH[/VARIANT]",
    help="Which image of a multi-platform index to use (default: this machine's platform).",
)
_no_cache_option = click.option(
    "--no-cache", is_flag=True, help="Do not read or write the layer index cache ($XDG_CACHE_HOME/imgtool)."
)
_quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr.")
_format_option = click.option(
    "--format",
    "table_format",
    type=click.Choice(TABLE_FORMATS),
    default=DEFAULT_TABLE_FORMAT,
    show_default=True,
    metavar="FORMAT",
    help="Table style, any of tabulate's formats (plain, simple, github, grid, ...).",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def image_options(
    *, cache: bool = True, quiet: bool = True, output: bool = True
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The options image commands share, after the command's own: --platform, then (as the
    command has them) --no-cache, -q/--quiet, --json and --format."""
    chosen = [
        _platform_option,
        *([_no_cache_option] if cache else []),
        *([_quiet_option] if quiet else []),
        *([_json_option, _format_option] if output else []),
    ]

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        for option in reversed(chosen):
            func = option(func)
        return func

    return decorate
