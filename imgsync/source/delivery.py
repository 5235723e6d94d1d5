"""What one session delivers to one peer, through its :class:`~imgsync.source.link.PeerLink`:
the plan (skip, apply, send thin or full, no room), the uploads — bundle first, marker
last; streamed while the source still exports it, resumed where an earlier one broke —
then one apply, and the full bundle after a thin one the peer could not use. Each step is
recorded in the peer's :class:`~imgsync.source.ledger.Ledger`; an error of one image fails
that image alone.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from imgsync import log
from imgsync.bundle import payload
from imgsync.bundle.payload import Payload
from imgsync.config import PeerSettings
from imgsync.model import (
    Action,
    HeldLayers,
    Inventory,
    Marker,
    ProgressSink,
    Result,
    chain_ids,
)
from imgsync.plan import PlanItem, Step, needs_blobs, plan_peer, thin_layers, thin_positions
from imgsync.source.ledger import Ledger
from imgsync.source.link import IMAGE_ERRORS, PeerLink
from imgsync.source.live import ExportFailed, LiveExport, LivePayload, LiveThinPayload, thin_streams

Omitted = tuple[int, ...]  # positions of layers a thin bundle leaves out


@dataclass
class _Session:
    """One session's fixed parts: the link, the peer, where bundles are, what it reports."""

    link: PeerLink
    peer: PeerSettings
    export_dir: Path
    ledger: Ledger
    progress: ProgressSink | None
    live: Mapping[str, LiveExport]
    stop: threading.Event


def serve(
    link: PeerLink,
    peer: PeerSettings,
    todo: dict[str, Marker],
    inventory: Inventory,
    export_dir: Path,
    ledger: Ledger,
    progress: ProgressSink | None = None,
    live: Mapping[str, LiveExport] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Within one session: skip, send and apply what ``inventory`` says each image needs.
    ``live``: exports still being written (their markers in ``todo`` are provisional)."""
    session = _Session(
        link, peer, export_dir, ledger, progress, live or {}, stop or threading.Event()
    )
    plan = plan_peer(todo, inventory, peer.inbox)
    omitted = _thin_plan(session, plan)
    to_apply: list[PlanItem] = []
    for item in plan:
        if item.step is Step.NO_ROOM:  # nothing is sent: the peer keeps what it runs
            log.get().error("not sent", image=item.image, reason=item.reason)
            ledger.fail(item.image, f"peer {peer.name}: {item.reason}", item.marker.version)
            continue
        if item.step is Step.SKIP:
            ledger.unchanged(item.image, item.marker.version)
            continue
        ledger.begin(item.image, item.marker.version)
        if item.step is Step.SEND and not _send_or_fail(
            session, item, inventory, omitted.get(item.image, ())
        ):
            continue
        to_apply.append(item)
    if not to_apply:
        return
    fallback = _apply(link, peer, to_apply, ledger)
    for item in list(fallback):  # a thin bundle the peer could not use: the full one now
        log.get().warning("thin bundle refused; sending the full one", image=item.image)
        if not _send_or_fail(session, item, inventory, ()):
            fallback.remove(item)
    if fallback:
        _apply(link, peer, fallback, ledger)


def _send_or_fail(
    session: _Session, item: PlanItem, inventory: Inventory, omitted: Omitted
) -> bool:
    """Send one bundle and its marker; an error of this image alone fails it (False)."""
    result = session.ledger.begin(item.image, item.marker.version)
    log.get().info("sending", image=item.image, reason=item.reason)
    try:
        _send(session, item.marker, inventory, result, omitted)
    except ExportFailed as err:  # the source could not export it: as if never announced
        session.ledger.fail(item.image, str(err))
        return False
    except IMAGE_ERRORS as err:
        log.get().error("not sent", image=item.image, error=str(err))
        session.ledger.fail(item.image, f"peer {session.peer.name}: {err}")
        return False
    return True


def _thin_plan(session: _Session, plan: list[PlanItem]) -> dict[str, Omitted]:
    """Ask the peer which layers of the images to send it holds, and its image store; what
    each bundle may leave out (where that store can load it so). A containerd-store peer
    needs each bundle's blobs: the exports that may be thin for it are waited for."""
    chains = {c for item in plan if item.step is Step.SEND for c in chain_ids(item.marker.layers)}
    if not chains:
        return {}
    held = session.link.held_layers(sorted(chains))
    if needs_blobs(held.store):
        for item in plan:
            export = session.live.get(item.image)
            if export is not None and held.chains & set(chain_ids(item.marker.layers)):
                with contextlib.suppress(ExportFailed):  # the send says so
                    export.wait(session.stop)
    return thin_for_store(plan, held, session.export_dir)


def thin_for_store(plan: list[PlanItem], held: HeldLayers, export_dir: Path) -> dict[str, Omitted]:
    """:func:`thin_layers`, cut down to what the peer's store can load
    (:func:`plan.thin_positions`; a containerd-store peer needs the bundle's blobs)."""
    omitted = {}
    for image, positions in thin_layers(plan, held.chains).items():
        marker = next(item.marker for item in plan if item.image == image)
        bundle = export_dir / marker.bundle
        # a dry run plans bundles not exported yet: their blobs are unknown, count them legacy
        blobs = None
        if needs_blobs(held.store) and bundle.exists():
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
    session: _Session, exported: Marker, inventory: Inventory, result: Result, omitted: Omitted
) -> None:
    """Bundle first, marker last: the peer never sees a marker without its bundle. A thin
    bundle leaves out the layers at ``omitted``; a partial bundle the peer holds is
    resumed when its bytes match ours; a bundle still being exported is streamed as it is
    written, to a link that can, when it goes whole and fresh."""
    started = time.monotonic()
    live = session.live.get(exported.reference)
    partial = inventory.partials.get(exported.bundle)
    if live is not None and (
        partial
        or not session.link.streams
        or live.done
        or not thin_streams(live.provisional, omitted)
    ):
        exported, live = live.wait(session.stop), None  # the final marker, as exported
    if live is not None:
        _stream(session, live, result, omitted)
    else:
        _send_file(session, exported, partial, result, omitted)
    result.seconds += time.monotonic() - started


