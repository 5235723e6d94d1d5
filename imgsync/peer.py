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
from pathlib import Path
from typing import TypeVar

import structlog

from imgsync import bundle, log, protocol
from imgsync.bundledir import marker_name
from imgsync.config import PeerSettings
from imgsync.errors import AuthError, HostKeyError, ImgsyncError, RemoteCommandError
from imgsync.model import Action, Inventory, Marker, Result
from imgsync.plan import PlanItem, Step, plan_peer
from imgsync.signals import Cancelled
from imgsync.transport import SshSession

T = TypeVar("T")
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
                _session(peer, markers, export_dir, stop, results)
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
    return [results[image] for image in images if image in results]


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
) -> None:
    todo = {
        image: exported
        for image, exported in markers.items()
        if image not in results or results[image].action is Action.FAILED
    }
    with SshSession(peer, stop) as ssh:
        inventory = _ask(
            ssh, peer, ["--inventory", "--clean-temp", *_image_args(todo)], protocol.load_inventory
        )
        to_apply: list[PlanItem] = []
        for item in plan_peer(todo, inventory, peer.inbox):
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
            result = Result(
                peer.name, item.image, item.marker.version, Action.FAILED,
                bytes_sent=earlier.bytes_sent if earlier else 0,
            )  # fmt: skip
            results[item.image] = result
            started = time.monotonic()
            if item.step is Step.SEND:
                log.get().info("sending", image=item.image, reason=item.reason)
                _send(ssh, peer, item.marker, export_dir, inventory, result)
            result.seconds += time.monotonic() - started
            to_apply.append(item)
        if to_apply:
            _apply(ssh, peer, to_apply, results)


def _send(
    ssh: SshSession,
    peer: PeerSettings,
    exported: Marker,
    export_dir: Path,
    inventory: Inventory,
    result: Result,
) -> None:
    """Bundle first, marker last: the peer never sees a marker without its bundle. A
    partial bundle the peer holds is resumed when its bytes match ours."""
    local = export_dir / exported.bundle
    partial = inventory.partials.get(exported.bundle)
    offset = bundle.resume_offset(local, *partial) if partial else 0
    if offset:
        log.get().info("resuming upload", image=exported.reference, offset=offset)
    for path, start in ((local, offset), (export_dir / marker_name(exported.reference), 0)):
        size = path.stat().st_size
        argv = [*peer.apply_argv, "--receive", path.name, "--size", str(size)]
        sent, answer = ssh.send(path, [*argv, "--offset", str(start)], start, peer.apply_timeout)
        result.bytes_sent += sent
        if answer.exit_status != 0:
            raise RemoteCommandError(
                f"peer {peer.name}: receiving {path.name} failed: {answer.last_error_line()}"
            )


def _apply(
    ssh: SshSession, peer: PeerSettings, items: list[PlanItem], results: dict[str, Result]
) -> None:
    markers = {item.image: item.marker for item in items}
    outcomes = _ask(ssh, peer, _image_args(markers), protocol.load_apply)
    reported = {o.image: o for o in outcomes}
    for image, exported in markers.items():
        result = results[image]
        outcome = reported.get(image)
        if outcome is None:
            result.error = f"peer {peer.name} did not report on {image}"
            continue
        result.seconds += outcome.seconds
        if outcome.action is Action.FAILED:
            result.error = f"peer {peer.name}: {outcome.error}"
        elif outcome.version != exported.version:
            result.error = (
                f"peer {peer.name} runs {outcome.version} after apply, expected {exported.version}"
            )
        else:
            result.action = Action.LOADED if outcome.action is Action.LOADED else Action.UNCHANGED


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
