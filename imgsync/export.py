"""Export on the source: ``docker save`` each image that changed into the export dir.

Streamed into a temp file in the export dir while hashing, fsynced, renamed, checked,
and only then announced by its marker, written last. The bundle a marker named before is
removed once the new marker is in place.
"""

from __future__ import annotations

import datetime
import hashlib

from imgsync import bundle, fsutil, log
from imgsync.bundledir import BundleDir, bundle_name
from imgsync.engine import Engine
from imgsync.errors import MarkerError, VerificationError
from imgsync.model import Marker
from imgsync.plan import needs_export
from imgsync.reference import familiar


def export_image(engine: Engine, bundles: BundleDir, reference: str) -> tuple[Marker, bool]:
    """Make sure the export dir holds the current version of ``reference``.

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
        return current, False

    name = bundle_name(reference, info.id)
    path = bundles.path / name
    digest, size = hashlib.sha256(), 0
    logger.info("exporting", version=info.id)
    with fsutil.atomic_writer(path) as handle:
        for chunk in engine.save(reference):
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
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
    if current is not None and current.bundle != name:
        fsutil.remove(bundles.bundle_path(current))
    logger.info("exported", version=info.id, bytes=size)
    return marker, True


def _size_of(bundles: BundleDir, marker: Marker) -> int | None:
    try:
        return bundles.bundle_path(marker).stat().st_size
    except OSError:
        return None
