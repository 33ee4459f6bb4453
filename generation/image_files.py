"""Rendered images as files: PNG and WebP without metadata, under content-addressed names."""

from __future__ import annotations

import hashlib
import io

from PIL import Image


def encode_png(image: Image.Image) -> bytes:
    """Encode an image as PNG without text chunks or other metadata."""
    clean = image.copy()
    # Pillow re-emits some entries of .info (e.g. an ICC profile) when saving; drop them all.
    clean.info = {}
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def content_name(data: bytes, suffix: str) -> str:
    """Return a content-addressed file name: the sha256 hex of the bytes plus the suffix."""
    if suffix and not suffix.startswith("."):
        suffix = "." + suffix
    return hashlib.sha256(data).hexdigest() + suffix


def encode_webp(image: Image.Image, *, quality: int = 90) -> bytes:
    """Encode the lighter WebP rendition raters see, without EXIF, XMP or ICC metadata."""
    clean = image.convert("RGB")
    clean.info = {}
    buffer = io.BytesIO()
    clean.save(
        buffer, format="WEBP", quality=quality, method=4, exif=b"", xmp=b"", icc_profile=None
    )
    return buffer.getvalue()
