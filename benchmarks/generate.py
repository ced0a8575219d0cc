#!/usr/bin/env python3
"""Generate a deterministic, Debian-like 10-layer container image for benchmarking.

The image is written as an OCI image layout directory (``oci-layout``, ``index.json`` with the
ref name ``bench``, ``blobs/sha256/...``) and optionally also as a ``docker save`` tarball.
Same arguments give byte-identical output, given the same Python, zlib and zstandard versions
(the compressors' output is only stable per library version).

Layer plan (``--scale 1.0``; counts and large sizes are multiplied by ``--scale``):

0. base distro tree: /usr/bin, /usr/lib/x86_64-linux-gnu, /usr/share/{doc,man,locale,zoneinfo},
   /etc, /var, usr-merge symlinks, hardlinks, setuid/setgid binaries, no device nodes
1-4. package installs: new files, upgrades that overwrite lower files, apt lists and .deb caches
5. cache cleanup: thousands of ``.wh.`` whiteouts (debs, lists, docs, man pages, locales, __pycache__)
6. ~20k small files: a node_modules tree
7. a few large files (hundreds of MB, from incompressible to highly compressible)
8. ~100 directories replaced wholesale (``.wh..wh..opq`` plus new content)
9. the application: sources, config changes, chmods, re-added files, a few whiteouts

Only the Python standard library and ``zstandard`` are used.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import multiprocessing
import os
import random
import shutil
import sys
import tarfile
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

import zstandard


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


CHUNK: Final = 1 << 16
SUBCHUNK: Final = 1 << 12
TEXT_POOL_BYTES: Final = 8 << 20
RAND_POOL_BYTES: Final = 64 << 20
BASE_MTIME: Final = 1_700_000_000
REF_NAME: Final = "bench"

MEDIA_INDEX: Final = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER: Final = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}

# Entry kinds.
DIR: Final = "dir"
FILE: Final = "file"
SYMLINK: Final = "symlink"
HARDLINK: Final = "hardlink"
WHITEOUT: Final = "whiteout"
OPAQUE: Final = "opaque"

# Content kinds: t = text-like (gzip ~0.4), r = incompressible, b = executable-like mix (~0.6),
# z = mostly zero pages (~0.1).
TEXT: Final = "t"
RANDOM: Final = "r"
BINARY: Final = "b"
SPARSE: Final = "z"

SYLLABLES: Final = words(
    "ba co de fi gu ha ji ko lu ma ne po qu ri sa tu vi wo xe yo ze ar el in on ur st tr pl gr "
    "br cl ex ly mo ni pe ra so ta"
)
SETUID: Final = {
    "passwd": 0o4755,
    "su": 0o4755,
    "mount": 0o4755,
    "umount": 0o4755,
    "chsh": 0o4755,
    "chfn": 0o4755,
    "gpasswd": 0o4755,
    "newgrp": 0o4755,
    "chage": 0o2755,
    "expiry": 0o2755,
    "wall": 0o2755,
}
COMMON_BINS: Final = (
    *SETUID,
    *words(
        "bash ls cp mv rm cat grep sed mawk tar gzip find xargs sort uniq head tail chmod chown ln "
        "mkdir rmdir touch date dd df du echo env id install md5sum sha256sum stat stty sync tee "
        "test tr true false uname wc whoami yes dpkg dpkg-query dpkg-deb apt apt-get apt-cache "
        "apt-config perl login diff cmp bzip2 xz zcat less more ps kill hostname getent ldd locale "
        "iconv"
    ),
)
BASE_PACKAGES: Final = words(
    "base-files base-passwd bash bsdutils coreutils dash debconf debian-archive-keyring "
    "debianutils diffutils dpkg e2fsprogs findutils gcc-12-base gpgv grep gzip hostname "
    "init-system-helpers libacl1 libapt-pkg6.0 libc-bin libc6 libgcc-s1 libpam-modules libpam0g "
    "libselinux1 libssl3 libstdc++6 libsystemd0 login mawk mount ncurses-base passwd perl-base "
    "sed sysvinit-utils tar tzdata util-linux zlib1g"
)
LOCALES: Final = words(
    "en en_GB en_US af ar ast be bg bn bs ca cs cy da de el eo es et eu fa fi fr ga gl gu he hi "
    "hr hu id is it ja ka kk km ko ku lt lv mk ml mr ms nb ne nl nn pa pl pt pt_BR ro ru sk sl "
    "sq sr sv ta te th tr uk vi zh_CN zh_TW"
)
TEXT_DOMAINS: Final = words(
    "coreutils bash dpkg apt util-linux findutils grep sed tar diffutils shadow e2fsprogs libc "
    "debconf gettext-runtime"
)
ZONE_REGIONS: Final = words(
    "Africa America Antarctica Asia Atlantic Australia Brazil Canada Europe Indian Pacific US"
)
APT_LISTS: Final = words(
    "deb.debian.org_debian_dists_bookworm_InRelease "
    "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4 "
    "deb.debian.org_debian_dists_bookworm-updates_InRelease "
    "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages.lz4 "
    "deb.debian.org_debian-security_dists_bookworm-security_InRelease "
    "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4 "
    "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en.lz4 "
    "deb.debian.org_debian_dists_bookworm_contrib_binary-amd64_Packages.lz4 "
    "deb.debian.org_debian_dists_bookworm_non-free_binary-amd64_Packages.lz4 "
    "deb.debian.org_debian_dists_bookworm_non-free-firmware_binary-amd64_Packages.lz4 "
    "deb.debian.org_debian_dists_bookworm_main_dep11_Components-amd64.yml.gz "
    "deb.debian.org_debian_dists_bookworm_main_dep11_icons-64x64.tar.gz "
    "deb.debian.org_debian_dists_bookworm-updates_main_i18n_Translation-en.lz4 "
    "deb.debian.org_debian-security_dists_bookworm-security_main_i18n_Translation-en.lz4"
)
ETC_FILES: Final = words(
    "adduser.conf bash.bashrc bindresvport.blacklist debconf.conf debian_version deluser.conf "
    "e2scrub.conf environment gai.conf host.conf hostname issue issue.net ld.so.conf login.defs "
    "mke2fs.conf motd nsswitch.conf pam.conf profile shells subgid subuid xattr.conf networks "
    "protocols services rpc ethertypes inputrc libaudit.conf mime.types securetty sysctl.conf"
)
ETC_DIRS: Final = words(
    "apt/apt.conf.d apt/preferences.d apt/sources.list.d apt/trusted.gpg.d apt/auth.conf.d "
    "default pam.d security cron.daily logrotate.d profile.d systemd/system ld.so.conf.d "
    "update-motd.d dpkg/dpkg.cfg.d security/limits.d security/namespace.d sysctl.d "
    "kernel/postinst.d"
)


# --------------------------------------------------------------------------------------------------
# Deterministic helpers.


def stable_int(*key: object) -> int:
    """A 63-bit integer from a key; ``repr`` of ints and strings is stable across Python versions."""
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=8).digest(), "big") >> 1


class Rng:
    """Only ``random()`` of the Mersenne Twister is guaranteed stable across Python versions."""

    def __init__(self, *key: object) -> None:
        self._r = random.Random(stable_int(*key))

    def random(self) -> float:
        return self._r.random()

    def below(self, n: int) -> int:
        return min(int(self._r.random() * n), n - 1)

    def between(self, lo: int, hi: int) -> int:
        return lo + self.below(hi - lo + 1)

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def choice(self, seq: Sequence[str]) -> str:
        return seq[self.below(len(seq))]

    def sample(self, seq: Sequence[str], k: int) -> list[str]:
        pool = list(seq)
        k = min(k, len(pool))
        for i in range(k):
            j = i + self.below(len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]

    def gauss(self) -> float:
        u1 = 1.0 - self._r.random()
        u2 = self._r.random()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def size(self, median: float, sigma: float, lo: int, hi: int) -> int:
        return max(lo, min(hi, round(median * math.exp(sigma * self.gauss()))))

    def word(self, lo: int = 2, hi: int = 4) -> str:
        return "".join(self.choice(SYLLABLES) for _ in range(self.between(lo, hi)))

    def names(
        self,
        count: int,
        preferred: Sequence[str] = (),
        lo: int = 2,
        hi: int = 4,
        taken: set[str] | None = None,
    ) -> list[str]:
        seen = set() if taken is None else taken
        out: list[str] = []
        for name in preferred:
            if len(out) == count:
                break
            if name not in seen:
                seen.add(name)
                out.append(name)
        while len(out) < count:
            name = self.word(lo, hi)
            if self.chance(0.2):
                name += str(self.below(10))
            if name not in seen:
                seen.add(name)
                out.append(name)
        return out


# --------------------------------------------------------------------------------------------------
# The plan: entries per layer, and a model of the flattened tree.


@dataclass(frozen=True, slots=True)
class Entry:
    """One tar member. ``path`` is absolute; for whiteouts/opaques it is the ``.wh.`` member itself."""

    path: str
    kind: str
    mode: int = 0o644
    size: int = 0
    content: str = TEXT
    seed: int = 0
    target: str = ""


def sort_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


class Node:
    __slots__ = ("children", "entry")

    def __init__(self, entry: Entry | None) -> None:
        self.entry = entry
        self.children: dict[str, Node] = {}


class Tree:
    """The root filesystem after the layers applied so far (OCI whiteout semantics)."""

    def __init__(self) -> None:
        self.root = Node(Entry("/", DIR, 0o755))

    def node(self, path: str) -> Node | None:
        cur = self.root
        for part in path.strip("/").split("/"):
            if not part:
                continue
            nxt = cur.children.get(part)
            if nxt is None:
                return None
            cur = nxt
        return cur

    def get(self, path: str) -> Entry | None:
        found = self.node(path)
        return None if found is None else found.entry

    def apply(self, entries: Sequence[Entry]) -> None:
        for e in entries:
            if e.kind == WHITEOUT:
                parent = self.node(parent_of(e.target))
                if parent is None or parent.children.pop(e.target.rsplit("/", 1)[1], None) is None:
                    raise ValueError(f"whiteout of missing path {e.target}")
            elif e.kind == OPAQUE:
                found = self.node(e.target)
                if found is None:
                    raise ValueError(f"opaque marker in missing directory {e.target}")
                found.children.clear()
        for e in sorted(
            (e for e in entries if e.kind not in (WHITEOUT, OPAQUE)), key=lambda x: sort_key(x.path)
        ):
            parent = self.node(parent_of(e.path))
            if parent is None or parent.entry is None or parent.entry.kind != DIR:
                raise ValueError(f"{e.path}: parent is not a directory")
            name = e.path.rsplit("/", 1)[1]
            old = parent.children.get(name)
            if old is not None and e.kind == DIR and old.entry is not None and old.entry.kind == DIR:
                old.entry = e
            else:
                parent.children[name] = Node(e)

    def stats(self) -> tuple[int, int, int]:
        """(entries below the root, regular-file bytes, regular files) of the tree."""
        entries = size = files = 0
        stack = [self.root]
        while stack:
            cur = stack.pop()
            for child in cur.children.values():
                entries += 1
                if child.entry is not None and child.entry.kind == FILE:
                    size += child.entry.size
                    files += 1
                stack.append(child)
        return entries, size, files


class LayerPlan:
    def __init__(self, plan: ImagePlan, index: int, created_by: str) -> None:
        self.plan = plan
        self.index = index
        self.created_by = created_by
        self.rng = Rng(plan.seed, "layer", index)
        self.entries: dict[str, Entry] = {}

    @property
    def lower(self) -> Tree:
        return self.plan.tree

    def _seed(self, path: str) -> int:
        return stable_int(self.plan.seed, self.index, path)

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        cur = ""
        for part in parts:
            cur += "/" + part
            mine = self.entries.get(cur)
            if mine is not None:
                if mine.kind != DIR:
                    raise ValueError(f"{cur} is not a directory in layer {self.index}")
                continue
            below = self.lower.get(cur)
            if below is not None and below.kind != DIR:
                raise ValueError(f"{cur} is a {below.kind} in a lower layer")
            self.entries[cur] = Entry(cur, DIR, below.mode if below is not None else 0o755)

    def _check_replace(self, path: str, kind: str) -> None:
        below = self.lower.get(path)
        if below is not None and (below.kind == DIR) != (kind == DIR):
            raise ValueError(f"{path}: {kind} would replace a {below.kind} (kept out of the plan)")

    def mkdir(self, path: str, mode: int = 0o755) -> str:
        self._check_replace(path, DIR)
        self._parents(path)
        self.entries[path] = Entry(path, DIR, mode)
        return path

    def file(self, path: str, size: int, content: str, mode: int = 0o644, seed: int | None = None) -> str:
        self._check_replace(path, FILE)
        self._parents(path)
        self.entries[path] = Entry(
            path, FILE, mode, size, content, self._seed(path) if seed is None else seed
        )
        return path

    def symlink(self, path: str, target: str) -> str:
        self._check_replace(path, SYMLINK)
        self._parents(path)
        self.entries[path] = Entry(path, SYMLINK, 0o777, target=target)
        return path

    def hardlink(self, path: str, target: str) -> str:
        """A second name for ``target``, a regular file of this layer; the earlier name in tar order holds
        the data, so the link always follows its target in the archive."""
        self._check_replace(path, HARDLINK)
        self._parents(path)
        data = self.entries[target]
        if data.kind != FILE:
            raise ValueError(f"hardlink target {target} is not a regular file of layer {self.index}")
        if sort_key(path) < sort_key(target):
            self.entries[path] = Entry(path, FILE, data.mode, data.size, data.content, data.seed)
            self.entries[target] = Entry(target, HARDLINK, data.mode, target=path)
        else:
            self.entries[path] = Entry(path, HARDLINK, data.mode, target=target)
        return path

    def whiteout(self, path: str) -> None:
        if self.lower.get(path) is None:
            raise ValueError(f"whiteout of {path}, which no lower layer has")
        self._parents(path)
        member = f"{parent_of(path).rstrip('/')}/.wh.{path.rsplit('/', 1)[1]}"
        self.entries[member] = Entry(member, WHITEOUT, 0o644, target=path)

    def opaque(self, path: str) -> None:
        below = self.lower.get(path)
        if below is None or below.kind != DIR:
            raise ValueError(f"opaque marker for {path}, which is no lower directory")
        self.mkdir(path, below.mode)
        member = f"{path}/.wh..wh..opq"
        self.entries[member] = Entry(member, OPAQUE, 0o644, target=path)

    def ordered(self) -> list[Entry]:
        return sorted(self.entries.values(), key=lambda e: sort_key(e.path))


class ImagePlan:
    """Builds the ten layers in order, keeping the flattened tree to aim overwrites and whiteouts."""

    def __init__(self, seed: int, scale: float) -> None:
        self.seed = seed
        self.scale = scale
        self.tree = Tree()
        self.layers: list[LayerPlan] = []
        self.bin_files: list[str] = []
        self.lib_files: list[str] = []
        self.doc_extra: list[str] = []
        self.doc_dirs: list[str] = []
        self.man_files: list[str] = []
        self.locale_dirs: list[str] = []
        self.pycache_dirs: list[str] = []
        self.info_files: list[str] = []
        self.lintian_files: list[str] = []
        self.debs: list[str] = []
        self.apt_lists: list[str] = []
        self.pydist_pkgs: list[str] = []
        self.node_pkgs: list[str] = []
        self.etc_files: list[str] = []
        self.packages: list[str] = []
        self.opaque_dirs: list[str] = []

    def n(self, count: float) -> int:
        return max(1, round(count * self.scale))

    def big(self, size: float) -> int:
        return max(4096, round(size * self.scale))

    def build(self) -> None:
        steps = (
            ("ADD rootfs.tar.xz / # debian bookworm base", self._base),
            ("RUN apt-get update && apt-get install -y ca-certificates curl gnupg", self._packages),
            ("RUN apt-get update && apt-get install -y python3 python3-venv libpq5", self._packages),
            ("RUN apt-get update && apt-get install -y nodejs build-essential", self._packages),
            ("RUN apt-get update && apt-get upgrade -y && apt-get install -y nginx tini", self._packages),
            (
                "RUN apt-get clean && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man ...",
                self._cleanup,
            ),
            ("COPY node_modules /opt/app/node_modules", self._node_modules),
            ("COPY models data /opt/app/", self._large),
            ("RUN npm install --omit=dev && pip install --upgrade ... (replaces directories)", self._opaque),
            ("COPY . /opt/app && RUN useradd app && chmod ... && npm prune", self._app),
        )
        for index, (created_by, step) in enumerate(steps):
            layer = LayerPlan(self, index, created_by)
            step(layer)
            self.tree.apply(layer.ordered())
            self.layers.append(layer)

    # ---- layer 0 ----------------------------------------------------------------------------------

    def _base(self, ly: LayerPlan) -> None:
        r = ly.rng
        for d in words(
            "boot dev etc home media mnt opt proc run srv sys usr usr/bin usr/sbin usr/lib usr/lib64 "
            "usr/libexec usr/share usr/games usr/include usr/src usr/local usr/local/bin usr/local/etc "
            "usr/local/games usr/local/include usr/local/lib usr/local/sbin usr/local/share "
            "usr/local/src var var/backups var/cache var/lib var/local var/log var/opt var/spool "
            "var/mail run/lock"
        ):
            ly.mkdir("/" + d)
        ly.mkdir("/root", 0o700)
        ly.mkdir("/tmp", 0o1777)
        ly.mkdir("/var/tmp", 0o1777)
        for link, target in (
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
            ("/var/run", "/run"),
            ("/var/lock", "/run/lock"),
        ):
            ly.symlink(link, target)

        # Executables, setuid/setgid ones and hardlinked aliases.
        for name in r.names(self.n(620), COMMON_BINS):
            kind = TEXT if r.chance(0.18) else BINARY
            size = r.size(7_000 if kind == TEXT else 42_000, 1.1, 200, 4_000_000)
            self.bin_files.append(ly.file(f"/usr/bin/{name}", size, kind, SETUID.get(name, 0o755)))
        for name in r.names(self.n(140), ("nologin", "useradd", "userdel", "groupadd", "ldconfig")):
            self.bin_files.append(
                ly.file(f"/usr/sbin/{name}", r.size(30_000, 1.0, 500, 2_000_000), BINARY, 0o755)
            )
        for target in r.sample(self.bin_files, self.n(24)):
            alias = f"{target}{r.between(2, 5)}.{r.below(40)}"
            if alias not in ly.entries:
                ly.hardlink(alias, target)

        # Shared libraries with their soname symlinks.
        libdir = "/usr/lib/x86_64-linux-gnu"
        ly.file(f"{libdir}/ld-linux-x86-64.so.2", 210_000, BINARY, 0o755)
        ly.symlink("/usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        for name in r.names(self.n(760)):
            major = r.below(7)
            full = f"lib{name}.so.{major}.{r.below(30)}.{r.below(10)}"
            self.lib_files.append(ly.file(f"{libdir}/{full}", r.size(80_000, 1.2, 4_000, 9_000_000), BINARY))
            ly.symlink(f"{libdir}/lib{name}.so.{major}", full)
        for name in r.names(self.n(240)):
            ly.file(f"{libdir}/gconv/{name.upper()}.so", r.size(16_000, 0.8, 2_000, 400_000), BINARY)
        perl_dirs = [f"{libdir}/perl-base/{d}" for d in r.names(self.n(36))]
        for name in r.names(self.n(460)):
            ly.file(f"{r.choice(perl_dirs)}/{name.capitalize()}.pm", r.size(9_000, 1.0, 300, 300_000), TEXT)
        ly.file("/usr/lib/os-release", 330, TEXT)
        for name in r.names(self.n(60)):
            ly.file(f"/usr/lib/systemd/system/{name}.service", r.size(700, 0.5, 100, 5_000), TEXT)

        # Python standard library with __pycache__.
        py_root = "/usr/lib/python3.11"
        py_dirs = [py_root] + [f"{py_root}/{d}" for d in r.names(self.n(64))]
        py_dirs += [f"{r.choice(py_dirs[1:])}/{d}" for d in r.names(self.n(20))]
        for name in r.names(self.n(600)):
            d = r.choice(py_dirs)
            size = r.size(11_000, 1.1, 100, 900_000)
            self._python_module(ly, d, name, size)

        # Package metadata: docs and dpkg database.
        self.packages = r.names(self.n(560), BASE_PACKAGES)
        for pkg in self.packages:
            self._doc(ly, pkg)
            self._dpkg_info(ly, pkg)
        ly.file("/var/lib/dpkg/status", self.big(520_000), TEXT)
        ly.file("/var/lib/dpkg/status-old", self.big(500_000), TEXT)
        ly.file("/var/lib/dpkg/available", 0, TEXT)
        ly.mkdir("/var/lib/dpkg/updates")
        ly.mkdir("/var/lib/dpkg/alternatives")

        # Manual pages, locales, time zones, i18n data, misc shared data.
        sections = ("man1",) * 12 + ("man8",) * 3 + ("man5",) * 2 + ("man3", "man7", "man2", "man6")
        for sec in sorted(set(sections)):
            ly.mkdir(f"/usr/share/man/{sec}")
        for name in r.names(self.n(1_680)):
            sec = r.choice(sections)
            self.man_files.append(
                ly.file(f"/usr/share/man/{sec}/{name}.{sec[3:]}.gz", r.size(2_600, 0.9, 300, 60_000), RANDOM)
            )
        ly.file("/usr/share/locale/locale.alias", 2_900, TEXT)
        for loc in r.names(self.n(110), LOCALES):
            d = ly.mkdir(f"/usr/share/locale/{loc}/LC_MESSAGES")
            for dom in r.sample(TEXT_DOMAINS, r.between(2, 9)):
                ly.file(f"{d}/{dom}.mo", r.size(22_000, 1.0, 1_000, 600_000), BINARY)
            if not loc.startswith("en"):
                self.locale_dirs.append(f"/usr/share/locale/{loc}")
        zones: list[str] = [ly.file("/usr/share/zoneinfo/Etc/UTC", 114, BINARY)]
        for name in r.names(self.n(340)):
            region = r.choice(ZONE_REGIONS)
            zones.append(
                ly.file(
                    f"/usr/share/zoneinfo/{region}/{name.capitalize()}",
                    r.size(1_400, 0.6, 100, 20_000),
                    BINARY,
                )
            )
        for zone in zones:
            ly.hardlink(zone.replace("/zoneinfo/", "/zoneinfo/posix/"), zone)
        ly.file("/usr/share/zoneinfo/zone1970.tab", 17_000, TEXT)
        for name in r.names(self.n(230)):
            ly.file(
                f"/usr/share/i18n/charmaps/{name.upper()}.gz", r.size(18_000, 0.9, 1_000, 300_000), RANDOM
            )
        for name in r.names(self.n(340)):
            ly.file(
                f"/usr/share/i18n/locales/{name}_{name[:2].upper()}", r.size(10_000, 1.0, 500, 200_000), TEXT
            )
        for name in words("Apache-2.0 Artistic BSD CC0-1.0 GFDL-1.3 GPL-2 GPL-3 LGPL-2.1 LGPL-3 MPL-2.0"):
            ly.file(f"/usr/share/common-licenses/{name}", r.size(18_000, 0.5, 1_500, 60_000), TEXT)
        perl5 = [f"/usr/share/perl5/{d}" for d in r.names(self.n(30))]
        for name in r.names(self.n(300)):
            ly.file(f"{r.choice(perl5)}/{name.capitalize()}.pm", r.size(8_000, 1.0, 300, 200_000), TEXT)
        for name in r.names(self.n(300)):
            self.info_files.append(
                ly.file(f"/usr/share/info/{name}.info.gz", r.size(25_000, 1.0, 1_000, 400_000), RANDOM)
            )
        for name in r.names(self.n(870)):
            self.lintian_files.append(
                ly.file(f"/usr/share/lintian/overrides/{name}", r.size(250, 0.6, 40, 4_000), TEXT)
            )
        for letter in "abcdefghijklmnopqrstuvwxyz":
            ly.mkdir(f"/usr/share/terminfo/{letter}")
        for name in r.names(self.n(320)):
            ly.file(f"/usr/share/terminfo/{name[0]}/{name}", r.size(1_800, 0.5, 300, 8_000), BINARY)
        certs = "/usr/share/ca-certificates/mozilla"
        for name in r.names(self.n(140)):
            crt = ly.file(f"{certs}/{name.capitalize()}_Root_CA.crt", r.size(2_000, 0.2, 1_200, 3_000), TEXT)
            ly.symlink(f"/etc/ssl/certs/{name.capitalize()}_Root_CA.pem", crt)
        ly.file("/etc/ssl/certs/ca-certificates.crt", self.big(220_000), TEXT)

        # /etc and /var.
        for name in ("passwd", "group"):
            self.etc_files.append(ly.file(f"/etc/{name}", r.size(1_000, 0.3, 400, 3_000), TEXT))
        for name in ("shadow", "gshadow"):
            self.etc_files.append(ly.file(f"/etc/{name}", r.size(600, 0.3, 300, 2_000), TEXT, 0o640))
        for name in ETC_FILES:
            self.etc_files.append(ly.file(f"/etc/{name}", r.size(1_500, 1.0, 20, 40_000), TEXT))
        etc_dirs = [ly.mkdir(f"/etc/{d}") for d in ETC_DIRS]
        for name in r.names(self.n(200)):
            d = r.choice(etc_dirs)
            self.etc_files.append(ly.file(f"{d}/{name}", r.size(900, 1.0, 20, 30_000), TEXT))
        for name in r.names(self.n(40)):
            ly.file(f"/etc/init.d/{name}", r.size(3_000, 0.6, 300, 20_000), TEXT, 0o755)
        for name in (".bashrc", ".profile", ".bash_logout"):
            ly.file(f"/etc/skel/{name}", r.size(1_500, 0.6, 200, 5_000), TEXT)
            ly.file(f"/root/{name}", r.size(600, 0.4, 100, 5_000), TEXT)
        ly.file("/etc/ld.so.cache", self.big(45_000), BINARY)
        ly.symlink("/etc/os-release", "../usr/lib/os-release")
        ly.symlink("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC")
        ly.symlink("/etc/mtab", "../proc/self/mounts")
        for name in r.sample(self.bin_files, self.n(50)):
            ly.symlink(f"/etc/alternatives/{name.rsplit('/', 1)[1]}.alt", name)
        ly.file("/var/log/dpkg.log", self.big(200_000), TEXT)
        ly.file("/var/log/alternatives.log", self.big(8_000), TEXT)
        ly.file("/var/log/apt/history.log", self.big(12_000), TEXT)
        ly.file("/var/log/apt/eipp.log.xz", self.big(20_000), RANDOM)
        ly.file("/var/log/faillog", self.big(32_000), SPARSE)
        ly.file("/var/log/lastlog", self.big(290_000), SPARSE)
        ly.file("/var/log/wtmp", 0, TEXT, 0o664)
        ly.file("/var/log/btmp", 0, TEXT, 0o660)
        ly.file("/var/cache/debconf/config.dat", self.big(30_000), TEXT)
        ly.file("/var/cache/debconf/templates.dat", self.big(600_000), TEXT)
        ly.file("/var/cache/debconf/passwords.dat", 0, TEXT, 0o600)
        ly.mkdir("/var/cache/apt/archives/partial", 0o700)
        ly.file("/var/cache/apt/archives/lock", 0, TEXT, 0o640)
        ly.mkdir("/var/lib/apt/lists/partial", 0o700)
        ly.mkdir("/var/lib/apt/mirrors/partial")
        ly.file("/var/lib/apt/extended_states", 2_000, TEXT)
        ly.mkdir("/var/lib/misc")
        ly.mkdir("/var/lib/pam")
        ly.mkdir("/var/spool/cron/crontabs", 0o1730)

    def _python_module(self, ly: LayerPlan, directory: str, name: str, size: int) -> None:
        """A module and its compiled form, about seven tenths of its size."""
        ly.file(f"{directory}/{name}.py", size, TEXT)
        ly.file(f"{directory}/__pycache__/{name}.cpython-311.pyc", max(200, size * 7 // 10), BINARY)
        if f"{directory}/__pycache__" not in self.pycache_dirs:
            self.pycache_dirs.append(f"{directory}/__pycache__")

    def _doc(self, ly: LayerPlan, pkg: str) -> None:
        r = ly.rng
        d = f"/usr/share/doc/{pkg}"
        self.doc_dirs.append(d)
        ly.file(f"{d}/copyright", r.size(6_000, 0.9, 300, 200_000), TEXT)
        self.doc_extra.append(ly.file(f"{d}/changelog.Debian.gz", r.size(2_500, 1.0, 200, 200_000), RANDOM))
        if r.chance(0.25):
            self.doc_extra.append(ly.file(f"{d}/NEWS.Debian.gz", r.size(1_500, 1.0, 200, 40_000), RANDOM))
        if r.chance(0.15):
            self.doc_extra.append(ly.file(f"{d}/README.Debian", r.size(2_000, 1.0, 200, 40_000), TEXT))

    def _dpkg_info(self, ly: LayerPlan, pkg: str) -> None:
        r = ly.rng
        info = "/var/lib/dpkg/info"
        ly.file(f"{info}/{pkg}.list", r.size(1_800, 1.1, 60, 200_000), TEXT)
        ly.file(f"{info}/{pkg}.md5sums", r.size(2_600, 1.1, 60, 300_000), TEXT)
        if r.chance(0.3):
            ly.file(f"{info}/{pkg}.postinst", r.size(1_200, 0.8, 100, 20_000), TEXT, 0o755)
        if r.chance(0.15):
            ly.file(f"{info}/{pkg}.conffiles", r.size(120, 0.6, 20, 2_000), TEXT)

    # ---- layers 1-4 -------------------------------------------------------------------------------

    def _packages(self, ly: LayerPlan) -> None:
        r = ly.rng
        k = ly.index
        lower_libs = list(self.lib_files)
        lower_bins = list(self.bin_files)
        lists = "/var/lib/apt/lists"
        if k == 1:
            ly.file(f"{lists}/lock", 0, TEXT, 0o640)
        for name in APT_LISTS[: max(2, min(len(APT_LISTS), self.n(len(APT_LISTS))))]:
            big = name.endswith(("Packages.lz4", ".tar.gz", ".yml.gz"))
            size = (
                self.big(r.size(3_000_000, 0.8, 200_000, 20_000_000))
                if big
                else r.size(120_000, 0.5, 5_000, 400_000)
            )
            path = ly.file(f"{lists}/{name}", size, BINARY if big else TEXT)
            if path not in self.apt_lists:
                self.apt_lists.append(path)
        ly.file(
            "/var/cache/apt/pkgcache.bin", self.big(r.size(11_000_000, 0.1, 1_000_000, 60_000_000)), BINARY
        )
        ly.file(
            "/var/cache/apt/srcpkgcache.bin", self.big(r.size(11_000_000, 0.1, 1_000_000, 60_000_000)), BINARY
        )

        new_pkgs = r.names(self.n(95), taken=set(self.packages))
        self.packages.extend(new_pkgs)
        libdir = "/usr/lib/x86_64-linux-gnu"
        for pkg in new_pkgs:
            self.debs.append(
                ly.file(
                    f"/var/cache/apt/archives/{pkg}_{r.below(9)}.{r.below(40)}-{r.below(5)}_amd64.deb",
                    r.size(215_000, 1.3, 4_000, 40_000_000),
                    RANDOM,
                )
            )
            self._doc(ly, pkg)
            self._dpkg_info(ly, pkg)
            for _ in range(r.below(4)):
                path = f"/usr/bin/{pkg}{'-' + r.word(1, 2) if r.chance(0.5) else ''}"
                if path not in ly.entries and self.tree.get(path) is None:
                    self.bin_files.append(ly.file(path, r.size(35_000, 1.1, 200, 3_000_000), BINARY, 0o755))
            if r.chance(0.4):
                for _ in range(r.between(1, 3)):
                    major = r.below(5)
                    full = f"lib{pkg}{r.word(1, 1)}.so.{major}.{r.below(20)}.0"
                    if f"{libdir}/{full}" in ly.entries:
                        continue
                    self.lib_files.append(
                        ly.file(f"{libdir}/{full}", r.size(90_000, 1.2, 4_000, 8_000_000), BINARY)
                    )
                    ly.symlink(f"{libdir}/{full.rsplit('.', 2)[0]}", full)
            if r.chance(0.5):
                share = f"/usr/share/{pkg}"
                subdirs = [share] + [f"{share}/{d}" for d in r.names(r.below(3))]
                for name in r.names(r.between(2, 25)):
                    kind = TEXT if r.chance(0.7) else BINARY
                    ly.file(
                        f"{r.choice(subdirs)}/{name}.{'dat' if kind == BINARY else 'txt'}",
                        r.size(5_000, 1.2, 50, 2_000_000),
                        kind,
                    )
            if r.chance(0.2):
                top = f"/usr/lib/python3/dist-packages/{pkg.replace('-', '_')}"
                self.pydist_pkgs.append(top)
                pdirs = [top] + [f"{top}/{d}" for d in r.names(r.below(3))]
                for name in r.names(r.between(3, 20)):
                    d = r.choice(pdirs)
                    size = r.size(7_000, 1.1, 100, 400_000)
                    self._python_module(ly, d, name, size)
            for _ in range(r.below(4)):
                sec = r.choice(("man1", "man1", "man5", "man8"))
                path = f"/usr/share/man/{sec}/{pkg}{r.word(0, 1)}.{sec[3:]}.gz"
                if path not in ly.entries and self.tree.get(path) is None:
                    self.man_files.append(ly.file(path, r.size(2_600, 0.9, 300, 60_000), RANDOM))
            if r.chance(0.25):
                for loc in r.sample(self.locale_dirs, r.between(3, 20)):
                    ly.file(f"{loc}/LC_MESSAGES/{pkg}.mo", r.size(18_000, 1.0, 1_000, 400_000), BINARY)
            if r.chance(0.45):
                self.lintian_files.append(
                    ly.file(f"/usr/share/lintian/overrides/{pkg}", r.size(250, 0.6, 40, 4_000), TEXT)
                )
            if r.chance(0.1):
                self.etc_files.append(ly.file(f"/etc/{pkg}.conf", r.size(1_200, 1.0, 40, 30_000), TEXT))

        # Upgrades of packages from lower layers: same path, new content.
        for path in r.sample(lower_libs, self.n(110)):
            ly.file(path, r.size(80_000, 1.2, 4_000, 9_000_000), BINARY)
        for path in r.sample(lower_bins, self.n(40)):
            below = self.tree.get(path)
            if below is not None and below.kind == FILE:
                ly.file(path, r.size(40_000, 1.1, 200, 4_000_000), below.content, below.mode)
        ly.file("/var/lib/dpkg/status", self.big(520_000 + 90_000 * k), TEXT)
        ly.file("/var/lib/dpkg/status-old", self.big(500_000 + 90_000 * k), TEXT)
        ly.file("/var/log/dpkg.log", self.big(200_000 + 60_000 * k), TEXT)
        ly.file("/var/log/apt/history.log", self.big(12_000 + 4_000 * k), TEXT)
        ly.file("/var/log/apt/term.log", self.big(30_000 * k), TEXT, 0o640)
        ly.file("/var/cache/debconf/templates.dat", self.big(600_000 + 80_000 * k), TEXT)
        ly.file("/var/cache/debconf/config.dat", self.big(30_000 + 5_000 * k), TEXT)
        ly.file("/etc/ld.so.cache", self.big(45_000 + 5_000 * k), BINARY)

    # ---- layer 5 ----------------------------------------------------------------------------------

    def _cleanup(self, ly: LayerPlan) -> None:
        for path in self.debs:
            ly.whiteout(path)
        for path in ("/var/cache/apt/pkgcache.bin", "/var/cache/apt/srcpkgcache.bin"):
            ly.whiteout(path)
        for path in self.apt_lists:
            ly.whiteout(path)
        # Docs are trimmed file by file (copyright files are kept), man pages and info files too.
        for path in self.doc_extra + self.man_files + self.info_files + self.lintian_files:
            ly.whiteout(path)
        for path in self.locale_dirs + self.pycache_dirs:
            ly.whiteout(path)
        for path in words(
            "/var/log/dpkg.log /var/log/alternatives.log /var/log/apt/history.log /var/log/apt/term.log "
            "/var/log/apt/eipp.log.xz /var/lib/dpkg/status-old /var/cache/debconf/templates.dat-old"
        ):
            if self.tree.get(path) is not None:
                ly.whiteout(path)
        ly.file("/var/cache/debconf/templates.dat", self.big(900_000), TEXT)
        ly.file("/etc/ld.so.cache", self.big(65_000), BINARY)

    # ---- layer 6 ----------------------------------------------------------------------------------

    def _node_modules(self, ly: LayerPlan) -> None:
        r = ly.rng
        app = ly.mkdir("/opt/app", 0o755)
        nm = f"{app}/node_modules"
        ly.file(f"{app}/package.json", 2_400, TEXT)
        ly.file(f"{app}/package-lock.json", self.big(650_000), TEXT)
        ly.file(f"{nm}/.package-lock.json", self.big(640_000), TEXT)
        scopes = [f"@{s}" for s in r.names(self.n(30))]
        for name in r.names(self.n(762)):
            scoped = r.chance(0.12)
            pkg = f"{nm}/{r.choice(scopes)}/{name}" if scoped else f"{nm}/{name}"
            self._node_package(ly, pkg, depth=0)
            if not scoped:
                self.node_pkgs.append(pkg)
        for name in r.sample([p.rsplit("/", 1)[1] for p in self.node_pkgs], self.n(120)):
            ly.symlink(f"{nm}/.bin/{name}", f"../{name}/bin/cli.js")
            ly.file(f"{nm}/{name}/bin/cli.js", r.size(1_500, 0.8, 100, 30_000), TEXT, 0o755)
        for name in r.sample(self.node_pkgs, self.n(10)):
            ly.file(
                f"{name}/build/Release/binding.node", r.size(300_000, 0.8, 20_000, 5_000_000), BINARY, 0o755
            )

    def _node_package(self, ly: LayerPlan, pkg: str, depth: int) -> None:
        r = ly.rng
        ly.file(f"{pkg}/package.json", r.size(1_400, 0.6, 200, 20_000), TEXT)
        ly.file(f"{pkg}/index.js", r.size(900, 1.2, 40, 200_000), TEXT)
        if r.chance(0.85):
            ly.file(f"{pkg}/README.md", r.size(4_000, 1.0, 100, 200_000), TEXT)
        if r.chance(0.9):
            ly.file(f"{pkg}/LICENSE", r.size(1_100, 0.3, 300, 12_000), TEXT)
        if r.chance(0.55):
            lib = f"{pkg}/lib"
            dirs = [lib] + [f"{lib}/{d}" for d in r.names(r.below(4))]
            for name in r.names(r.between(1, 30)):
                ly.file(f"{r.choice(dirs)}/{name}.js", r.size(2_200, 1.2, 40, 400_000), TEXT)
                if r.chance(0.3):
                    ly.file(f"{r.choice(dirs)}/{name}.d.ts", r.size(1_000, 1.0, 40, 100_000), TEXT)
        if r.chance(0.3):
            for name in r.names(r.between(1, 8)):
                ly.file(f"{pkg}/dist/{name}.js", r.size(6_000, 1.3, 100, 2_000_000), TEXT)
                ly.file(f"{pkg}/dist/{name}.min.js", r.size(3_000, 1.3, 100, 900_000), TEXT)
                if r.chance(0.5):
                    ly.file(f"{pkg}/dist/{name}.js.map", r.size(9_000, 1.3, 100, 3_000_000), TEXT)
        if depth == 0 and r.chance(0.1):
            for name in r.names(r.between(1, 3)):
                self._node_package(ly, f"{pkg}/node_modules/{name}", depth + 1)

    # ---- layer 7 ----------------------------------------------------------------------------------

    def _large(self, ly: LayerPlan) -> None:
        app = "/opt/app"
        ly.file(f"{app}/models/embeddings.bin", self.big(170_000_000), RANDOM)
        ly.file(f"{app}/models/vocab.txt", self.big(14_000_000), TEXT)
        ly.file(f"{app}/data/corpus.jsonl", self.big(96_000_000), TEXT)
        ly.file(f"{app}/data/index.sqlite", self.big(48_000_000), SPARSE)
        ly.file(f"{app}/lib/libinference.so", self.big(46_000_000), BINARY, 0o755)
        ly.file(f"{app}/build/toolchain.tar", self.big(100_000_000), BINARY)
        ly.file(f"{app}/build/README", 600, TEXT)

    # ---- layer 8 ----------------------------------------------------------------------------------

    def _opaque(self, ly: LayerPlan) -> None:
        r = ly.rng
        want = self.n(100)
        node_count = min(len(self.node_pkgs), round(want * 0.7))
        dirs = r.sample(self.node_pkgs, node_count)
        dirs += r.sample(self.pydist_pkgs, min(len(self.pydist_pkgs), want - len(dirs)))
        if len(dirs) < want:
            dirs += r.sample([d for d in self.node_pkgs if d not in dirs], want - len(dirs))
        self.opaque_dirs = dirs
        for d in dirs:
            ly.opaque(d)
            python = d.startswith("/usr/lib/python3")
            for name in r.names(r.between(5, 24)):
                ext = ".py" if python else ".js"
                ly.file(f"{d}/{name}{ext}", r.size(3_000, 1.2, 40, 600_000), TEXT)
            if not python:
                ly.file(f"{d}/package.json", r.size(1_400, 0.6, 200, 20_000), TEXT)
            if r.chance(0.4):
                for name in r.names(r.between(2, 10)):
                    ly.file(f"{d}/dist/{name}.js", r.size(6_000, 1.3, 100, 2_000_000), TEXT)

    # ---- layer 9 ----------------------------------------------------------------------------------

    def _app(self, ly: LayerPlan) -> None:
        r = ly.rng
        app = "/opt/app"
        ly.mkdir(app, 0o775)
        src = f"{app}/src"
        dirs = [src] + [f"{src}/{d}" for d in r.names(self.n(60))]
        dirs += [f"{r.choice(dirs[1:])}/{d}" for d in r.names(self.n(30))]
        for name in r.names(self.n(1_050)):
            ext = r.choice((".js", ".js", ".ts", ".json", ".py", ".html", ".css", ".md"))
            ly.file(f"{r.choice(dirs)}/{name}{ext}", r.size(3_000, 1.1, 40, 300_000), TEXT)
        for name in r.names(self.n(60)):
            ly.file(f"{app}/static/img/{name}.png", r.size(25_000, 1.2, 200, 3_000_000), RANDOM)
        ly.file(f"{app}/src/server.js", 9_000, TEXT)
        ly.file(f"{app}/.env.production", 400, TEXT, 0o600)
        # Config changes.
        for name, mode in (("passwd", 0o644), ("group", 0o644), ("shadow", 0o640), ("gshadow", 0o640)):
            ly.file(f"/etc/{name}", r.size(1_100, 0.3, 400, 3_000), TEXT, mode)
        for path in r.sample(self.etc_files[4:], self.n(14)):
            ly.file(path, r.size(1_500, 1.0, 20, 40_000), TEXT)
        ly.mkdir("/home/app", 0o750)
        for name in (".bashrc", ".profile", ".bash_logout"):
            ly.file(f"/home/app/{name}", r.size(1_500, 0.6, 200, 5_000), TEXT)
        ly.file("/var/log/lastlog", self.big(292_000), SPARSE)
        # chmod: same bytes re-added with a new mode.
        for path in r.sample(self.bin_files, self.n(40)):
            below = self.tree.get(path)
            if below is not None and below.kind == FILE:
                ly.file(path, below.size, below.content, below.mode ^ 0o022, seed=below.seed)
        # Re-added after the cleanup removed them.
        for d in r.sample(self.doc_dirs, self.n(8)):
            ly.file(f"{d}/changelog.Debian.gz", r.size(2_500, 1.0, 200, 200_000), RANDOM)
        ly.file("/usr/share/man/man1/node.1.gz", 9_000, RANDOM)
        # npm prune and build leftovers.
        opaque = set(self.opaque_dirs)
        for path in r.sample([p for p in self.node_pkgs if p not in opaque], self.n(270)):
            ly.whiteout(path)
        ly.whiteout(f"{app}/build")
        ly.file(f"{app}/VERSION", 12, TEXT)


# --------------------------------------------------------------------------------------------------
# Content generation and layer writing (run in worker processes).


class Pools:
    """Source material for file content: word-like text and pseudo-random bytes."""

    def __init__(self, seed: int) -> None:
        self.rand = hashlib.shake_128(f"imgtool-bench-{seed}".encode()).digest(RAND_POOL_BYTES)
        self.text = self._text(seed)

    @staticmethod
    def _text(seed: int) -> bytes:
        r = Rng(seed, "text")
        vocab = [r.word(1, 5) for _ in range(4_000)]
        vocab += words(
            "the of and to a in is = { } ( ) ; return if const def self import from null true false 0 1 #"
        )
        n = len(vocab)
        rnd = random.Random(stable_int(seed, "text-words"))
        out: list[str] = []
        length = 0
        while length < TEXT_POOL_BYTES:
            line = [vocab[int(n * rnd.random() ** 3)] for _ in range(3 + int(rnd.random() * 12))]
            text = "    " * int(rnd.random() * 3) + " ".join(line) + "\n"
            out.append(text)
            length += len(text)
        return "".join(out).encode()[:TEXT_POOL_BYTES]


def content(entry: Entry, pools: Pools) -> Iterator[bytes]:
    """The bytes of a regular file, in chunks of at most CHUNK bytes."""
    rnd = random.Random(entry.seed)
    left = entry.size
    text, rand = pools.text, pools.rand
    zeros = bytes(SUBCHUNK)
    while left > 0:
        n = min(CHUNK, left)
        left -= n
        if entry.content in (TEXT, RANDOM):
            pool = text if entry.content == TEXT else rand
            off = int(rnd.random() * (len(pool) - n))
            yield pool[off : off + n]
            continue
        rand_p, text_p = (0.45, 0.85) if entry.content == BINARY else (0.06, 0.12)
        parts: list[bytes] = []
        got = 0
        while got < n:
            m = min(SUBCHUNK, n - got)
            pick = rnd.random()
            if pick < rand_p:
                off = int(rnd.random() * (len(rand) - m))
                parts.append(rand[off : off + m])
            elif pick < text_p:
                off = int(rnd.random() * (len(text) - m))
                parts.append(text[off : off + m])
            else:
                parts.append(zeros[:m])
            got += m
        yield b"".join(parts)


class ChunkReader:
    """A file object over a chunk iterator, for ``TarFile.addfile``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            self._buf += nxt
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


