"""The long help of each command, below the one-line summary its function's docstring gives in
:mod:`imgtool.cli`: what it does in detail, and examples. Kept apart so that the CLI module holds
only the commands; :func:`attach` adds each text to its command, and tests/console/test_help.py
parses every example."""

from __future__ import annotations

from typing import Final

import click

HELP: Final[dict[str, str]] = {
    "inspect": """
From a registry it fetches the manifest and the config, no layer.

\b
Examples:
  imgtool inspect examples/sample.tar
  imgtool inspect oci:examples/sample-oci:1.1 --json
  imgtool inspect oci:examples/sample-oci:1.1 --raw | jq .layers""",
    "verify": """
Reads each layer in full and checks its blob digest and its diff_id.
Exits 0 only if everything matches. From a registry it fetches every
blob, whatever the blob cache holds.

\b
Example:
  imgtool verify examples/sample.tar""",
    "flatten": """
The layers are applied in order, as a container would see them: whiteouts
(.wh.NAME, .wh..wh..opq and their overlayfs forms) as docker, containerd
and umoci apply them. Nothing is written outside the output, and a
directory output appears only once it is complete (its root 0700 until then).

The output is exact by default: run as root, device nodes, setuid files and
security xattrs are created as the image says. --safe leaves them out.

While it works, flatten keeps .NAME.imgtool-PID-* beside the output and
.imgtool-spool-PID-* there or in TMPDIR; if it is killed, the next flatten
in the same place removes those of a PID that is gone.

From a registry it fetches each layer the blob cache does not hold.

\b
Examples:
  imgtool flatten examples/sample.tar -o rootfs
  imgtool flatten examples/sample.tar -o rootfs.tar --layers 1 --provenance paths.tsv
  imgtool flatten examples/sample.tar -o rootfs.tar.zst      # or .tar.gz, .tgz
  imgtool flatten oci:examples/sample-oci:1.1 -o - | tar -t
  imgtool flatten examples/sample.tar -o - --compress gzip | tar -tz""",
    "which-layer": """
PATH may be a shell pattern ('/usr/lib/*.so*'); symlinks in PATH are followed
inside the image, as a container would see them. Exits 1 if a path is absent.
From a registry it fetches the layers whose index is not cached.

\b
Example:
  imgtool which-layer examples/sample.tar /bin/hello '/etc/app/*'""",
    "ls": """
PATH (default /) is listed as the final image has it, or as it stood after
layer N; with --only, layer N's own entries are listed, whiteouts included.
PATH may be a shell pattern ('/usr/lib/*.so*'), each match listed as if named.
Symlinks in PATH's parents are followed inside the image; PATH itself, if a
symlink, is listed as the link unless it leads to a directory (or with -L).
From a registry it fetches the layers whose index is not cached.

\b
Examples:
  imgtool ls examples/sample.tar /etc
  imgtool ls examples/sample.tar '/usr/bin/h*'
  imgtool ls examples/sample.tar / -R --layer 3 --only
  imgtool ls examples/sample.tar / -R --type f --sort size""",
    "cat": """
With --layer N, the file as it stood after layer N. Symlinks are followed
inside the image. Layers are read from the top down to the one holding
the file (once their indexes are cached, that layer alone). From a
registry it fetches those layers, not the ones below.

\b
Examples:
  imgtool cat examples/sample.tar /etc/app/app.conf
  imgtool cat examples/sample.tar /opt/app/share/install.log --layer 1""",
    "diff": """
\b
Examples:
  imgtool diff layers examples/sample.tar
  imgtool diff images examples/sample.tar oci:examples/sample-oci:1.1""",
    "diff layers": """
Without A: a summary per layer (added, modified, deleted) and the space that
later layers made unreachable. With A: every change of layer A. With A and B:
the tree after layer A against the tree after layer B (as git diff A B: with
B below A, what would undo the layers between them). From a registry it
fetches the layers whose index is not cached.

With --ci: dive's CI rules, each PASS, FAIL or SKIP (disabled) with the value
measured, and the files that waste space; exits 1 if a rule fails. Its measures
are dive's (per path across layers), not the summary's efficiency figure; they
differ from dive's own where directories are deleted, hidden or replaced
(docs/json.md).

\b
Examples:
  imgtool diff layers examples/sample.tar          # a summary per layer, and wasted space
  imgtool diff layers examples/sample.tar 2 -v     # every change of layer 2
  imgtool diff layers examples/sample.tar 1 3      # after layer 1 against after layer 3
  imgtool diff layers examples/sample.tar --ci --highest-wasted-bytes 20MB""",
    "diff images": """
Exits 0 if they are identical, 1 if they differ. --platform chooses both images
of their indexes; --platform1 and --platform2 each side's, so that the images of
one index for two platforms can be compared. From a registry it fetches the
layers whose index is not cached.

\b
Examples:
  imgtool diff images examples/sample.tar oci:examples/sample-oci:1.1
  imgtool diff images oci:multi:1 oci:multi:1 --platform1 linux/amd64 --platform2 linux/arm64""",
    "copy": """
DEST: oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG] or
docker://HOST/REPO[:TAG]. Of an index, one image (--platform) or all. A docker-archive
stores its layers uncompressed, as docker save does: its manifest digest is not the source's.
From a registry it fetches each blob DEST lacks, unless the blob cache holds it
(what it fetches is not added to the cache: DEST keeps it).

\b
Example:
  imgtool copy oci:examples/sample-oci:1.1 docker://localhost:5000/sample:1.1""",
    "images": """
PATH is a docker-save tarball, an OCI archive or an OCI layout, or a store
(docker-storage:[ROOT], containers-storage:[DRIVER@ROOT+RUNROOT]). Each image
with the name that opens it (IMAGE is PATH:NAME, a store's TRANSPORT:[…]NAME
or @ID), platform, manifest digest, size (config and layer blobs as stored;
a store's layers as tars) and creation time. Reads no registry.

\b
Examples:
  imgtool images examples/sample-oci --json
  imgtool images docker-storage:[/var/lib/docker]""",
    "squash": """
Writes IMAGE to DEST (any destination copy writes: oci:DIR[:REF],
oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG], docker://HOST/REPO[:TAG])
with its layers --from N to --to M (default: all) merged into one, what flatten
gives for them plus whiteouts for what they removed of the layers below; the
other layers are kept as they are, the history entries of the range are folded
into one.

\b
Example:
  imgtool squash oci:examples/sample-oci:1.1 oci:squashed:1.1 --from 1 --to 3""",
    "cache": """
Blobs fetched from registries and layer header indexes live in
$XDG_CACHE_HOME/imgtool (default ~/.cache/imgtool). The blob cache keeps
at most $IMGTOOL_BLOB_CACHE_MAX (default 10G), removing the least
recently used blobs first. Reaches no registry.

\b
Examples:
  imgtool cache info
  imgtool cache prune --max-size 2G""",
    "cache info": """
Reaches no registry.

\b
Example:
  imgtool cache info --json""",
    "cache prune": """
Also removes temporary files a killed run left (a day old) and header
indexes of an older format. With --all, empties both caches. Reaches no
registry.

\b
Examples:
  imgtool cache prune
  imgtool cache prune --max-size 500M
  imgtool cache prune --all""",
    "completion": """
\b
Examples:
  imgtool completion bash > ~/.local/share/bash-completion/completions/imgtool
  imgtool completion zsh > ~/.zfunc/_imgtool
  imgtool completion fish > ~/.config/fish/completions/imgtool.fish""",
}


def attach(group: click.Group, path: str = "") -> None:
    """Append each command's long help to its summary; a command without one is an error here."""
    for name, command in group.commands.items():
        key = f"{path} {name}".strip()
        if key not in HELP:
            raise KeyError(f"no long help for command {key!r}")
        command.help = f"{command.help}\n{HELP[key]}"
        if isinstance(command, click.Group):
            attach(command, key)
