"""One peer's part of a cycle, through its :class:`~imgsync.link.PeerLink`: ask what it
has (while the source still exports), send what it lacks, have it apply — retried with
backoff when the link fails, resuming an upload where it broke off.

Results are filled in as the session goes, so what finished before a failure stays
reported as it is. Host-key and authentication failures are not retried: waiting does
not fix them. An error of one image (its upload refused, its bundle unreadable) fails
that image alone; the session goes on with the others.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import structlog

from imgsync import log, payload
from imgsync.config import PeerSettings
from imgsync.errors import AuthError, HostKeyError, ImgsyncError
from imgsync.link import IMAGE_ERRORS, Connect, PeerLink, open_link
from imgsync.model import (
    Action,
    HeldLayers,
    Inventory,
    Marker,
    ProgressSink,
    Result,
    chain_ids,
)
from imgsync.payload import Payload
from imgsync.plan import PlanItem, Step, plan_peer, thin_layers, thin_positions
from imgsync.signals import Cancelled

Omitted = tuple[int, ...]  # positions of layers a thin bundle leaves out
RETRY_CAP = 60.0  # seconds: the longest wait between two attempts
_PERMANENT = (HostKeyError, AuthError)


class Exports:
    """The cycle's exports, which the peers' sessions wait for once they have asked their
    inventory: set once, by the thread that exports."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.markers: dict[str, Marker] = {}
        self.errors: dict[str, str] = {}  # image: why it could not be exported
        self._failed: str | None = None

    @classmethod
    def ready(cls, markers: dict[str, Marker], errors: dict[str, str]) -> Exports:
        exports = cls()
        exports.finish(markers, errors)
        return exports

    def finish(self, markers: dict[str, Marker], errors: dict[str, str]) -> None:
        self.markers, self.errors = markers, errors
        self._done.set()

    def abandon(self, why: str) -> None:
        self._failed = why
        self._done.set()

    def wait(self, stop: threading.Event) -> tuple[dict[str, Marker], dict[str, str]]:
        while not self._done.wait(0.1):
            if stop.is_set():
                raise Cancelled("stopped while the source exported")
        if self._failed is not None:
            raise Cancelled(f"the export failed: {self._failed}")
        return self.markers, self.errors


def retry_delay(attempt: int, base: float, rng: random.Random) -> float:
    """Exponential backoff with a cap and ±25% jitter, for the wait after ``attempt``
    (0 = after the first try)."""
    return float(min(RETRY_CAP, base * 2**attempt) * rng.uniform(0.75, 1.25))


def sync_peer(
    peer: PeerSettings,
    images: list[str],
    exports: Exports,
    export_dir: Path,
    stop: threading.Event,
    progress: ProgressSink | None = None,
    connect: Connect = open_link,
) -> list[Result]:
    """Serve one peer for one cycle: at most ``retries + 1`` sessions, each through a
    link from ``connect``; every image in ``images`` gets a result."""
    structlog.contextvars.bind_contextvars(peer=peer.name)
    logger = log.get()
    results: dict[str, Result] = {}
    rng = random.Random()  # noqa: S311 -- jitter, not a secret
    try:
        for attempt in range(peer.retries + 1):
            try:
                link = connect(peer, export_dir, stop)
                _attempt(link, peer, images, exports, export_dir, stop, results, progress)
                break
            except ImgsyncError as err:
                final = isinstance(err, _PERMANENT) or attempt == peer.retries
                if final:
                    tries = f" (after {attempt + 1} attempts)" if attempt else ""
                    logger.error("peer failed", error=str(err), attempts=attempt + 1)
                    _fail_pending(peer, images, exports, stop, results, f"{err}{tries}")
                    break
                wait = retry_delay(attempt, peer.retry_wait, rng)
                logger.warning("peer attempt failed; retrying", error=str(err), retry_in=wait)
                if stop.wait(wait):
                    raise Cancelled(f"stopped while waiting to retry {peer.name}") from None
    finally:
        structlog.contextvars.unbind_contextvars("peer")
    done = [results[image] for image in images if image in results]
    if progress is not None:
        for result in done:
            progress.finished(result)
    return done