class LayerSink:
    """Takes the uncompressed tar stream; hashes it (diff_id), compresses it and hashes the blob (digest)."""

    def __init__(self, out: BinaryIO, compression: str, level: int) -> None:
        self._out = out
        self.compression = compression
        self.diff_id = hashlib.sha256()
        self.digest = hashlib.sha256()
        self.size = 0
        self.blob_size = 0
        self._crc = 0
        self._zlib: Any = None
        self._zstd: Any = None
        if compression == "gzip":
            self._zlib = zlib.compressobj(level, zlib.DEFLATED, -15)
            # Fixed gzip header: no name, mtime 0, OS "unknown": stable across machines.
            self._emit(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        elif compression == "zstd":
            self._zstd = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()

    def _emit(self, data: bytes) -> None:
        if data:
            self.digest.update(data)
            self.blob_size += len(data)
            self._out.write(data)

    def write(self, data: bytes) -> int:
        self.diff_id.update(data)
        self.size += len(data)
        if self._zlib is not None:
            self._crc = zlib.crc32(data, self._crc)
            self._emit(self._zlib.compress(data))
        elif self._zstd is not None:
            self._emit(self._zstd.compress(data))
        else:
            self._emit(bytes(data))
        return len(data)

    def tell(self) -> int:
        return self.size

    def read(self, size: int = -1) -> bytes:
        raise io.UnsupportedOperation("write-only")

    def seek(self, pos: int) -> int:
        raise io.UnsupportedOperation("not seekable")

    def close(self) -> None:
        if self._zlib is not None:
            self._emit(self._zlib.flush())
            self._emit(
                (self._crc & 0xFFFFFFFF).to_bytes(4, "little")
                + (self.size & 0xFFFFFFFF).to_bytes(4, "little")
            )
            self._zlib = None
        elif self._zstd is not None:
            self._emit(self._zstd.flush())
            self._zstd = None


@dataclass(frozen=True, slots=True)
class LayerJob:
    index: int
    entries: list[Entry]
    blob_dir: str
    compression: str
    level: int
    mtime: int


@dataclass(frozen=True, slots=True)
class LayerResult:
    index: int
    digest: str
    diff_id: str
    blob_size: int
    tar_size: int
    entries: int
    whiteouts: int
    opaques: int
    files: int
    file_bytes: int
    seconds: float


class PoolHolder:
    """Per-process pools, built once (inherited by forked workers when built before the fork)."""

    def __init__(self) -> None:
        self.pools: Pools | None = None
        self.seed = 0

    def get(self, seed: int) -> Pools:
        if self.pools is None or self.seed != seed:
            self.pools = Pools(seed)
            self.seed = seed
        return self.pools


POOLS: Final = PoolHolder()


def tar_info(e: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(e.path.lstrip("/"))
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = e.mode
    if e.kind == DIR:
        info.type = tarfile.DIRTYPE
    elif e.kind == SYMLINK:
        info.type = tarfile.SYMTYPE
        info.linkname = e.target
    elif e.kind == HARDLINK:
        info.type = tarfile.LNKTYPE
        info.linkname = e.target.lstrip("/")
    else:
        info.type = tarfile.REGTYPE
        info.size = e.size if e.kind == FILE else 0
    return info


def write_layer(job: LayerJob, seed: int) -> LayerResult:
    start = time.perf_counter()
    pools = POOLS.get(seed)
    tmp = Path(job.blob_dir) / f".layer-{job.index}.tmp"
    counts = dict.fromkeys((WHITEOUT, OPAQUE, FILE), 0)
    file_bytes = 0
    with tmp.open("wb", buffering=1 << 20) as raw:
        sink = LayerSink(raw, job.compression, job.level)
        tf = tarfile.TarFile(
            fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", copybufsize=CHUNK
        )
        for e in job.entries:
            info = tar_info(e, job.mtime)
            counts[e.kind] = counts.get(e.kind, 0) + 1
            if e.kind == FILE and e.size > 0:
                file_bytes += e.size
                if e.size <= CHUNK:
                    tf.addfile(info, io.BytesIO(next(content(e, pools))))
                else:
                    tf.addfile(info, ChunkReader(content(e, pools)))
            else:
                tf.addfile(info)
        tf.close()
        sink.close()
    digest = sink.digest.hexdigest()
    tmp.rename(Path(job.blob_dir) / digest)
    return LayerResult(
        job.index,
        f"sha256:{digest}",
        f"sha256:{sink.diff_id.hexdigest()}",
        sink.blob_size,
        sink.size,
        len(job.entries),
        counts[WHITEOUT],
        counts[OPAQUE],
        counts[FILE],
        file_bytes,
        time.perf_counter() - start,
    )


# --------------------------------------------------------------------------------------------------
# Image assembly.


def canonical_json(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def put_blob(blob_dir: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (blob_dir / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def image_config(plan: ImagePlan, results: Sequence[LayerResult]) -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": iso(BASE_MTIME + 3600 * len(results)),
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "NODE_ENV=production",
            ],
            "Cmd": ["node", "src/server.js"],
            "WorkingDir": "/opt/app",
            "User": "app",
            "Labels": {
                "org.opencontainers.image.title": "imgtool benchmark image",
                "bench.seed": str(plan.seed),
                "bench.scale": repr(plan.scale),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [r.diff_id for r in results]},
        "history": [
            {"created": iso(BASE_MTIME + 3600 * layer.index), "created_by": layer.created_by}
            for layer in plan.layers
        ],
    }


def write_layout(out: Path, plan: ImagePlan, compression: str, level: int, jobs: int) -> list[LayerResult]:
    blob_dir = out / "blobs" / "sha256"
    blob_dir.mkdir(parents=True)
    layer_jobs = [
        LayerJob(
            layer.index, layer.ordered(), str(blob_dir), compression, level, BASE_MTIME + 3600 * layer.index
        )
        for layer in plan.layers
    ]
    # Largest layers first, so the slowest one does not start last.
    order = sorted(layer_jobs, key=lambda j: -sum(e.size for e in j.entries))
    POOLS.get(plan.seed)
    results: dict[int, LayerResult] = {}
    if jobs <= 1:
        for job in order:
            results[job.index] = write_layer(job, plan.seed)
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(write_layer, job, plan.seed) for job in order]
            for fut in futures:
                res = fut.result()
                results[res.index] = res
    ordered = [results[i] for i in range(len(plan.layers))]

    config_digest, config_size = put_blob(blob_dir, canonical_json(image_config(plan, ordered)))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": MEDIA_LAYER[compression], "digest": r.digest, "size": r.blob_size} for r in ordered
        ],
    }
    manifest_digest, manifest_size = put_blob(blob_dir, canonical_json(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": REF_NAME},
            }
        ],
    }
    (out / "index.json").write_bytes(canonical_json(index))
    (out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return ordered


class BlobDecoder:
    """Reads a layer blob back as its uncompressed tar stream."""

    def __init__(self, path: Path, compression: str) -> None:
        self._f = path.open("rb")
        self._compression = compression
        self._zlib = zlib.decompressobj(31) if compression == "gzip" else None
        self._zstd = zstandard.ZstdDecompressor().decompressobj() if compression == "zstd" else None
        self._buf = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            raw = self._f.read(CHUNK)
            if not raw:
                break
            if self._zlib is not None:
                self._buf += self._zlib.decompress(raw)
            elif self._zstd is not None:
                self._buf += self._zstd.decompress(raw)
            else:
                self._buf += raw
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out

    def close(self) -> None:
        self._f.close()


def write_docker_archive(
    path: Path, layout: Path, plan: ImagePlan, results: Sequence[LayerResult], compression: str
) -> None:
    """A ``docker save`` tarball as Docker 25+ writes it: uncompressed layers, manifest.json, OCI index."""
    blob_dir = layout / "blobs" / "sha256"
    config = canonical_json(image_config(plan, results))
    config_hex = hashlib.sha256(config).hexdigest()
    layer_hex = [r.diff_id.split(":", 1)[1] for r in results]
    oci_manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": f"sha256:{config_hex}", "size": len(config)},
            "layers": [
                {"mediaType": MEDIA_LAYER["none"], "digest": r.diff_id, "size": r.tar_size} for r in results
            ],
        }
    )
    manifest_hex = hashlib.sha256(oci_manifest).hexdigest()
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": f"sha256:{manifest_hex}",
                    "size": len(oci_manifest),
                    "annotations": {
                        "io.containerd.image.name": "docker.io/library/bench:latest",
                        "org.opencontainers.image.ref.name": "latest",
                    },
                }
            ],
        }
    )
    docker_manifest = canonical_json(
        [
            {
                "Config": f"blobs/sha256/{config_hex}",
                "RepoTags": ["bench:latest"],
                "Layers": [f"blobs/sha256/{h}" for h in layer_hex],
            }
        ]
    )
    repositories = canonical_json({"bench": {"latest": config_hex}})

    def info(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.size, ti.mtime, ti.mode = kind, size, 0, 0o755 if kind == tarfile.DIRTYPE else 0o644
        return ti

    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info("blobs", 0, tarfile.DIRTYPE))
        tf.addfile(info("blobs/sha256", 0, tarfile.DIRTYPE))
        written: set[str] = set()
        for res, hx in zip(results, layer_hex, strict=True):
            if hx in written:
                continue
            written.add(hx)
            reader = BlobDecoder(blob_dir / res.digest.split(":", 1)[1], compression)
            try:
                tf.addfile(info(f"blobs/sha256/{hx}", res.tar_size), reader)
            finally:
                reader.close()
        for hx, data in ((config_hex, config), (manifest_hex, oci_manifest)):
            tf.addfile(info(f"blobs/sha256/{hx}", len(data)), io.BytesIO(data))
        for name, data in (
            ("index.json", index),
            ("manifest.json", docker_manifest),
            ("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})),
            ("repositories", repositories),
        ):
            tf.addfile(info(name, len(data)), io.BytesIO(data))
    tmp.rename(path)


# --------------------------------------------------------------------------------------------------
# Reporting and command line.


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def shape(
    plan: ImagePlan, results: Sequence[LayerResult], args: argparse.Namespace, seconds: float
) -> dict[str, Any]:
    entries, size, files = plan.tree.stats()
    return {
        "format": "oci-layout",
        "ref": REF_NAME,
        "seed": args.seed,
        "scale": args.scale,
        "compression": args.compression,
        "level": args.level,
        "layers": [
            {
                "index": r.index,
                "created_by": plan.layers[r.index].created_by,
                "digest": r.digest,
                "diff_id": r.diff_id,
                "blob_bytes": r.blob_size,
                "tar_bytes": r.tar_size,
                "entries": r.entries,
                "files": r.files,
                "file_bytes": r.file_bytes,
                "whiteouts": r.whiteouts,
                "opaques": r.opaques,
            }
            for r in results
        ],
        "totals": {
            "blob_bytes": sum(r.blob_size for r in results),
            "tar_bytes": sum(r.tar_size for r in results),
            "entries": sum(r.entries for r in results),
            "whiteouts": sum(r.whiteouts for r in results),
            "opaques": sum(r.opaques for r in results),
        },
        "surviving": {"entries": entries, "files": files, "file_bytes": size},
        "query_paths": {
            "base": "/usr/lib/os-release",
            "top": "/etc/passwd",
            "large": "/opt/app/models/embeddings.bin",
        },
        "generation_seconds": round(seconds, 2),
    }


def print_summary(doc: dict[str, Any], out: Path) -> None:
    print(
        f"image: oci:{out}:{REF_NAME}  (compression {doc['compression']}, level {doc['level']}, "
        f"scale {doc['scale']}, seed {doc['seed']})"
    )
    head = (
        f"{'#':>2}  {'tar size':>10}  {'blob size':>10}  {'ratio':>5}  {'entries':>7}  {'files':>6}  "
        f"{'whiteouts':>9}  {'opaque':>6}  created_by"
    )
    print(head)
    print("-" * len(head))
    for ly in doc["layers"]:
        ratio = ly["blob_bytes"] / ly["tar_bytes"] if ly["tar_bytes"] else 0.0
        print(
            f"{ly['index']:>2}  {human(ly['tar_bytes']):>10}  {human(ly['blob_bytes']):>10}  {ratio:5.2f}  "
            f"{ly['entries']:>7}  {ly['files']:>6}  {ly['whiteouts']:>9}  {ly['opaques']:>6}  "
            f"{ly['created_by'][:60]}"
        )
    t = doc["totals"]
    s = doc["surviving"]
    print(
        f"total: {human(t['tar_bytes'])} of layer tars ({t['tar_bytes']:,} B), {human(t['blob_bytes'])} "
        f"of blobs, {t['entries']:,} tar entries, {t['whiteouts']:,} whiteouts, {t['opaques']:,} opaque dirs"
    )
    print(
        f"flattened (model): {s['entries']:,} entries, {s['files']:,} regular files, "
        f"{human(s['file_bytes'])} of file data ({s['file_bytes']:,} B)"
    )
    print(f"generated in {doc['generation_seconds']:.1f} s")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=here / "work" / "image",
        help="OCI layout directory to create (default: benchmarks/work/image)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiplies entry counts and large-file sizes (1.0 = ~1.56 GB of layer tars)",
    )
    p.add_argument("--seed", type=int, default=1, help="changes every name, size and byte (default 1)")
    p.add_argument("--compression", choices=("gzip", "zstd", "none"), default="gzip")
    p.add_argument("--level", type=int, default=None, help="compression level (default: gzip 6, zstd 3)")
    p.add_argument(
        "--docker-archive",
        type=Path,
        default=None,
        help="also write a docker-save tarball (uncompressed layers) to this path",
    )
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="layers written in parallel")
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.add_argument(
        "--dry-run", action="store_true", help="plan only: print the model's counts, write nothing"
    )
    args = p.parse_args(argv)
    if args.level is None:
        args.level = {"gzip": 6, "zstd": 3, "none": 0}[args.compression]
    if args.scale <= 0:
        p.error("--scale must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    plan = ImagePlan(args.seed, args.scale)
    plan.build()
    if args.dry_run:
        total = whiteouts = opaques = size = 0
        for ly in plan.layers:
            es = ly.entries.values()
            n_wh = sum(e.kind == WHITEOUT for e in es)
            n_op = sum(e.kind == OPAQUE for e in es)
            n_bytes = sum(e.size for e in es if e.kind == FILE)
            total, whiteouts, opaques, size = (
                total + len(es),
                whiteouts + n_wh,
                opaques + n_op,
                size + n_bytes,
            )
            print(
                f"layer {ly.index}: {len(es):>6} entries  {n_wh:>5} whiteouts  {n_op:>4} opaque  "
                f"{human(n_bytes):>10} file data"
            )
        entries, fbytes, files = plan.tree.stats()
        print(
            f"total: {total:,} entries, {whiteouts:,} whiteouts, {opaques} opaque, {human(size)} file data "
            f"(~{(size + 768 * total) / 1e9:.2f} GB of tar)"
        )
        gb = fbytes / 1e9
        print(f"flattened: {entries:,} entries, {files:,} files, {human(fbytes)} file data ({gb:.2f} GB)")
        print(f"planned in {time.perf_counter() - start:.1f} s")
        return 0

    out: Path = args.out
    if out.exists() or out.is_symlink():
        if not args.force:
            print(f"{out} exists; use --force to replace it", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    results = write_layout(staging, plan, args.compression, args.level, max(1, args.jobs))
    staging.rename(out)
    if args.docker_archive is not None:
        if args.docker_archive.exists() and not args.force:
            print(f"{args.docker_archive} exists; use --force to replace it", file=sys.stderr)
            return 2
        args.docker_archive.parent.mkdir(parents=True, exist_ok=True)
        write_docker_archive(args.docker_archive, out, plan, results, args.compression)
    doc = shape(plan, results, args, time.perf_counter() - start)
    out.with_name(out.name + ".shape.json").write_text(json.dumps(doc, indent=2) + "\n")
    print_summary(doc, out)
    if args.docker_archive is not None:
        print(f"docker archive: {args.docker_archive} ({human(args.docker_archive.stat().st_size)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
