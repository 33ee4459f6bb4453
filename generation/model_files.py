"""The model files behind a variant: which count, their digests, and single-file checkpoints
with the folders that configure them.

Pure code: no Django, no torch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Only files that can influence the loaded weights/config take part in fingerprints; READMEs,
# images and VCS metadata in a model folder must not change them.
_FINGERPRINT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json", ".txt", ".model"}
)
_HASH_CHUNK = 1 << 20


def stat_signature(location: str) -> tuple[tuple[str, int, int], ...]:
    """Return (path, size, mtime) of the files at a location, empty for non-local references."""
    return tuple((str(path), *_stat_key(path)) for path in _fingerprint_files(Path(location)))


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


_digest_lock = threading.Lock()
_digest_cache: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path | str) -> str:
    """Return the sha256 hex of a file, cached by (path, size, mtime)."""
    location = Path(path).resolve()
    key = (str(location), *_stat_key(location))
    with _digest_lock:
        cached = _digest_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with location.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with _digest_lock:
        _digest_cache[key] = value
    return value


def _fingerprint_files(location: Path) -> list[Path]:
    """List the weight/config files that determine what loading a location produces."""
    if location.is_file():
        return [location]
    if not location.is_dir():
        return []
    model_index = location / "model_index.json"
    roots: Iterable[Path]
    if model_index.is_file():
        # A diffusers pipeline folder only loads the components named in model_index.json;
        # stray root files such as single-file .ckpt exports must not be hashed.
        index = json.loads(model_index.read_text("utf-8"))
        roots = [
            location / name
            for name, value in index.items()
            if not name.startswith("_")
            and isinstance(value, list)
            and all(value)
            and (location / name).is_dir()
        ]
        files = [model_index]
    else:
        roots = [location]
        files = []
    for root in roots:
        for path in root.rglob("*"):
            relative = path.relative_to(location)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if path.is_file() and path.suffix in _FINGERPRINT_SUFFIXES:
                files.append(path)
    return sorted(files)


SINGLE_FILE_SUFFIXES = frozenset({".safetensors", ".ckpt"})
SINGLE_FILE_CONFIG_HINT = (
    "a folder with the same name minus the suffix, or the folder holding the file, "
    "with model_index.json and the component configs"
)


def is_single_file(location: str) -> bool:
    """Tell whether a base checkpoint names a single-file .safetensors/.ckpt checkpoint."""
    path = Path(location)
    return path.suffix.lower() in SINGLE_FILE_SUFFIXES and not path.is_dir()


def single_file_config(location: str) -> Path | None:
    """Return the local diffusers folder whose configs a single-file checkpoint loads with.

    `model.safetensors` is configured by a sibling `model/` folder, else by the folder holding
    it (hub repositories ship both layouts side by side); either needs model_index.json.
    """
    path = Path(location)
    if not is_single_file(location) or not path.is_file():
        return None
    for candidate in (path.with_suffix(""), path.parent):
        if (candidate / "model_index.json").is_file():
            return candidate
    return None


def content_digest(location: str) -> dict[str, Any] | None:
    """Describe a model location by its file contents, or by its name when it is not local."""
    if not location:
        return None
    path = Path(location)
    if not path.exists():
        # A hub id cannot be hashed offline; its name is the best available identity.
        return {"ref": location}
    files = _fingerprint_files(path)
    if path.is_file():
        return {"files": [[path.name, file_digest(path)]]}
    return {"files": [[p.relative_to(path).as_posix(), file_digest(p)] for p in files]}
