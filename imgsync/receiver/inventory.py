"""What a peer holds, as a session or ``apply --inventory`` asks: what the engine runs under
each reference (its version, by the records of loads), what complete bundle or partial upload
waits in the inbox, its free bytes, and which layers the engine holds (for thin bundles).
An inventory asked by a cycle first removes what killed runs left in the inbox."""

from __future__ import annotations

from pathlib import Path

from imgsync import protocol
from imgsync.adapters import fsutil
from imgsync.adapters.lock import cycle_lock
from imgsync.bundle.bundledir import BundleDir
from imgsync.config import ReceiverConfig
from imgsync.errors import LockedError, MarkerError, StorageError
from imgsync.model import HeldLayers, Inventory, PeerImage
from imgsync.plan import needs_blobs
from imgsync.receiver import loaded, peerfacts
from imgsync.receiver.inbox import (
    APPLY_LOCK,
    PARTIAL_MAX_AGE,
    TEMP_MAX_AGE,
    engine_for,
    open_inbox,
)


def inventory(receiver: ReceiverConfig, images: list[str], clean: bool = False) -> Inventory:
    """What the engine runs under ``images``, what complete bundles and partial uploads
    wait in the inbox, and its free bytes. ``clean``: the source holds its cycle lock, so
    first remove what killed runs left (:func:`_clean`). Without ``clean`` (a dry run)
    nothing is created or removed, not even a missing inbox."""
    inbox = open_inbox(receiver) if clean else BundleDir(Path(receiver.inbox))
    if clean:
        _clean(inbox)
    exists = inbox.path.is_dir()
    records = loaded.read(inbox.path) if exists else {}
    with engine_for(receiver) as engine:
        running = {image: loaded.version_of(records, engine.image_id(image)) for image in images}
        return Inventory(
            {image: PeerImage(running[image], _waiting(inbox, image)) for image in images},
            inbox_free=inbox.free_bytes() if exists else None,
            partials=inbox.partials() if exists else {},
        )


def reply(receiver: ReceiverConfig, images: list[str], clean: bool = False) -> str:
    """The inventory as the source reads it (:func:`protocol.dump_inventory`), with what
    the peer says of its engine — and of itself when no images are named (``check``)."""
    found = inventory(receiver, images, clean)
    facts = peerfacts.engine_facts(receiver) if images else peerfacts.peer_facts(receiver)
    return protocol.dump_inventory(found, facts)


def _clean(inbox: BundleDir) -> None:
    """Remove what killed runs left: every temp file when no apply holds the inbox (one
    that does may be writing its load record through one), else those an hour old; partial
    uploads and bundles no marker names once a day old."""
    try:
        with cycle_lock(inbox.path / APPLY_LOCK, wait=False):
            inbox.clean_temp()
    except LockedError:
        inbox.clean_temp(older_than=TEMP_MAX_AGE)
    inbox.clean_temp(older_than=PARTIAL_MAX_AGE, prefix=fsutil.PARTIAL_PREFIX)
    inbox.clean_orphans(older_than=PARTIAL_MAX_AGE)


def _waiting(inbox: BundleDir, image: str) -> str | None:
    """The version of a complete bundle for ``image`` in the inbox, if any."""
    try:
        current = inbox.read_marker(image)
    except (MarkerError, StorageError):
        return None
    if current is None:
        return None
    try:
        complete = fsutil.lstat_regular(inbox.bundle_path(current)).st_size == current.size
    except (OSError, StorageError):
        return None
    return current.version if complete else None


def held_layers(receiver: ReceiverConfig, chains: list[str]) -> HeldLayers:
    """The engine's image store, which of ``chains`` it holds, and where the store needs
    it, the blob each was loaded from: read by a containerd engine, recorded by imgsync on
    Docker's containerd store (the source decides from these which layers a bundle may
    leave out: plan.thin_positions)."""
    with engine_for(receiver) as engine:
        store = engine.store()
        held = engine.layer_chains() & set(chains)
        vouched = engine.layer_blobs()  # what the engine can say itself (containerd, Podman)
        if needs_blobs(store):  # and the blobs recorded loading each image (they win)
            vouched.update(loaded.held_blobs(Path(receiver.inbox), engine.image_ids()))
        return HeldLayers(
            store, held, {chain: vouched[chain] for chain in held if chain in vouched}
        )
