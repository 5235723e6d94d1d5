"""Export on the source: ``docker save`` each image that changed into the export dir.

Checked first against the export dir's free space (the image's size plus a margin), then
streamed into a temp file in the export dir while hashing, fsynced, renamed, checked, and
only then announced by its marker, written last. Whatever goes wrong before the marker is
written, the previous export and its marker stay in place. Once the new marker is in
place, the reference's bundles beyond ``keep`` are removed, oldest first.
"""

from __future__ import annotations

import datetime
import hashlib

from imgsync import bundle, fsutil, log
from imgsync.bundledir import BundleDir, bundle_name
from imgsync.engine import Engine
from imgsync.errors import MarkerError, StorageError, VerificationError
from imgsync.model import Marker
from imgsync.plan import needs_export, no_room, with_margin
from imgsync.reference import familiar


def export_image(
    engine: Engine, bundles: BundleDir, reference: str, keep: int = 1
) -> tuple[Marker, bool]:
    """Make sure the export dir holds the current version of ``reference``, and at most
    ``keep`` of its bundles.

    Return its marker and whether a new export was written.
    """
    logger = log.get().bind(image=reference)
    info = engine.inspect(reference)
    try:
        current = bundles.read_marker(reference)
    except MarkerError as err:
        logger.warning("unreadable marker replaced", error=str(err))
        current = None
    intact = current is not None and _size_of(bundles, current) == current.size
    if current is not None and not needs_export(info.id, current, intact):
        _prune(bundles, current, keep)
        return current, False

    full = no_room(
        "export dir", str(bundles.path), reference, with_margin(info.size), bundles.free_bytes()
    )
    if full is not None:
        raise StorageError(full)
    name = bundle_name(reference, info.id)
    path = bundles.path / name
    digest, size = hashlib.sha256(), 0
    logger.info("exporting", version=info.id, image_size=info.size)
    try:
        with fsutil.atomic_writer(path) as handle:
            for chunk in engine.save(reference):
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except StorageError as err:
        raise StorageError(
            f"cannot export {reference} ({err}); what was exported before stays"
        ) from None
    saved = bundle.describe(path)
    if saved.config_digest != info.id or saved.repo_tags != (familiar(reference),):
        fsutil.remove(path)
        raise VerificationError(
            f"image {reference} changed while it was being saved "
            f"(expected {info.id[:19]}, got {saved.config_digest[:19]}); it is exported "
            "on the next cycle"
        )
    marker = Marker(
        reference=reference,
        version=info.id,
        layers=saved.diff_ids,
        bundle=name,
        size=size,
        sha256=digest.hexdigest(),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    bundles.write_marker(marker)
    logger.info("exported", version=info.id, bytes=size)
    _prune(bundles, marker, keep)
    return marker, True


def _prune(bundles: BundleDir, current: Marker, keep: int) -> None:
    removed = bundles.prune(current.reference, current.bundle, keep)
    if removed:
        log.get().info("old bundles removed", image=current.reference, keep=keep, removed=removed)


def _size_of(bundles: BundleDir, marker: Marker) -> int | None:
    try:
        return bundles.bundle_path(marker).stat().st_size
    except OSError:
        return None