def _attempt(
    link: PeerLink,
    peer: PeerSettings,
    images: list[str],
    exports: Exports,
    export_dir: Path,
    stop: threading.Event,
    results: dict[str, Result],
    progress: ProgressSink | None,
) -> None:
    try:
        inventory = link.inventory(images)  # while the source may still be exporting
        markers, errors = exports.wait(stop)
        for image, error in errors.items():
            if image in images:
                results[image] = Result(peer.name, image, None, Action.FAILED, error=error)
        todo = {
            image: exported
            for image, exported in markers.items()
            if image in images and (image not in results or results[image].action is Action.FAILED)
        }
        try:
            serve(link, peer, todo, link.recognise(todo, inventory), export_dir, results, progress)
        finally:
            for image in todo:
                if image in results:
                    results[image].engine, results[image].store = link.engine_version, link.store
    finally:
        link.close()


def _fail_pending(
    peer: PeerSettings,
    images: list[str],
    exports: Exports,
    stop: threading.Event,
    results: dict[str, Result],
    error: str,
) -> None:
    """Mark failed every image not finished yet (none yet, or in flight without error)."""
    markers, errors = exports.wait(stop)
    for image in images:
        done = results.get(image)
        if image in errors and done is None:
            results[image] = Result(peer.name, image, None, Action.FAILED, error=errors[image])
        elif image in markers and (done is None or _in_flight(done)):
            sent = done.bytes_sent if done else 0
            version = markers[image].version
            results[image] = Result(peer.name, image, version, Action.FAILED, sent, error=error)


def _in_flight(result: Result) -> bool:
    return result.action is Action.FAILED and result.error is None


def serve(
    link: PeerLink,
    peer: PeerSettings,
    todo: dict[str, Marker],
    inventory: Inventory,
    export_dir: Path,
    results: dict[str, Result],
    progress: ProgressSink | None = None,
) -> None:
    """Within one session: skip, send and apply what ``inventory`` says each image needs."""
    plan = plan_peer(todo, inventory, peer.inbox)
    omitted = _thin_plan(link, plan, export_dir)
    to_apply: list[PlanItem] = []
    for item in plan:
        if item.step is Step.NO_ROOM:  # nothing is sent: the peer keeps what it runs
            log.get().error("not sent", image=item.image, reason=item.reason)
            results[item.image] = Result(
                peer.name, item.image, item.marker.version, Action.FAILED,
                error=f"peer {peer.name}: {item.reason}",
            )  # fmt: skip
            continue
        if item.step is Step.SKIP:
            results[item.image] = Result(
                peer.name, item.image, item.marker.version, Action.UNCHANGED
            )
            continue
        earlier = results.get(item.image)
        result = results[item.image] = Result(
            peer.name, item.image, item.marker.version, Action.FAILED,
            bytes_sent=earlier.bytes_sent if earlier else 0,
        )  # fmt: skip
        if item.step is Step.SEND and not _send_or_fail(
            link, peer, item, export_dir, inventory, result, omitted.get(item.image, ()), progress
        ):
            continue
        to_apply.append(item)
    if not to_apply:
        return
    fallback = _apply(link, peer, to_apply, results)
    for item in list(fallback):  # a thin bundle the peer could not use: the full one now
        log.get().warning("thin bundle refused; sending the full one", image=item.image)
        result = results[item.image]
        if not _send_or_fail(link, peer, item, export_dir, inventory, result, (), progress):
            fallback.remove(item)
    if fallback:
        _apply(link, peer, fallback, results)


def _send_or_fail(
    link: PeerLink,
    peer: PeerSettings,
    item: PlanItem,
    export_dir: Path,
    inventory: Inventory,
    result: Result,
    omitted: Omitted,
    progress: ProgressSink | None,
) -> bool:
    """Send one bundle and its marker; an error of this image alone fails it (False)."""
    log.get().info("sending", image=item.image, reason=item.reason)
    try:
        _send(link, peer, item.marker, export_dir, inventory, result, omitted, progress)
    except IMAGE_ERRORS as err:
        log.get().error("not sent", image=item.image, error=str(err))
        result.error = f"peer {peer.name}: {err}"
        return False
    return True


