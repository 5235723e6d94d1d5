"""``imgsync apply``: on a peer, load what landed in the inbox — verified, and only when
the engine does not already run that version.

For each marker: compare its version with the image ID the engine has under its
reference. If they differ, check the bundle against the marker (size, sha256, tag,
config digest, layers), ``docker load`` it, and check the engine now runs the marker's
version; if not, put the previous image back under the reference. A bundle that fails a
check is removed with its marker, so the next sync sends it again.

``apply --inventory`` only reports what the engine runs and what waits in the inbox.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from imgsync import bundle, fsutil, log
from imgsync.bundledir import BundleDir, marker_name
from imgsync.config import ReceiverConfig
from imgsync.engine import Engine
from imgsync.errors import ImgsyncError, MarkerError, StorageError, VerificationError
from imgsync.lock import cycle_lock
from imgsync.model import Action, ApplyOutcome, Inventory, Marker, PeerImage
from imgsync.reference import file_stem


def inventory(receiver: ReceiverConfig, images: list[str]) -> Inventory:
    inbox = _inbox(receiver)
    with _engine(receiver) as engine:
        return Inventory(
            {image: PeerImage(engine.image_id(image), _waiting(inbox, image)) for image in images}
        )


def _waiting(inbox: BundleDir, image: str) -> str | None:
    """The version of a complete bundle for ``image`` in the inbox, if any."""
    try:
        current = inbox.read_marker(image)
    except (MarkerError, StorageError):
        return None
    if current is None:
        return None
    try:
        complete = inbox.bundle_path(current).stat().st_size == current.size
    except OSError:
        return None
    return current.version if complete else None


def run(receiver: ReceiverConfig, images: list[str]) -> list[ApplyOutcome]:
    """Apply every marker in the inbox (or only those of ``images``)."""
    inbox = _inbox(receiver)
    with cycle_lock(inbox.path / ".imgsync-apply.lock"), _engine(receiver) as engine:
        if images:
            paths = [inbox.marker_path(image) for image in images]
        else:
            paths = list(inbox.marker_paths())
        return [_apply_one(engine, inbox, path, images) for path in paths]


def _apply_one(engine: Engine, inbox: BundleDir, path: Path, wanted: list[str]) -> ApplyOutcome:
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
        structlog.contextvars.bind_contextvars(image=image)
        action = _apply_marker(engine, inbox, current)
        _drop_older_bundles(inbox, current)
        return ApplyOutcome(image, current.version, action, time.monotonic() - started)
    except ImgsyncError as err:
        log.get().error("apply failed", image=image, error=str(err))
        return ApplyOutcome(image, None, Action.FAILED, time.monotonic() - started, str(err))
    finally:
        structlog.contextvars.unbind_contextvars("image")


def _apply_marker(engine: Engine, inbox: BundleDir, current: Marker) -> Action:
    before = engine.image_id(current.reference)
    if before == current.version:
        return Action.UNCHANGED
    tarball = inbox.bundle_path(current)
    try:
        bundle.verify(tarball, current)
    except VerificationError:
        inbox.remove(current)
        raise
    log.get().info("loading", version=current.version, replaces=before)
    try:
        with tarball.open("rb") as handle:
            engine.load(handle, f"{current.reference} ({current.bundle})")
    except OSError as err:
        raise StorageError(f"cannot read {tarball}: {err.strerror}") from None
    after = engine.image_id(current.reference)
    if after != current.version:
        if before is not None:
            engine.tag(before, current.reference)
        raise VerificationError(
            f"after loading {current.bundle}, {current.reference} is {after}, not "
            f"{current.version}; the previous image was kept"
        )
    log.get().info("loaded", version=current.version)
    return Action.LOADED


def watch(receiver: ReceiverConfig, images: list[str], poll: float, stop: threading.Event) -> None:
    """Apply new markers as they land in the inbox, until ``stop`` is set."""
    raise NotImplementedError("apply --watch: being written")


def _drop_older_bundles(inbox: BundleDir, current: Marker) -> None:
    """Keep one version per reference: remove this reference's superseded bundles."""
    for old in inbox.path.glob(file_stem(current.reference) + ".*.tar"):
        if old.name != current.bundle:
            fsutil.remove(old)


def _inbox(receiver: ReceiverConfig) -> BundleDir:
    inbox = BundleDir(Path(receiver.inbox))
    inbox.create()
    return inbox


@contextlib.contextmanager
def _engine(receiver: ReceiverConfig) -> Iterator[Engine]:
    engine = Engine(receiver.docker_host)
    try:
        yield engine
    finally:
        engine.close()
