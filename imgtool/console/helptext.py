"""The long help of each command, below the one-line summary its function's docstring gives in
:mod:`imgtool.cli`: what it does in detail, and examples. Kept apart so that the CLI module holds
only the commands; :func:`attach` adds each text to its command, and tests/console/test_help.py
parses every example."""

from __future__ import annotations

from typing import Final

import click

HELP: Final[dict[str, str]] = {
    "inspect": """
\b
Examples:
  imgtool inspect examples/sample.tar
  imgtool inspect oci:examples/sample-oci:1.1 --json
  imgtool inspect oci:examples/sample-oci:1.1 --raw | jq .layers""",
    "verify": """
Reads each layer in full and checks its blob digest and its diff_id.
Exits 0 only if everything matches.

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

\b
Examples:
  imgtool flatten examples/sample.tar -o rootfs
  imgtool flatten examples/sample.tar -o rootfs.tar --layers 1 --provenance paths.tsv
  imgtool flatten oci:examples/sample-oci:1.1 -o - | tar -t""",
    "which-layer": """
PATH may be a shell pattern ('/usr/lib/*.so*'); symlinks in PATH are followed
inside the image, as a container would see them. Exits 1 if a path is absent.

\b
Example:
  imgtool which-layer examples/sample.tar /bin/hello '/etc/app/*'""",
    "ls": """
PATH (default /) is listed as the final image has it, or as it stood after
layer N; with --only, layer N's own entries are listed, whiteouts included.
PATH may be a shell pattern ('/usr/lib/*.so*'), each match listed as if named.
Symlinks in PATH's parents are followed inside the image; PATH itself, if a
symlink, is listed as the link unless it leads to a directory (or with -L).

\b
Examples:
  imgtool ls examples/sample.tar /etc
  imgtool ls examples/sample.tar '/usr/bin/h*'
  imgtool ls examples/sample.tar / -R --layer 3 --only
  imgtool ls examples/sample.tar / -R --type f --sort size""",
    "cat": """
With --layer N, the file as it stood after layer N. Symlinks are followed
inside the image. Only the layer holding the file is read.

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
B below A, what would undo the layers between them).

\b
Examples:
  imgtool diff layers examples/sample.tar          # a summary per layer, and wasted space
  imgtool diff layers examples/sample.tar 2 -v     # every change of layer 2
  imgtool diff layers examples/sample.tar 1 3      # after layer 1 against after layer 3""",
    "diff images": """
Exits 0 if they are identical, 1 if they differ. --platform chooses both images
of their indexes; --platform1 and --platform2 each side's, so that the images of
one index for two platforms can be compared.

\b
Examples:
  imgtool diff images examples/sample.tar oci:examples/sample-oci:1.1
  imgtool diff images oci:multi:1 oci:multi:1 --platform1 linux/amd64 --platform2 linux/arm64""",
    "copy": """
DEST: oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG] or
docker://HOST/REPO[:TAG]. Of an index, one image (--platform) or all. A docker-archive
stores its layers uncompressed, as docker save does: its manifest digest is not the source's.

\b
Example:
  imgtool copy oci:examples/sample-oci:1.1 docker://localhost:5000/sample:1.1""",
    "images": """
PATH is a docker-save tarball, an OCI archive or an OCI layout, or a store
(docker-storage:[ROOT], containers-storage:[DRIVER@ROOT+RUNROOT]). Each image
with the name that opens it (IMAGE is PATH:NAME, a store's TRANSPORT:[…]NAME
or @ID), platform, manifest digest, size (config and layer blobs as stored;
a store's layers as tars) and creation time.

\b
Examples:
  imgtool images examples/sample-oci --json
  imgtool images docker-storage:[/var/lib/docker]""",
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