def _stream(session: _Session, live: LiveExport, result: Result, omitted: Omitted) -> None:
    plan = replace(live.provisional, omitted=omitted)
    result.transfer = "thin" if omitted else "full"
    log.get().info("streaming while it is exported", image=plan.reference, transfer=result.transfer)
    advance = _progress(session, plan.reference, plan.size)
    bundle = (
        LiveThinPayload(live, omitted, session.stop) if omitted else LivePayload(live, session.stop)
    )
    result.bytes_sent += session.link.send_bundle(bundle, plan, 0, advance)
    final = replace(bundle.final, image_id=None)
    result.bytes_sent += session.link.send_marker(final)


def _send_file(
    session: _Session,
    exported: Marker,
    partial: tuple[int, str] | None,
    result: Result,
    omitted: Omitted,
) -> None:
    full = session.export_dir / exported.bundle
    if omitted:
        bundle: Payload = payload.thin(exported.bundle, full, omitted)
        sent = replace(
            exported, size=bundle.size, sha256=payload.sha256_of(bundle), omitted=omitted
        )
    else:
        bundle, sent = payload.FilePayload(exported.bundle, full), exported
    sent = replace(sent, image_id=None)  # the source's own ID stays here
    result.transfer = "thin" if omitted else "full"
    offset = payload.resume_offset(bundle, *partial) if partial else 0
    if offset:
        log.get().info("resuming upload", image=exported.reference, offset=offset)
    advance = _progress(session, exported.reference, bundle.size - offset)
    result.bytes_sent += session.link.send_bundle(bundle, sent, offset, advance)
    result.bytes_sent += session.link.send_marker(sent)


def _progress(session: _Session, image: str, total: int) -> Callable[[int], None] | None:
    if session.progress is None:
        return None
    session.progress.started(session.peer.name, image, total)
    return partial_progress(session.progress, session.peer.name, image)


def partial_progress(sink: ProgressSink, peer: str, image: str) -> Callable[[int], None]:
    return lambda done: sink.advanced(peer, image, done)


def _apply(
    link: PeerLink, peer: PeerSettings, items: list[PlanItem], ledger: Ledger
) -> list[PlanItem]:
    """Have the peer apply ``items``; return those whose thin bundle it could not use."""
    outcomes = link.apply([item.marker for item in items])
    reported = {o.image: o for o in outcomes}
    fallback = []
    for item in items:
        image, exported = item.image, item.marker
        outcome = reported.get(image)
        if outcome is None:
            ledger.fail(image, f"peer {peer.name} did not report on {image}")
            continue
        ledger.took(image, outcome.seconds)
        if outcome.missing_layers and ledger.transfer(image) == "thin":
            fallback.append(item)  # still in flight: the full bundle goes next
        elif outcome.action is Action.FAILED:
            ledger.fail(image, f"peer {peer.name}: {outcome.error}")
        elif outcome.version != exported.version:
            ledger.fail(
                image,
                f"peer {peer.name} runs {outcome.version} after apply, expected {exported.version}",
            )
        else:
            ledger.applied(image, outcome.action, outcome.published, outcome.publish_error)
    return fallback
