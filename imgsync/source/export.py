"""Export on the source: ``docker save`` each image that changed into the export dir.

Checked first against the export dir's free space (the image's size plus a margin), then
streamed into a temp file in the export dir while hashing, fsynced, renamed, checked, and
only then announced by its marker, written last. Whatever goes wrong before the marker is
written, the previous export and its marker stay in place. Once the new marker is in
place, the reference's bundles beyond ``keep`` are removed, oldest first.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import BinaryIO

from imgsync import log
from imgsync.adapters import fsutil
from imgsync.bundle import saveformat
from imgsync.bundle.bundledir import BundleDir, bundle_name
from imgsync.bundle.payload import StreamReader
from imgsync.engines.base import ImageInfo
from imgsync.engines.docker import Engine
from imgsync.errors import ImgsyncError, MarkerError, StorageError, VerificationError
from imgsync.model import Marker
from imgsync.plan import needs_export, no_room, with_margin
from imgsync.reference import familiar
from imgsync.source.live import LiveExport

ANNOUNCE_EVERY = 1024 * 1024  # bytes between two notes to the peers streaming the export


@dataclass(frozen=True)
class Head:
    """What the engine holds under ``reference`` and, when the export dir already holds
    that version intact, its marker (``current``: nothing to export)."""

    reference: str
    info: ImageInfo
    current: Marker | None


def head(engine: Engine, bundles: BundleDir, reference: str) -> Head:
    info = engine.inspect(reference)
    try:
        current = bundles.read_marker(reference)
    except MarkerError as err:
        log.get().warning("unreadable marker replaced", image=reference, error=str(err))
        current = None
    intact = current is not None and _size_of(bundles, current) == current.size
    if current is not None and not needs_export(info.id, current, intact):
        return Head(reference, info, current)
    return Head(reference, info, None)


def provisional(found: Head) -> Marker:
    """The marker of an export not written yet, as far as the engine tells it before the
    save: its version is the engine's ID (the classic store's), its size the image's."""
    info = found.info
    name = bundle_name(found.reference, info.id)
    return Marker(found.reference, info.id, info.diff_ids, name, info.size, "", "")


def export_image(
    engine: Engine, bundles: BundleDir, reference: str, keep: int = 1
) -> tuple[Marker, bool]:
    """Make sure the export dir holds the current version of ``reference``, and at most
    ``keep`` of its bundles.

    Return its marker and whether a new export was written.
    """
    found = head(engine, bundles, reference)
    if found.current is not None:
        prune(bundles, found.current, keep)
        return found.current, False
    return save(engine, bundles, found, keep), True


def save(
    engine: Engine, bundles: BundleDir, found: Head, keep: int = 1, live: LiveExport | None = None
) -> Marker:
    """``docker save`` into the export dir, checked, then the marker; ``live`` is told as
    bytes land (peers stream the bundle behind the save) and how it ended."""
    try:
        marker, data_end = _save(engine, bundles, found, live)
    except ImgsyncError as err:
        if live is not None:
            live.fail(f"source: {err}")
        raise
    if live is not None:
        live.finish(marker, data_end)
    prune(bundles, marker, keep)  # after the peers are told: removing a big file takes time
    return marker


def _save(
    engine: Engine, bundles: BundleDir, found: Head, live: LiveExport | None
) -> tuple[Marker, int]:
    """The export, and where its tarball's data ends (before the end-of-archive blocks)."""
    reference, info = found.reference, found.info
    logger = log.get().bind(image=reference)
    full = no_room(
        "export dir", str(bundles.path), reference, with_margin(info.size), bundles.free_bytes()
    )
    if full is not None:
        raise StorageError(full)
    name = bundle_name(reference, info.id)
    logger.info("exporting", version=info.id, image_size=info.size)
    temp = live.path if live is not None else None
    try:
        with fsutil.atomic_writer(bundles.path / name, temp=temp) as handle:
            # one pass: written, hashed, and every layer checked against its diff ID
            sink = _Announcing(handle, live)
            archive = saveformat.scan(
                StreamReader(engine.save(reference)), sink=sink.write, on_member=sink.member
            )
            sink.flush()
            _check_saved(reference, info, archive)
    except StorageError as err:
        raise StorageError(
            f"cannot export {reference} ({err}); what was exported before stays"
        ) from None
    version = archive.images[0].config_digest
    marker = Marker(
        reference=reference,
        version=version,
        layers=archive.images[0].diff_ids,
        bundle=name,
        size=archive.size,
        sha256=archive.sha256,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        image_id=None if info.id == version else info.id,
    )
    bundles.write_marker(marker)
    logger.info("exported", version=version, image_id=info.id, bytes=archive.size)
    return marker, archive.data_end


class _Announcing:
    """Writes what ``docker save`` streams; tells ``live`` each MiB and each member once
    its data is written (flushed first, so a reader of the file finds every byte it is
    told of)."""

    def __init__(self, handle: BinaryIO, live: LiveExport | None) -> None:
        self._handle, self._live = handle, live
        self._written = self._told = 0

    def write(self, data: bytes | memoryview) -> None:
        self._handle.write(data)
        self._written += len(data)
        if self._live is not None and self._written - self._told >= ANNOUNCE_EVERY:
            self.flush()

    def member(self, member: saveformat.Member) -> None:
        if self._live is not None:
            self.flush()
            self._live.member(member)

    def flush(self) -> None:
        if self._live is not None:
            self._handle.flush()
            self._told = self._written
            self._live.advance(self._written)


def _check_saved(reference: str, info: ImageInfo, archive: saveformat.Archive) -> None:
    """The tarball must hold exactly the image inspected, under this tag: its config digest
    is the ID (classic store), or the manifest its OCI index names is (containerd store),
    and its layers are the same. If the tag moved while it was saved, nothing is announced
    and the next cycle exports again."""
    tags = [image.repo_tags for image in archive.images]
    ids = [image.config_digest for image in archive.images] + list(archive.index_digests)
    same = (
        tags == [(familiar(reference),)]
        and info.id in ids
        and archive.images[0].diff_ids == info.diff_ids
    )
    if not same:
        raise VerificationError(
            f"image {reference} changed while it was being saved (expected {info.id[:19]}, "
            f"got {', '.join(d[:19] for d in ids)}); it is exported on the next cycle"
        )


def prune(bundles: BundleDir, current: Marker, keep: int) -> None:
    removed = bundles.prune(current.reference, current.bundle, keep)
    if removed:
        log.get().info("old bundles removed", image=current.reference, keep=keep, removed=removed)


def _size_of(bundles: BundleDir, marker: Marker) -> int | None:
    try:
        return bundles.bundle_path(marker).stat().st_size
    except OSError:
        return None
