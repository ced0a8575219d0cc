"""imgtool: inspect, flatten and take apart container images, exactly and safely."""

from __future__ import annotations

from imgtool.errors import (
    AmbiguousImageError,
    DigestMismatchError,
    ImageFormatError,
    ImageNotFoundError,
    ImgtoolError,
    LayerError,
    LimitExceededError,
    MediaTypeError,
    OutputError,
    UnsafePathError,
    UsageError,
)
from imgtool.image.digest import Digest
from imgtool.image.image import Image, Layer
from imgtool.image.platform import Platform
from imgtool.sources import open_image

__version__ = "0.1.0"

__all__ = [
    "AmbiguousImageError",
    "Digest",
    "DigestMismatchError",
    "Image",
    "ImageFormatError",
    "ImageNotFoundError",
    "ImgtoolError",
    "Layer",
    "LayerError",
    "LimitExceededError",
    "MediaTypeError",
    "OutputError",
    "Platform",
    "UnsafePathError",
    "UsageError",
    "__version__",
    "open_image",
]
