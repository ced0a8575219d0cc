"""The command line's own parameter types and the options every image command shares.

``ImageReference`` and ``ImagePath`` carry their shell completion; ``PlatformType`` turns
``os/arch[/variant]`` into a :class:`~imgtool.image.platform.Platform` while the command line is
parsed, so a bad platform fails before any image is opened (exit 2, the message of
:meth:`Platform.parse`, which the error funnel prints as it prints every usage error).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final, TypedDict, TypeVar

import click
from click.shell_completion import CompletionItem

from imgtool.console.app import QUIET
from imgtool.console.completion import complete_image, complete_image_path, complete_platform
from imgtool.console.funnel import warn
from imgtool.console.output import DEFAULT_TABLE_FORMAT, TABLE_FORMATS, TerminalProgress, use_colour
from imgtool.errors import UsageError
from imgtool.image.compression import Compression, check_level, named_compression
from imgtool.image.platform import Platform
from imgtool.merge.index import IndexCache
from imgtool.ops.common import Reading
from imgtool.ops.listing import SORTS, TYPES
from imgtool.progress import NoProgress, Progress
from imgtool.sources.registry import RegistryOptions
from imgtool.sources.registry.blobcache import BlobCache
from imgtool.sources.registry.credentials import parse_creds
from imgtool.system.cachedir import parse_size

if TYPE_CHECKING:
    from imgtool.ops.ci import Thresholds

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

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return complete_platform(ctx, param, incomplete)


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
    "--no-cache",
    is_flag=True,
    help="Do not read or write the layer index cache, nor the cache of blobs fetched from a registry "
    "($XDG_CACHE_HOME/imgtool).",
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


def _creds(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    if ":" not in value:  # as skopeo does: the password is asked for, not echoed; or read from a pipe
        if sys.stdin.isatty():
            password = click.prompt("Password", hide_input=True, err=True)
        else:
            password = sys.stdin.readline().removesuffix("\n")
        value = f"{value}:{password}"
    return parse_creds(value)


# How a docker:// image is reached (the registry's options; a local image ignores them).
_registry_options = [
    click.option(
        "--creds",
        metavar="USER[:PASSWORD]",
        callback=_creds,
        help="Credentials for a docker:// registry (without :PASSWORD it is asked for, or read from "
        "stdin when that is not a terminal). Default: "
        "--authfile, else $DOCKER_CONFIG/config.json (auths, credHelpers, credsStore), else "
        "$XDG_RUNTIME_DIR/containers/auth.json, else anonymous.",
    ),
    click.option(
        "--authfile",
        type=click.Path(dir_okay=False),
        metavar="FILE",
        help="The auth.json (or docker config.json) to read credentials from (default: $REGISTRY_AUTH_FILE).",
    ),
    click.option(
        "--plain-http",
        is_flag=True,
        help="Speak plain HTTP to the registry. By default HTTPS is used; a registry on localhost or "
        "127.0.0.0/8 that does not answer HTTPS gets plain HTTP.",
    ),
    click.option(
        "--tls-verify",
        type=click.BOOL,
        default=True,
        show_default=True,
        metavar="BOOL",
        help="Check the registry's TLS certificate against the system's CA store "
        "(--tls-verify=false: do not).",
    ),
]


def progress_for(quiet: bool) -> Progress:
    return TerminalProgress() if sys.stderr.isatty() and not quiet else NoProgress()


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """The shared options of an image command, as the command receives them (``opts``)."""

    platform: Platform | None = None
    no_cache: bool = False
    quiet: bool = False
    as_json: bool = False
    table_format: str = DEFAULT_TABLE_FORMAT
    creds: tuple[str, str] | None = None
    authfile: str | None = None
    plain_http: bool = False
    tls_verify: bool = True

    @property
    def registry(self) -> RegistryOptions:
        """How to reach a docker:// image's registry; warnings (a failing credential helper) go to stderr.
        Blobs come from the blob cache where it has them, and are kept there, unless --no-cache."""
        return RegistryOptions(
            creds=self.creds,
            authfile=self.authfile,
            plain_http=self.plain_http,
            tls_verify=self.tls_verify,
            warn=warn,
            blob_cache=None if self.no_cache else BlobCache(),
        )

    @property
    def registry_for_copy(self) -> RegistryOptions:
        """:attr:`registry` whose blob cache is read but not added to: what a copy fetches its
        destination keeps (writing each blob twice made a pull from a registry slower than skopeo's)."""
        return dataclasses.replace(self.registry, blob_cache=BlobCache(keep=False))

    @property
    def registry_uncached(self) -> RegistryOptions:
        """:attr:`registry` without the blob cache: every blob fetched (verify checks the registry's)."""
        return dataclasses.replace(self.registry, blob_cache=None)

    def reading(self, quiet: bool | None = None) -> Reading:
        """How to read layers: the index cache unless --no-cache, a progress bar on a terminal
        unless -q or --json (or ``quiet``)."""
        shown = not (self.quiet or self.as_json) if quiet is None else not quiet
        return Reading(None if self.no_cache else IndexCache(), progress_for(not shown), warn)

    @property
    def progress(self) -> Progress:
        """A progress bar on a terminal, unless -q or --json."""
        return progress_for(self.quiet or self.as_json)

    @property
    def colour(self) -> bool:
        return use_colour(sys.stdout)


def image_options(
    *, cache: bool = True, quiet: bool = True, output: bool = True
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """The options image commands share, after the command's own: --platform, then (as the
    command has them) --no-cache, -q/--quiet, --json and --format, then the registry's. The command
    gets them as one :class:`ImageOptions`, its ``opts`` argument."""
    chosen = [
        _platform_option,
        *([_no_cache_option] if cache else []),
        *([_quiet_option] if quiet else []),
        *([_json_option, _format_option] if output else []),
        *_registry_options,
    ]
    return _gathered(chosen, ImageOptions, "opts")


def _quiet_before_the_command() -> bool:
    """-q was given to the group (``imgtool -q flatten ...``)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(QUIET))


def _gathered(
    options: list[Callable[[Any], Any]], into: type[Any], name: str
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Adds ``options`` to a command, which gets their values as one ``into`` (a dataclass whose
    fields are the options' names), its argument ``name``."""
    names = {f.name for f in fields(into)}

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> R:
            values = {key: kwargs.pop(key) for key in names if key in kwargs}
            if "quiet" in names and _quiet_before_the_command():
                values["quiet"] = True
            return func(*args, **{name: into(**values)}, **kwargs)

        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@dataclass(frozen=True, slots=True)
class FlattenOptions:
    """flatten's own options, as the command receives them (``how``)."""

    output: str
    force_tar: bool = False
    force: bool = False
    safe: bool = False
    upto: int | None = None
    provenance: str | None = None
    max_size: int | None = None
    compress: str | None = None
    compress_level: int | None = None

    def __post_init__(self) -> None:
        check_level(self.compression, self.compress_level)  # a bad level fails before IMAGE is opened

    @property
    def compression(self) -> Compression:
        """--compress, else what the name says (.tar.gz, .tgz, .tar.zst), else none."""
        if self.compress is not None:
            return Compression(self.compress)
        return named_compression(self.output) or Compression.NONE

    @property
    def as_tar(self) -> bool:
        return (
            self.force_tar
            or self.output == "-"
            or named_compression(self.output) is not None
            or self.compression is not Compression.NONE
        )

    def arguments(self, reading: Reading) -> FlattenArguments:
        """The keyword arguments of :func:`imgtool.flatten.api.flatten` these options stand for."""
        from imgtool.flatten.api import default_max_size  # noqa: PLC0415 - only flatten needs it

        return FlattenArguments(
            as_tar=self.as_tar,
            force=self.force,
            upto=self.upto,
            cache=reading.cache,
            progress=reading.progress,
            max_size=self.max_size if self.max_size is not None else default_max_size(self.output),
            provenance=self.provenance,
            safe=self.safe,
            warn=reading.warn,
            compression=self.compression,
            compress_level=self.compress_level,
        )


class FlattenArguments(TypedDict):
    as_tar: bool
    force: bool
    upto: int | None
    cache: IndexCache | None
    progress: Progress | None
    max_size: int | None
    provenance: str | None
    safe: bool
    warn: Callable[[str], None] | None
    compression: Compression
    compress_level: int | None


_WRITTEN: Final = (Compression.GZIP, Compression.ZSTD, Compression.NONE)


def flatten_options(func: Callable[..., R]) -> Callable[..., R]:
    """flatten's own options: where to write and how (a :class:`FlattenOptions`, ``how``)."""
    options = [
        click.option(
            "-o",
            "--output",
            required=True,
            metavar="DIR|FILE.tar|-",
            help="A directory (must not exist or be empty), a .tar file (.tar.gz or .tgz: gzip-compressed, "
            ".tar.zst: zstd-compressed), or - for a tar stream on stdout. A symlink there is refused, "
            "never followed.",
        ),
        click.option(
            "--tar",
            "force_tar",
            is_flag=True,
            help="Write a tar file even if the name does not say so (.tar, .tar.gz, .tgz, .tar.zst).",
        ),
        click.option(
            "--force", is_flag=True, help="Replace a non-empty output directory or an existing tar file."
        ),
        click.option(
            "--safe",
            is_flag=True,
            help="Leave out device nodes, setuid/setgid bits and all but user.* xattrs (to look at files, "
            "not to run them).",
        ),
        click.option(
            "--layers", "upto", type=int, metavar="N", help="Stop after layer N (0 is the bottom layer)."
        ),
        click.option(
            "--provenance",
            type=click.Path(dir_okay=False, writable=True),
            metavar="FILE",
            help="Also write which layer supplied each path (TSV, or JSON if FILE ends in .json); it goes "
            "into place with the output. A symlink there is refused.",
        ),
        click.option(
            "--max-size",
            type=int,
            metavar="BYTES",
            help="Refuse a layer whose uncompressed tar exceeds BYTES (default: the free space at the "
            "output; for -o -, in TMPDIR).",
        ),
        click.option(
            "--compress",
            type=click.Choice([kind.value for kind in _WRITTEN]),
            help="Compress the tar (default: as the -o name says; for -o -, none). It wins over the name, "
            "with a warning: -o rootfs.tar.gz --compress none writes a plain tar there. gzip or zstd "
            "makes any other name a tar file.",
        ),
        click.option(
            "--compress-level",
            type=int,
            metavar="N",
            help="gzip: 1-9, as gzip -N (default: isal's level 2 where isal is installed, else 6); "
            "zstd: 1-19 (default 3).",
        ),
    ]
    return _gathered(options, FlattenOptions, "how")(func)


@dataclass(frozen=True, slots=True)
class DiffLayersOptions:
    """diff layers' own arguments and options, as the command receives them (``how``)."""

    first: int | None = None
    second: int | None = None
    verbose: bool = False
    top: int = 10
    ci: bool = False
    lowest_efficiency: str | None = None
    highest_wasted_bytes: str | None = None
    highest_user_wasted_percent: str | None = None

    def ci_thresholds(self) -> Thresholds:
        """--ci's thresholds, checked before any image is read (a UsageError: exit 2)."""
        from imgtool.ops.ci import Thresholds, thresholds  # noqa: PLC0415 - the operation, when it runs

        given = [
            name
            for name, value in (
                ("--lowest-efficiency", self.lowest_efficiency),
                ("--highest-wasted-bytes", self.highest_wasted_bytes),
                ("--highest-user-wasted-percent", self.highest_user_wasted_percent),
            )
            if value is not None
        ]
        if not self.ci:
            if given:
                raise UsageError(f"{given[0]} is a rule of --ci: give --ci as well")
            return Thresholds()
        if self.first is not None or self.verbose:
            raise UsageError("--ci rates the whole image: it takes no layer number and no -v")
        return thresholds(self.lowest_efficiency, self.highest_wasted_bytes, self.highest_user_wasted_percent)


# diff layers' [A [B]], -v, --top, --ci and its rules (a :class:`DiffLayersOptions`, ``how``).
diff_layers_options = _gathered(
    [
        click.argument("first", type=int, required=False, metavar="[A"),
        click.argument("second", type=int, required=False, metavar="[B]]"),
        click.option("-v", "--verbose", is_flag=True, help="List every change of every layer."),
        click.option("--top", default=10, show_default=True, help="How many space-wasting paths to show."),
        click.option(
            "--ci",
            is_flag=True,
            help="Judge the image by dive's CI rules instead: print each rule's result and the wasted "
            "files, and exit 1 if a rule fails (dive's measures, see docs/json.md).",
        ),
        click.option(
            "--lowest-efficiency",
            metavar="RATIO",
            help="With --ci: fail below this efficiency, 0 to 1, or 'disabled'.  [default: 0.9]",
        ),
        click.option(
            "--highest-wasted-bytes",
            metavar="SIZE",
            help="With --ci: fail above this many wasted bytes (20MB, 20MiB, 1500), or 'disabled'.  "
            "[default: disabled]",
        ),
        click.option(
            "--highest-user-wasted-percent",
            metavar="RATIO",
            help="With --ci: fail when the wasted bytes exceed this ratio, 0 to 1, of the bytes the "
            "layers above the first store, or 'disabled'.  [default: 0.1]",
        ),
    ],
    DiffLayersOptions,
    "how",
)


def side_platform_options(func: Callable[..., R]) -> Callable[..., R]:
    """diff images' --platform1 and --platform2: each side's platform (arguments ``platform1``
    and ``platform2``), where one index's images are compared, or --platform is not for both."""
    for side in (2, 1):
        func = click.option(
            f"--platform{side}",
            type=PLATFORM,
            metavar="OS/ARCH[/VARIANT]",
            help=f"The platform of IMAGE{side} (default: --platform, else this machine's).",
        )(func)
    return func


def copy_options(func: Callable[..., R]) -> Callable[..., R]:
    """copy's own options: ``jobs`` and ``all_platforms`` (arguments of their own) and --json (into
    ``opts``)."""
    func = click.option("--json", "as_json", is_flag=True, help="Print what was copied as JSON.")(func)
    func = click.option(
        "--all-platforms",
        is_flag=True,
        help="Copy the whole image index SRC names, every platform, byte for byte (crane's default). "
        "Without it one image is copied, the one --platform names or this machine's (skopeo's default, "
        "and what every imgtool command reads).",
    )(func)
    jobs: Callable[..., R] = _jobs_option(
        "How many blobs are copied at once (each checked against its digest on the way)."
    )(func)
    return jobs


def _jobs_option(help_text: str) -> Callable[[Any], Any]:
    """-j/--jobs, how many blobs go at once (copy's and squash's): 1 to 32, 4 by default, as
    :data:`imgtool.ops.copy.DEFAULT_JOBS` and ``MAX_JOBS`` (not imported: start-up stays short)."""
    return click.option(
        "-j", "--jobs", type=click.IntRange(1, 32), default=4, show_default=True, help=help_text
    )


def raw_options(func: Callable[..., R]) -> Callable[..., R]:
    """inspect's --raw and --config: the command gets ``document``, "manifest", "config" or None."""

    @functools.wraps(func)
    def command(*args: Any, raw: bool, config: bool, **kwargs: Any) -> R:
        if raw and config:
            raise UsageError("--raw and --config are each a document of their own: give one")
        return func(*args, document="manifest" if raw else "config" if config else None, **kwargs)

    command = click.option(
        "--config", is_flag=True, help="Print the image config's bytes as stored (for jq), nothing else."
    )(command)
    return click.option(
        "--raw",
        is_flag=True,
        help="Print the manifest's bytes as stored, or the image index's where IMAGE names one and "
        "no --platform is given (for jq), nothing else.",
    )(command)


# --json and --format alone, for a command that reads no layers (images): as ``opts``.
output_options = _gathered([_json_option, _format_option], ImageOptions, "opts")


@dataclass(frozen=True, slots=True)
class LsOptions:
    """ls's own options, as the command receives them (``how``)."""

    recursive: bool = False
    layer_number: int | None = None
    only: bool = False
    dereference: bool = False
    sort: str = "name"
    types: tuple[str, ...] = ()

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of :func:`imgtool.ops.listing.list_image` (checked before the image
        is opened)."""
        if self.only and self.layer_number is None:
            raise UsageError("--only needs --layer N")
        return {
            "recursive": self.recursive,
            "layer": self.layer_number,
            "only": self.only,
            "dereference": self.dereference,
            "sort": self.sort,
            "types": "".join(self.types),
        }


layer_option = click.option(
    "--layer", "layer_number", type=int, metavar="N", help="The tree as it stood after layer N."
)


def ls_options(func: Callable[..., R]) -> Callable[..., R]:
    """ls's own options (a :class:`LsOptions`, ``how``)."""
    options = [
        click.option("-R", "--recursive", is_flag=True, help="List everything below PATH."),
        layer_option,
        click.option(
            "--only", is_flag=True, help="With --layer: only layer N's own entries (whiteouts as deletions)."
        ),
        click.option(
            "-L",
            "--dereference",
            is_flag=True,
            help="Show what each symlink points to, not the link itself; with -R, enter a link to a "
            "directory (the first link to each, and none inside the directory it leads to).",
        ),
        click.option(
            "--sort",
            type=click.Choice(SORTS),
            default="name",
            show_default=True,
            help="Order: by name (a directory's contents after it), by size (largest first, as ls -S) "
            "or by layer (lowest first; ties by name).",
        ),
        click.option(
            "--type",
            "types",
            type=click.Choice(sorted(TYPES)),
            multiple=True,
            help="Only entries of this type, as find -type: f (a file, hardlinks too), d, l, c, b, p; "
            "repeat for several. With -L a symlink is of its target's type.",
        ),
    ]
    return _gathered(options, LsOptions, "how")(func)


class SizeType(click.ParamType[int, "str | int"]):
    """A size: bytes, or a number with K, M, G or T (powers of 1024)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        return parse_size(str(value), f"--{param.name.replace('_', '-')}" if param and param.name else "size")


SIZE = SizeType()


def cache_prune_options(func: Callable[..., R]) -> Callable[..., R]:
    """cache prune's own options: ``everything`` (--all) and ``max_size`` (arguments of their own)."""
    func = click.option(
        "--max-size",
        type=SIZE,
        metavar="SIZE",
        help="Keep at most SIZE (bytes, or 500M, 10G...) of blobs and header indexes together, the "
        "least recently used removed first (default: $IMGTOOL_BLOB_CACHE_MAX, else 10G).",
    )(func)
    return click.option("--all", "everything", is_flag=True, help="Remove everything the caches hold.")(func)


@dataclass(frozen=True, slots=True)
class SquashOptions:
    """squash's own options, as the command receives them (``how``)."""

    first: int | None = None
    last: int | None = None
    compression: str = "gzip"
    jobs: int = 4
    max_size: int | None = None

    def arguments(self, reading: Reading) -> dict[str, Any]:
        """The keyword arguments of :func:`imgtool.ops.squash.squash_image` these options stand for."""
        from imgtool.flatten.api import default_max_size  # noqa: PLC0415 - only squash needs it

        return {
            "first": self.first,
            "last": self.last,
            "compression": self.compression,
            "jobs": self.jobs,
            "cache": reading.cache,
            "progress": reading.progress,
            "warn": reading.warn,
            "max_size": self.max_size if self.max_size is not None else default_max_size("-"),
        }


def squash_options(func: Callable[..., R]) -> Callable[..., R]:
    """squash's own options (a :class:`SquashOptions`, ``how``), then --json (into ``opts``)."""
    func = click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")(func)
    options = [
        click.option(
            "--from",
            "first",
            type=int,
            metavar="N",
            help="The lowest layer to squash (0 is the bottom layer; default: 0).",
        ),
        click.option(
            "--to", "last", type=int, metavar="M", help="The highest layer to squash (default: the top one)."
        ),
        click.option(
            "--compress",
            "compression",
            type=click.Choice(["gzip", "zstd", "none"]),
            default="gzip",
            show_default=True,
            help="How the squashed layer is compressed (zstd needs an OCI manifest).",
        ),
        _jobs_option("How many blobs are copied to DEST at once."),
        click.option(
            "--max-size",
            type=int,
            metavar="BYTES",
            help="Refuse a layer whose uncompressed tar exceeds BYTES (default: the free space in TMPDIR).",
        ),
    ]
    return _gathered(options, SquashOptions, "how")(func)
