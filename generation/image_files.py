"""Rendered images as files: PNG and WebP without metadata, under content-addressed names."""

from __future__ import annotations

import hashlib
import io
import zlib

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


# Padding: both images of a pair are served with the same byte length, so a length says
# nothing about which model made which. Files are padded when they are served, never stored
# padded, with a chunk every decoder skips: the pixels are unchanged.

PAD_QUANTUM = 1024  # served lengths are multiples of this (a multiple of 2, as RIFF needs)
_WEBP_PAD_TAG = b"PADD"  # an unknown chunk: WebP readers skip it (extended format)
_PNG_PAD_TAG = b"ppAd"  # ancillary, private, safe to copy: PNG readers skip it
_VP8X_FLAG_ALPHA = 0x10


def _webp_extended(data: bytes) -> bytes:
    """Return a WebP file in the extended format (VP8X first), the same image."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    if data[12:16] == b"VP8X":
        return data
    with Image.open(io.BytesIO(data)) as picture:
        width, height = picture.size
        alpha = picture.mode in ("RGBA", "LA")
    flags = _VP8X_FLAG_ALPHA if alpha else 0
    payload = (
        bytes([flags, 0, 0, 0])
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )
    chunks = b"VP8X" + len(payload).to_bytes(4, "little") + payload + data[12:]
    return b"RIFF" + (len(chunks) + 4).to_bytes(4, "little") + b"WEBP" + chunks


def _smallest_padded(data: bytes) -> int:
    if data[:4] == b"RIFF":
        return len(_webp_extended(data)) + 8
    return len(data) + 12


def padded_length(files: list[bytes]) -> int:
    """Return the one length every file of a pair is served at: the next multiple of 1024
    at or above the largest file with its padding chunk, whichever file that is."""
    longest = max(_smallest_padded(data) for data in files)
    return -(-longest // PAD_QUANTUM) * PAD_QUANTUM


def pad_to(data: bytes, length: int) -> bytes:
    """Return the file padded to exactly `length` bytes with a chunk decoders skip.

    A WebP file is rewritten in the extended format (a VP8X header chunk, the same image
    chunks) and ends with an unknown chunk of zeros; a PNG gets a private ancillary chunk of
    zeros before IEND. Decoded pixels are the same as the file's.
    """
    if data[:4] == b"RIFF":
        extended = _webp_extended(data)
        filler = length - len(extended) - 8
        if filler < 0 or filler % 2:
            raise ValueError(f"cannot pad a WebP file of {len(data)} bytes to {length}")
        chunks = extended[12:] + _WEBP_PAD_TAG + filler.to_bytes(4, "little") + bytes(filler)
        return b"RIFF" + (len(chunks) + 4).to_bytes(4, "little") + b"WEBP" + chunks
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[-12:-8] == b"\x00\x00\x00\x00":
        filler = length - len(data) - 12
        if filler < 0:
            raise ValueError(f"cannot pad a PNG file of {len(data)} bytes to {length}")
        body = bytes(filler)
        crc = zlib.crc32(_PNG_PAD_TAG + body).to_bytes(4, "big")
        chunk = filler.to_bytes(4, "big") + _PNG_PAD_TAG + body + crc
        return data[:-12] + chunk + data[-12:]
    raise ValueError("neither a WebP nor a PNG file")
