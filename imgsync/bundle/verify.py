"""A bundle against its marker: the one check that stands between the inbox and
``docker load``.

:func:`verify` reads the bundle once (:func:`saveformat.scan`): its size and sha256 must
be the marker's, it must hold exactly the marker's image under exactly its tag, every
layer present must match its diff ID, and the layers it leaves out must be exactly those
the marker says a thin bundle omits.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imgsync import reference
from imgsync.adapters import fsutil
from imgsync.bundle import saveformat
from imgsync.errors import StorageError, VerificationError
from imgsync.model import Marker, RuntimeConfig

CHUNK = 1024 * 1024


def hash_file(path: Path) -> tuple[str, int]:
    """Return ``(sha256 hex, size)`` of a file, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    try:
        with fsutil.open_regular(path) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as err:
        raise StorageError(f"cannot read {path}: {err.strerror}") from None
    return digest.hexdigest(), size


Signature = tuple[int, int, int, int]  # device, inode, size, mtime_ns


def signature(stat: os.stat_result) -> Signature:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class Scanned:
    """A bundle's :func:`saveformat.scan`, made while it was received, and the file it
    describes: used by :func:`verify` only while the file is still that one, unchanged."""

    signature: Signature
    archive: saveformat.Archive

    def describes(self, stat: os.stat_result) -> bool:
        """Whether the file ``stat`` is of is still the one scanned, unchanged."""
        return self.signature == signature(stat)


@dataclass
class Received:
    """What a peer's session knows of a bundle it received: its scan, and the image the
    engine loaded from it as it arrived (``loaded_on_arrival`` waits for that load to end;
    ``None``: none was, or it failed)."""

    scanned: Scanned | None = None
    loaded_on_arrival: Callable[[], str | None] = lambda: None


def verify(path: Path, marker: Marker, scanned: Scanned | None = None) -> saveformat.SavedImage:
    """:func:`verify_open` of the bundle at ``path`` (opened as the file it names)."""
    with open_bundle(path, marker) as handle:
        return verify_open(handle, marker, scanned)


def verify_open(
    handle: BinaryIO, marker: Marker, scanned: Scanned | None = None
) -> saveformat.SavedImage:
    """Raise :class:`VerificationError` naming the first way the open bundle ``handle``
    differs from ``marker``; return the image it holds when it is exactly what the marker
    describes. ``scanned``: the scan made as the bundle arrived, which spares reading it
    again while the file is still that one. apply loads from the same open file, so
    nothing can swap it between the check and the load."""
    name = marker.bundle
    stat = _sized(handle, marker)
    if scanned is not None and scanned.describes(stat):
        archive = scanned.archive
    else:
        archive = _scan_open(handle, name)
    if archive.sha256 != marker.sha256:
        raise VerificationError(
            f"bundle {name} has sha256 {archive.sha256[:16]}…, its marker says "
            f"{marker.sha256[:16]}… (corrupted or tampered)"
        )
    if len(archive.images) != 1:
        raise VerificationError(f"bundle {name} holds {len(archive.images)} images, not one")
    (image,) = archive.images
    if image.repo_tags != (reference.familiar(marker.reference),):
        raise VerificationError(
            f"bundle {name} is tagged {list(image.repo_tags)}, its marker names {marker.reference}"
        )
    if image.config_digest != marker.version:
        raise VerificationError(
            f"bundle {name} holds image {image.config_digest[:19]}, its marker names "
            f"{marker.version[:19]}"
        )
    if image.diff_ids != marker.layers:
        raise VerificationError(f"bundle {name}: layers differ from its marker")
    if archive.absent_layers(image) != marker.omitted:
        raise VerificationError(
            f"bundle {name} leaves out layers {list(archive.absent_layers(image))}, its "
            f"marker says {list(marker.omitted)}"
        )
    return image


def open_bundle(path: Path, marker: Marker) -> BinaryIO:
    """The bundle at ``path``, opened as the regular file it names (never through a link)."""
    try:
        return fsutil.open_regular(path)
    except FileNotFoundError:
        raise VerificationError(f"bundle {marker.bundle} is missing") from None
    except OSError as err:
        raise StorageError(f"cannot read {path}: {err.strerror}") from None


def _sized(handle: BinaryIO, marker: Marker) -> os.stat_result:
    """The open bundle's stat, once it has the marker's size."""
    stat = os.fstat(handle.fileno())
    if stat.st_size != marker.size:
        raise VerificationError(
            f"bundle {marker.bundle} is {stat.st_size} bytes, its marker says {marker.size}"
        )
    return stat


def _scan_open(handle: BinaryIO, name: str) -> saveformat.Archive:
    try:
        handle.seek(0)
        return saveformat.scan(handle)
    except VerificationError as err:
        raise VerificationError(f"bundle {name}: {err}") from None
    except OSError as err:
        raise StorageError(f"cannot read {name}: {err.strerror}") from None


def bundle_runtime(path: Path, version: str | None = None) -> RuntimeConfig:
    """The runtime config (:func:`~imgsync.model.runtime_config`) of the one image in the
    ``docker save`` tarball at ``path``, read without its layers (:func:`saveformat.describe`).
    With ``version``, the config's digest must be it. Raise :class:`VerificationError` when
    the bundle cannot be read so."""
    image = saveformat.describe(path)[1]
    if version is not None and image.config_digest != version:
        raise VerificationError(
            f"bundle {path.name} holds image {image.config_digest[:19]}, its marker names "
            f"{version[:19]}"
        )
    return image.runtime