def _thin_plan(link: PeerLink, plan: list[PlanItem], export_dir: Path) -> dict[str, Omitted]:
    """Ask the peer which layers of the images to send it holds, and its image store; what
    each bundle may leave out (where that store can load it so)."""
    chains = {c for item in plan if item.step is Step.SEND for c in chain_ids(item.marker.layers)}
    if not chains:
        return {}
    return thin_for_store(plan, link.held_layers(sorted(chains)), export_dir)


def thin_for_store(plan: list[PlanItem], held: HeldLayers, export_dir: Path) -> dict[str, Omitted]:
    """:func:`thin_layers`, cut down to what the peer's store can load
    (:func:`plan.thin_positions`; a containerd-store peer needs the bundle's blobs)."""
    omitted = {}
    for image, positions in thin_layers(plan, held.chains).items():
        marker = next(item.marker for item in plan if item.image == image)
        bundle = export_dir / marker.bundle
        # a dry run plans bundles not exported yet: their blobs are unknown, count them legacy
        blobs = None
        if held.store == "containerd" and bundle.exists():
            blobs = payload.layer_blobs(bundle)
        kept = thin_positions(held.store, positions, chain_ids(marker.layers), held.blobs, blobs)
        if kept != positions:
            log.get().info(
                "layers the peer holds in a way its store cannot reuse are sent",
                image=image, store=held.store, layers=len(positions) - len(kept),
            )  # fmt: skip
        omitted[image] = kept
    return omitted


def _send(
    link: PeerLink,
    peer: PeerSettings,
    exported: Marker,
    export_dir: Path,
    inventory: Inventory,
    result: Result,
    omitted: Omitted,
    progress: ProgressSink | None = None,
) -> None:
    """Bundle first, marker last: the peer never sees a marker without its bundle. A thin
    bundle leaves out the layers at ``omitted``; a partial bundle the peer holds is
    resumed when its bytes match ours."""
    started = time.monotonic()
    full = export_dir / exported.bundle
    if omitted:
        bundle: Payload = payload.thin(exported.bundle, full, omitted)
        sent = replace(
            exported, size=bundle.size, sha256=payload.sha256_of(bundle), omitted=omitted
        )
    else:
        bundle, sent = payload.FilePayload(exported.bundle, full), exported
    sent = replace(sent, image_id=None)  # the source's own ID stays here
    result.transfer = "thin" if omitted else "full"
    partial = inventory.partials.get(exported.bundle)
    offset = payload.resume_offset(bundle, *partial) if partial else 0
    if offset:
        log.get().info("resuming upload", image=exported.reference, offset=offset)
    advance = None
    if progress is not None:
        progress.started(peer.name, exported.reference, bundle.size - offset)
        advance = partial_progress(progress, peer.name, exported.reference)
    result.bytes_sent += link.send_bundle(bundle, sent, offset, advance)
    result.bytes_sent += link.send_marker(sent)
    result.seconds += time.monotonic() - started


def partial_progress(sink: ProgressSink, peer: str, image: str) -> Callable[[int], None]:
    return lambda done: sink.advanced(peer, image, done)


def _apply(
    link: PeerLink, peer: PeerSettings, items: list[PlanItem], results: dict[str, Result]
) -> list[PlanItem]:
    """Have the peer apply ``items``; return those whose thin bundle it could not use."""
    outcomes = link.apply([item.marker for item in items])
    reported = {o.image: o for o in outcomes}
    fallback = []
    for item in items:
        image, exported = item.image, item.marker
        result = results[image]
        outcome = reported.get(image)
        if outcome is None:
            result.error = f"peer {peer.name} did not report on {image}"
            continue
        result.seconds += outcome.seconds
        if outcome.missing_layers and result.transfer == "thin":
            fallback.append(item)
        elif outcome.action is Action.FAILED:
            result.error = f"peer {peer.name}: {outcome.error}"
        elif outcome.version != exported.version:
            result.error = (
                f"peer {peer.name} runs {outcome.version} after apply, expected {exported.version}"
            )
        else:
            result.action = outcome.action
    return fallback
