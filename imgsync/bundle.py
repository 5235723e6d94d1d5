"""Saved-image tarballs (``docker save`` output): hash them and read what they hold.

Reading the manifest seeks over the layer data instead of reading it, so describing a
500 MB bundle costs a few hundred small reads. The legacy layout (Docker ≤ 24) and the
OCI layout with its compatibility ``manifest.json`` (Docker ≥ 25) both carry
``manifest.json``; that is what is read here.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from imgsync import reference
from imgsync.errors import StorageError, VerificationError
from imgsync.model import Marker

CHUNK = 1024 * 1024
_MANIFEST_MAX = 4 * 1024 * 1024
_CONFIG_MAX = 16 * 1024 * 1024


@dataclass(frozen=True)
class SavedImage:
    repo_tags: tuple[str, ...]
    config_digest: str
    diff_ids: tuple[str, ...]


def hash_file(path: Path) -> tuple[str, int]:
    """Return ``(sha256 hex, size)`` of a file, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as err:
        raise StorageError(f"cannot read {path}: {err.strerror}") from None
    return digest.hexdigest(), size


def resume_offset(path: Path, size: int, sha256: str) -> int:
    """Where to resume sending ``path`` to a peer holding its first ``size`` bytes with
    digest ``sha256``: ``size`` when those bytes are ours, else 0 (start over)."""
    digest, left = hashlib.sha256(), size
    try:
        if not 0 < size <= path.stat().st_size:
            return 0
        with path.open("rb") as handle:
            while left and (chunk := handle.read(min(CHUNK, left))):
                digest.update(chunk)
                left -= len(chunk)
    except OSError as err:
        raise StorageError(f"cannot read {path}: {err.strerror}") from None
    return size if digest.hexdigest() == sha256 else 0


def describe(path: Path) -> SavedImage:
    """Read ``manifest.json`` and the image config out of a single-image tarball."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            manifest = json.loads(_member(tar, "manifest.json", _MANIFEST_MAX))
            if not isinstance(manifest, list) or len(manifest) != 1:
                raise VerificationError(f"{path.name}: expected exactly one image in the tarball")
            entry = manifest[0]
            config_raw = _member(tar, str(entry["Config"]), _CONFIG_MAX)
            config = json.loads(config_raw)
            names = set(tar.getnames())
            missing = [layer for layer in entry["Layers"] if layer not in names]
            if missing:
                raise VerificationError(f"{path.name}: layers missing from tarball: {missing}")
            return SavedImage(
                repo_tags=tuple(entry.get("RepoTags") or ()),
                config_digest="sha256:" + hashlib.sha256(config_raw).hexdigest(),
                diff_ids=tuple(config["rootfs"]["diff_ids"]),
            )
    except (tarfile.TarError, OSError, KeyError, TypeError, ValueError) as err:
        raise VerificationError(f"{path.name}: not a readable image tarball ({err})") from None


def _member(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    info = tar.getmember(name)
    if not info.isfile() or info.size > limit:
        raise VerificationError(f"{name} in the tarball is not a regular file under {limit} bytes")
    handle = tar.extractfile(info)
    if handle is None:
        raise VerificationError(f"{name} in the tarball cannot be read")
    return handle.read()


def verify(path: Path, marker: Marker) -> None:
    """Check a bundle against its marker: size, sha256, the one tag, config digest and
    layers. Raise :class:`VerificationError` naming the first mismatch."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise VerificationError(f"bundle {marker.bundle} is missing") from None
    except OSError as err:
        raise StorageError(f"cannot read {path}: {err.strerror}") from None
    if size != marker.size:
        raise VerificationError(
            f"bundle {marker.bundle} is {size} bytes, its marker says {marker.size}"
        )
    sha256, _ = hash_file(path)
    if sha256 != marker.sha256:
        raise VerificationError(
            f"bundle {marker.bundle} has sha256 {sha256[:16]}…, its marker says "
            f"{marker.sha256[:16]}… (corrupted or tampered)"
        )
    saved = describe(path)
    if saved.repo_tags != (reference.familiar(marker.reference),):
        raise VerificationError(
            f"bundle {marker.bundle} is tagged {list(saved.repo_tags)}, "
            f"its marker names {marker.reference}"
        )
    if saved.config_digest != marker.version:
        raise VerificationError(
            f"bundle {marker.bundle} holds image {saved.config_digest[:19]}, "
            f"its marker names {marker.version[:19]}"
        )
    if saved.diff_ids != marker.layers:
        raise VerificationError(f"bundle {marker.bundle}: layers differ from its marker")
