"""One peer's part of a cycle: ask what it has, send what it lacks, have it apply —
retried with backoff when the link fails, resuming an upload where it broke off.

Results are filled in as the session goes, so what finished before a failure stays
reported as it is. Host-key and authentication failures are not retried: waiting does
not fix them.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import structlog

from imgsync import log, marker, payload, protocol, wire
from imgsync.agentless import session as agentless_session
from imgsync.bundledir import marker_name
from imgsync.config import PeerSettings
from imgsync.errors import AuthError, HostKeyError, ImgsyncError, RemoteCommandError
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
from imgsync.transport import SshSession

T = TypeVar("T")
Omitted = tuple[int, ...]  # positions of layers a thin bundle leaves out
RETRY_CAP = 60.0  # seconds: the longest wait between two attempts
_PERMANENT = (HostKeyError, AuthError)


def retry_delay(attempt: int, base: float, rng: random.Random) -> float:
    """Exponential backoff with a cap and ±25% jitter, for the wait after ``attempt``
    (0 = after the first try)."""
    return float(min(RETRY_CAP, base * 2**attempt) * rng.uniform(0.75, 1.25))


def sync_peer(
    peer: PeerSettings,
    images: list[str],
    markers: dict[str, Marker],
    export_errors: dict[str, str],
    export_dir: Path,
    stop: threading.Event,
    progress: ProgressSink | None = None,
) -> list[Result]:
    structlog.contextvars.bind_contextvars(peer=peer.name)
    logger = log.get()
    results = {
        image: Result(peer.name, image, None, Action.FAILED, error=error)
        for image, error in export_errors.items()
    }
    rng = random.Random()  # noqa: S311 -- jitter, not a secret
    try:
        for attempt in range(peer.retries + 1):
            if not markers:
                break
            try:
                if peer.mode == "agentless":  # no imgsync there: the source does its part
                    agentless_session(peer, markers, export_dir, stop, results, progress)
                else:
                    _session(peer, markers, export_dir, stop, results, progress)
                break
            except ImgsyncError as err:
                final = isinstance(err, _PERMANENT) or attempt == peer.retries
                if final:
                    tries = f" (after {attempt + 1} attempts)" if attempt else ""
                    logger.error("peer failed", error=str(err), attempts=attempt + 1)
                    _fail_pending(peer, markers, results, f"{err}{tries}")
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


def _fail_pending(
    peer: PeerSettings, markers: dict[str, Marker], results: dict[str, Result], error: str
) -> None:
    """Mark failed every image not finished yet (none yet, or in flight without error)."""
    for image, exported in markers.items():
        done = results.get(image)
        if done is None or (done.action is Action.FAILED and done.error is None):
            sent = done.bytes_sent if done else 0
            results[image] = Result(
                peer.name, image, exported.version, Action.FAILED, sent, error=error
            )


def _session(
    peer: PeerSettings,
    markers: dict[str, Marker],
    export_dir: Path,
    stop: threading.Event,
    results: dict[str, Result],
    progress: ProgressSink | None = None,
) -> None:
    todo = {
        image: exported
        for image, exported in markers.items()
        if image not in results or results[image].action is Action.FAILED
    }
    with SshSession(peer, stop) as ssh:
        inventory, facts = _ask(
            ssh, peer, ["--inventory", "--clean-temp", *_image_args(todo)], _inventory_and_facts
        )
        try:
            _serve(ssh, peer, todo, inventory, export_dir, results, progress)
        finally:
            for image in todo:
                if image in results:
                    results[image].engine = facts.engine_version
                    results[image].store = facts.store


def _inventory_and_facts(raw: bytes) -> tuple[Inventory, protocol.PeerFacts]:
    return protocol.load_inventory(raw), protocol.load_facts(raw)


def _serve(
    ssh: SshSession,
    peer: PeerSettings,
    todo: dict[str, Marker],
    inventory: Inventory,
    export_dir: Path,
    results: dict[str, Result],
    progress: ProgressSink | None,
) -> None:
    """Within one session: skip, send and apply what ``inventory`` says each image needs."""
    plan = plan_peer(todo, inventory, peer.inbox)
    omitted = _thin_plan(ssh, peer, plan, export_dir)
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
        results[item.image] = Result(
            peer.name, item.image, item.marker.version, Action.FAILED,
            bytes_sent=earlier.bytes_sent if earlier else 0,
        )  # fmt: skip
        if item.step is Step.SEND:
            log.get().info("sending", image=item.image, reason=item.reason)
            _send(ssh, peer, item.marker, export_dir, inventory, results[item.image],
                  omitted.get(item.image, ()), progress)  # fmt: skip
        to_apply.append(item)
    if not to_apply:
        return
    fallback = _apply(ssh, peer, to_apply, results)
    for item in fallback:  # a thin bundle the peer could not use: the full one now
        log.get().warning("thin bundle refused; sending the full one", image=item.image)
        _send(ssh, peer, item.marker, export_dir, inventory, results[item.image], (), progress)
    if fallback:
        _apply(ssh, peer, fallback, results)


def _thin_plan(
    ssh: SshSession, peer: PeerSettings, plan: list[PlanItem], export_dir: Path
) -> dict[str, Omitted]:
    """Ask the peer which layers of the images to send it holds, and its image store; what
    each bundle may leave out (where that store can load it so)."""
    chains = {c for item in plan if item.step is Step.SEND for c in chain_ids(item.marker.layers)}
    if not chains:
        return {}
    args = ["--json", *(arg for chain in sorted(chains) for arg in ("--has-layer", chain))]
    return thin_for_store(plan, _ask(ssh, peer, args, protocol.load_layers), export_dir)


def thin_for_store(plan: list[PlanItem], held: HeldLayers, export_dir: Path) -> dict[str, Omitted]:
    """:func:`thin_layers`, cut down to what the peer's store can load
    (:func:`plan.thin_positions`; a containerd-store peer needs the bundle's blobs)."""
    omitted = {}
    for image, positions in thin_layers(plan, held.chains).items():
        marker = next(item.marker for item in plan if item.image == image)
        bundle = export_dir / marker.bundle
        # a dry run plans bundles not exported yet: their blobs are unknown, count them legacy
        blobs = payload.layer_blobs(bundle) if held.store != "classic" and bundle.exists() else None
        kept = thin_positions(held.store, positions, chain_ids(marker.layers), held.blobs, blobs)
        if kept != positions:
            log.get().info(
                "layers the peer holds in a way its store cannot reuse are sent",
                image=image, store=held.store, layers=len(positions) - len(kept),
            )  # fmt: skip
        omitted[image] = kept
    return omitted


def _send(
    ssh: SshSession,
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
        sent_marker = replace(
            exported, size=bundle.size, sha256=payload.sha256_of(bundle), omitted=omitted
        )
    else:
        bundle, sent_marker = payload.FilePayload(exported.bundle, full), exported
    sent_marker = replace(sent_marker, image_id=None)  # the source's own ID stays here
    result.transfer = "thin" if omitted else "full"
    partial = inventory.partials.get(exported.bundle)
    offset = payload.resume_offset(bundle, *partial) if partial else 0
    if offset:
        log.get().info("resuming upload", image=exported.reference, offset=offset)
    note = payload.BytesPayload(marker_name(exported.reference), marker.dumps(sent_marker))
    for item, start in ((bundle, offset), (note, 0)):
        argv = [*peer.apply_argv, "--receive", item.name, "--size", str(item.size)]
        argv += ["--offset", str(start)]
        chunks = item.chunks(start)
        if peer.compression == "zstd" and item is bundle:
            chunks = wire.encode(chunks, peer.compression_level)
            argv += ["--compression", "zstd"]
        advance = None
        if progress is not None and item is bundle:
            progress.started(peer.name, exported.reference, item.size - start)
            advance = partial_progress(progress, peer.name, exported.reference)
        sent, answer = ssh.send(
            item.name, chunks, argv, peer.apply_timeout, peer.max_rate_bytes, advance
        )
        result.bytes_sent += sent
        if answer.exit_status != 0:
            raise RemoteCommandError(
                f"peer {peer.name}: receiving {item.name} failed: {answer.last_error_line()}"
            )
    result.seconds += time.monotonic() - started


def partial_progress(sink: ProgressSink, peer: str, image: str) -> Callable[[int], None]:
    return lambda done: sink.advanced(peer, image, done)


def _apply(
    ssh: SshSession, peer: PeerSettings, items: list[PlanItem], results: dict[str, Result]
) -> list[PlanItem]:
    """Have the peer apply ``items``; return those whose thin bundle it could not use."""
    markers = {item.image: item.marker for item in items}
    outcomes = _ask(ssh, peer, _image_args(markers), protocol.load_apply)
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


def _image_args(markers: dict[str, Marker]) -> list[str]:
    return ["--json", *(arg for image in markers for arg in ("--image", image))]


def _ask(
    ssh: SshSession, peer: PeerSettings, args: Sequence[str], parse: Callable[[bytes], T]
) -> T:
    """Run the peer's apply command with ``args`` and parse its JSON answer."""
    answer = ssh.run([*peer.apply_argv, *args], timeout=peer.apply_timeout)
    try:
        return parse(answer.stdout)
    except protocol.ProtocolError as err:
        tail = answer.last_error_line() if answer.stderr else str(err)
        raise RemoteCommandError(
            f"peer {peer.name}: {peer.apply_argv[0]} exited {answer.exit_status}: {tail}"
        ) from None
