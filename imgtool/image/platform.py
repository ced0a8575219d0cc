"""Platforms: ``os/arch[/variant]`` as a user writes it and as an image or index states it, the
host's own, and which candidate satisfies a request (architecture aliases and arm64's default
variant as Docker and containerd read them)."""

from __future__ import annotations

import platform as _host
from dataclasses import dataclass
from typing import Final

from imgtool.errors import UsageError

_ARCH_ALIASES: Final = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/amd64")
        return cls(parts[0], _ARCH_ALIASES.get(parts[1], parts[1]), parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        machine = _host.machine().lower()
        if machine.startswith("armv"):
            return cls("linux", "arm", "v" + machine[4])
        return cls("linux", _ARCH_ALIASES.get(machine, machine))

    def matches(self, other: Platform) -> bool:
        """Whether ``other`` (a candidate) satisfies ``self`` (a request)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant is None:
            return True
        return _norm_variant(self.architecture, self.variant) == _norm_variant(
            other.architecture, other.variant
        )

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _norm_variant(arch: str, variant: str | None) -> str | None:
    if arch == "arm64" and variant in (None, "v8"):
        return "v8"
    return variant
