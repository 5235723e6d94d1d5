"""Apply on a peer: load what landed in the inbox — verified, and only when the engine does
not already run that version.

For each marker: compare its version (a config digest) with the version the engine runs
under its reference: the image ID itself on the classic store, the version recorded for
that ID when it was loaded on the containerd store (imgsync/receiver/loaded.py). If they differ and
the engine still holds the marker's version under another tag's ID (someone moved the
tag by hand), tag it again. Otherwise check the bundle against the marker (size, sha256,
tag, config digest, layers), ``docker load`` it, and check what the reference names now:
the same layers and runtime config as the bundle, and on the classic store the marker's
version as its ID; if not, put the previous image back under the reference. A bundle that
fails a check is removed with its marker, so the next sync sends it again.

With ``[receiver] publish``, each marker's version the engine runs afterwards is pushed to
the site registry, unless already there (:mod:`imgsync.receiver.publish`); a failed push
is said in the outcome and never undoes the load.

Afterwards the inbox keeps at most ``[receiver] keep`` bundles per reference, and with
``[receiver] prune`` the image a load replaced is removed (never forced: Docker keeps it
while a container uses it or a tag points at it). Temp files of uploads that died more
than an hour ago are removed; a younger one may be an upload in flight.

``apply --inventory`` only reports what the engine runs, what waits in the inbox, and the
inbox's free bytes (:mod:`imgsync.receiver.inventory`). ``apply --watch`` applies each
marker that is new or changed (:mod:`imgsync.receiver.watch`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import BinaryIO

from imgsync import log, reference
from imgsync.adapters import fsutil
from imgsync.adapters.lock import cycle_lock
from imgsync.bundle import saveformat
from imgsync.bundle.bundledir import BundleDir, marker_name
from imgsync.bundle.verify import Received, open_bundle, verify_open
from imgsync.config import ReceiverConfig
from imgsync.engines import identity
from imgsync.engines.base import ReceivingEngine
from imgsync.errors import (
    EngineError,
    ImgsyncError,
    MarkerError,
    MissingLayers,
    Refused,
    StorageError,
    VerificationError,
)
from imgsync.model import (
    Action,
    ApplyOutcome,
    Marker,
    chain_ids,
)
from imgsync.plan import needs_blobs
from imgsync.receiver import loaded
from imgsync.receiver.inbox import APPLY_LOCK, TEMP_MAX_AGE, engine_for, open_inbox
from imgsync.receiver.publish import Publisher


def run(
    receiver: ReceiverConfig, images: list[str], received: Mapping[str, Received] | None = None
) -> list[ApplyOutcome]:
    """Apply every marker in the inbox (or only those of ``images``). ``received``: by
    bundle name, what a session knows of the bundles it received (scanned on the way: no
    second read to verify; loaded untagged on arrival: tagged once checked)."""
    return apply_markers(receiver, open_inbox(receiver), images, received=received or {})


def apply_markers(
    receiver: ReceiverConfig,
    inbox: BundleDir,
    images: list[str],
    only: Collection[str] | None = None,
    stop: threading.Event | None = None,
    received: Mapping[str, Received] | None = None,
) -> list[ApplyOutcome]:
    """Under the inbox lock: apply the markers of ``images`` (all when empty), limited to
    the marker names in ``only`` when given; stop between markers when ``stop`` is set."""
    with cycle_lock(inbox.path / APPLY_LOCK), engine_for(receiver) as engine:
        publisher = Publisher(engine, inbox.path, receiver.publish) if receiver.publish else None
        stale = inbox.clean_temp(older_than=TEMP_MAX_AGE)
        if stale:
            log.get().info("stale temp files removed", inbox=str(inbox.path), removed=stale)
        if images:
            paths = [inbox.marker_path(image) for image in images]
        else:
            paths = list(inbox.marker_paths())
        if only is not None:
            paths = [path for path in paths if path.name in only]
        outcomes = []
        for path in paths:
            if stop is not None and stop.is_set():
                break
            outcome = _apply_one(engine, inbox, path, images, receiver, received or {})
            if publisher is not None and outcome.version is not None:
                outcome.published, outcome.publish_error = publisher.publish(
                    outcome.image, outcome.version
                )
            outcomes.append(outcome)
        return outcomes


def _apply_one(
    engine: ReceivingEngine,
    inbox: BundleDir,
    path: Path,
    wanted: list[str],
    receiver: ReceiverConfig,
    received: Mapping[str, Received],
) -> ApplyOutcome:
    started = time.monotonic()
    image = next((i for i in wanted if marker_name(i) == path.name), path.name)
    try:
        if not path.exists():
            raise MarkerError(f"no marker for {image} in the inbox {inbox.path}")
        try:
            current = inbox.load_marker(path)
        except MarkerError:
            fsutil.remove(path)
            raise
        image = current.reference
        log.bind(image=image)
        _admit(inbox, path, current, receiver.allow)
        action, replaced = _apply_marker(engine, inbox, current, received.get(current.bundle))
        if replaced is not None and receiver.prune:
            _remove_replaced(engine, replaced)
        _prune_inbox(inbox, current, receiver.keep)
        return ApplyOutcome(image, current.version, action, time.monotonic() - started)
    except ImgsyncError as err:
        log.get().error("apply failed", image=image, error=str(err))
        missing = isinstance(err, MissingLayers)
        seconds = time.monotonic() - started
        return ApplyOutcome(image, None, Action.FAILED, seconds, str(err), missing)
    finally:
        log.unbind("image")


def _apply_marker(
    engine: ReceivingEngine, inbox: BundleDir, current: Marker, received: Received | None = None
) -> tuple[Action, str | None]:
    """Load ``current`` unless the engine runs it; return the action and the ID of the image
    the load replaced under the reference (``None``: nothing was replaced). ``received``:
    what the session knows of the bundle (its scan, the image loaded as it arrived)."""
    records = loaded.read(inbox.path)
    before = engine.image_id(current.reference)
    if loaded.version_of(records, before) == current.version:
        return Action.UNCHANGED, None
    arrived = received.loaded_on_arrival() if received is not None else None
    held = identity.held_version(engine, current, loaded.ids_of(records, current.version))
    if held is not None and held != arrived:
        log.get().warning("reference moved by hand; tagged again", version=current.version,
                          image_id=held, moved_to=before)  # fmt: skip
        engine.tag(held, current.reference)
        return Action.RESTORED, before
    with open_bundle(inbox.bundle_path(current), current) as tarball:
        try:
            saved = verify_open(tarball, current, received.scanned if received else None)
            _check_held(engine, current)
        except VerificationError:
            inbox.remove(current)
            raise
        if not _adopt(engine, current, saved, arrived):
            _load(engine, current, tarball, before)  # the very file just verified
    after = identity.inspect_or_none(engine, current.reference)
    if after is None or not identity.is_version(
        after, current, saved.runtime, engine.ids_are_versions()
    ):
        if before is not None:
            engine.tag(before, current.reference)
        got = after.id if after is not None else "nothing"
        raise VerificationError(
            f"after loading {current.bundle}, {current.reference} is {got}, which is not "
            f"{current.version} (other layers or config); the previous image was kept"
        )
    blobs = _blobs(saved) if needs_blobs(engine.store()) else None
    loaded.record(inbox.path, after.id, current.version, engine.image_ids(), blobs)
    log.get().info("loaded", version=current.version, image_id=after.id)
    return Action.LOADED, before


def _adopt(
    engine: ReceivingEngine, current: Marker, saved: saveformat.SavedImage, arrived: str | None
) -> bool:
    """Tag the image loaded (untagged) while the bundle arrived, when it is the marker's
    version — the bundle is verified by now; otherwise drop it and say so (False)."""
    if arrived is None:
        return False
    info = identity.inspect_or_none(engine, arrived)
    if info is None or not identity.is_version(
        info, current, saved.runtime, engine.ids_are_versions()
    ):
        log.get().warning("image loaded on arrival is not the marker's; loading the file",
                          image_id=arrived, version=current.version)  # fmt: skip
        _remove_replaced(engine, arrived)
        return False
    log.get().info("loaded on arrival; tagging", version=current.version, image_id=arrived)
    engine.tag(arrived, current.reference)
    return True


def _load(engine: ReceivingEngine, current: Marker, tarball: BinaryIO, before: str | None) -> None:
    log.get().info("loading", version=current.version, replaces=before)
    try:
        tarball.seek(0)
        engine.load(tarball, f"{current.reference} ({current.bundle})", current.reference)
    except OSError as err:
        raise StorageError(f"cannot read {current.bundle}: {err.strerror}") from None
    except EngineError as err:
        if current.omitted:  # a store that cannot use a thin bundle (or lost a layer)
            raise MissingLayers(f"{err}; the full bundle is needed") from None
        raise


def _blobs(saved: saveformat.SavedImage) -> dict[str, str]:
    """Chain ID → blob digest of each layer of an OCI-layout bundle (none for legacy)."""
    paths = saved.layer_paths
    if not all(path.startswith("blobs/sha256/") for path in paths):
        return {}
    digests = ["sha256:" + path.rsplit("/", 1)[1] for path in paths]
    return dict(zip(chain_ids(saved.diff_ids), digests, strict=True))


def _admit(inbox: BundleDir, path: Path, current: Marker, allow: list[str] | None) -> None:
    """A marker is applied only under its own name and, with ``[receiver] allow``, for an
    image the list names; otherwise it and its bundle are removed and the refusal said."""
    why = None
    if path.name != marker_name(current.reference):
        why = f"marker {path.name} names {current.reference}, whose marker name differs"
    elif allow is not None and not any(reference.match(s, current.reference) for s in allow):
        why = f"{current.reference} is not allowed by [receiver] allow on this peer"
    if why is not None:
        fsutil.remove(path)
        fsutil.remove(inbox.bundle_path(current))
        raise Refused(f"refused: {why}")


def _check_held(engine: ReceivingEngine, current: Marker) -> None:
    """A thin bundle loads only where the engine holds every layer it leaves out."""
    if not current.omitted:
        return
    chains, held = chain_ids(current.layers), engine.layer_chains()
    lacking = [i for i in current.omitted if chains[i] not in held]
    if lacking:
        raise MissingLayers(
            f"bundle {current.bundle} leaves out layers {lacking} that this engine does not "
            "hold (removed since the source asked?); the full bundle is needed"
        )


def _remove_replaced(engine: ReceivingEngine, image_id: str) -> None:
    """``[receiver] prune``: remove the image a load replaced; a refusal is not a failure."""
    try:
        removed = engine.remove_image(image_id)
    except EngineError as err:
        log.get().warning("replaced image not removed", replaced=image_id, error=str(err))
        return
    if removed:
        log.get().info("replaced image removed", replaced=image_id)
    else:
        log.get().info(
            "replaced image kept: a container uses it or a tag points at it", replaced=image_id
        )


def _prune_inbox(inbox: BundleDir, current: Marker, keep: int) -> None:
    """Retention: at most ``keep`` bundles of this reference, the current one among them."""
    try:
        removed = inbox.prune(current.reference, current.bundle, keep)
    except StorageError as err:
        log.get().warning("old bundles not removed", error=str(err))
        return
    if removed:
        log.get().info("old bundles removed", keep=keep, removed=removed)
