"""The peer's record of what it loaded: engine image ID → version (config digest).

On the classic image store the two are the same. On the containerd image store (Docker
25+ with ``containerd-snapshotter``, the default from Docker 29) an image's ID is the digest
of a manifest the engine wrote when it loaded the bundle, and ``docker image inspect``
does not show the config digest at all. So after each verified load the peer writes down
which ID it got for which version; from then on the ID under a reference says which version
runs there, on either store. An ID with no record is an image imgsync did not load (or a
record that was lost): it counts as a different version, so the next sync applies the
bundle and writes the record again.

On the containerd store (and on a containerd or Podman peer, whose stores reuse a layer
only from the blob they hold it by) the record also keeps, per image ID, the digest of the
blob each layer was loaded from (by chain ID; OCI bundles only). A thin bundle may leave a layer out
only where the peer holds that very blob: the store then loads it; with the layer's
snapshot but another blob (pulled, or loaded from another engine) it loads too, but the
image is left incomplete, and ``docker save`` of it on that peer writes a broken tarball
(seen with Docker 26.1).

The record lives in the inbox as ``.imgsync-loaded.json`` (a format number, at most
:data:`MAX_ENTRIES` entries, written to a temp file and renamed; entries for images the
engine no longer holds are dropped on every write). An unreadable record is ignored, which
costs at most one extra load per image, and full bundles until the next load.
"""

from __future__ import annotations

import json
from pathlib import Path

from imgsync import log
from imgsync.adapters import fsutil
from imgsync.errors import StorageError
from imgsync.model import VERSION_RE

NAME = ".imgsync-loaded.json"
FORMAT = 1
MAX_ENTRIES = 4096
MAX_BYTES = 2 * 1024 * 1024


def read(inbox: Path) -> dict[str, str]:
    """Image ID → version, as recorded in ``inbox`` (empty when absent or unreadable)."""
    return _versions(_read_raw(inbox))


def _versions(raw: dict[str, object]) -> dict[str, str]:
    images = raw.get("images")
    if not isinstance(images, dict):
        return {}
    return {
        image_id: version
        for image_id, version in images.items()
        if isinstance(version, str)
        and VERSION_RE.fullmatch(image_id)
        and VERSION_RE.fullmatch(version)
    }


def held_blobs(inbox: Path, present: set[str]) -> dict[str, str]:
    """Chain ID → blob digest of the layers the images in ``present`` were loaded from."""
    per_image = _read_raw(inbox).get("blobs")
    found: dict[str, str] = {}
    if not isinstance(per_image, dict):
        return found
    for image_id, blobs in per_image.items():
        if image_id in present and isinstance(blobs, dict):
            found.update(
                (chain, blob)
                for chain, blob in blobs.items()
                if isinstance(blob, str)
                and VERSION_RE.fullmatch(chain)
                and VERSION_RE.fullmatch(blob)
            )
    return found


def _read_raw(inbox: Path) -> dict[str, object]:
    return read_record(inbox / NAME, "loaded", FORMAT, MAX_BYTES)


def read_record(path: Path, what: str, fmt: int, limit: int) -> dict[str, object]:
    """A record file of the inbox (this one; :mod:`imgsync.receiver.published`'s) as a JSON
    object of format ``fmt``, at most ``limit`` bytes; empty when absent, unreadable or not
    that (said in the log, naming the record of ``what`` images)."""
    try:
        with fsutil.open_regular(path) as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        return {}
    except OSError as err:
        log.get().warning(f"record of {what} images not readable", path=str(path), error=str(err))
        return {}
    try:
        data = json.loads(raw) if len(raw) <= limit else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or data.get("format") != fmt:
        log.get().warning(f"record of {what} images ignored (not format {fmt})", path=str(path))
        return {}
    return data


def version_of(records: dict[str, str], image_id: str | None) -> str | None:
    """The version the image ``image_id`` is: its record, else the ID itself (the classic
    store's IDs are versions; a containerd ID with no record matches no version)."""
    if image_id is None:
        return None
    return records.get(image_id, image_id)


def ids_of(records: dict[str, str], version: str) -> list[str]:
    """Every image ID recorded for ``version``, and ``version`` itself (classic store)."""
    return [version, *sorted(i for i, v in records.items() if v == version and i != version)]


def record(
    inbox: Path,
    image_id: str,
    version: str,
    present: set[str],
    blobs: dict[str, str] | None = None,
) -> None:
    """Write down that the engine holds ``version`` as ``image_id`` (with the blob of each
    layer, by chain ID, when given); keep only entries whose image is in ``present`` (what
    the engine holds now). A load whose ID is its version needs no version entry (but
    keeps its blobs, where given) and prunes the others all the same."""
    raw = _read_raw(inbox)
    records = {i: v for i, v in _versions(raw).items() if i in present and i != v}
    raw_blobs = raw.get("blobs")
    kept_blobs = {
        i: b for i, b in (raw_blobs.items() if isinstance(raw_blobs, dict) else ()) if i in present
    }
    if image_id != version:
        records[image_id] = version
    if blobs:
        kept_blobs[image_id] = dict(blobs)
    if len(records) > MAX_ENTRIES:
        records = dict(list(records.items())[-MAX_ENTRIES:])
    if len(kept_blobs) > MAX_ENTRIES:
        kept_blobs = dict(list(kept_blobs.items())[-MAX_ENTRIES:])
    data = json.dumps(
        {"format": FORMAT, "images": records, "blobs": kept_blobs}, indent=1, sort_keys=True
    )
    try:
        fsutil.write_atomic(inbox / NAME, data.encode() + b"\n", mode=0o640)
    except OSError as err:
        raise StorageError(f"cannot write {inbox / NAME}: {err.strerror}") from None
