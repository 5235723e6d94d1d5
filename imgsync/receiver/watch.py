"""``apply --watch``: apply each marker that lands in the inbox (or changes) without being
asked, until stopped; a marker whose apply failed is tried again a minute later."""

from __future__ import annotations

import math
import threading
import time

from imgsync import log
from imgsync.bundle.bundledir import marker_name
from imgsync.config import ReceiverConfig
from imgsync.errors import ImgsyncError
from imgsync.model import Action
from imgsync.receiver.apply import apply_markers
from imgsync.receiver.inbox import open_inbox

WATCH_RETRY = 60.0  # a marker whose apply failed is tried again after this long
WATCH_ERROR_WAIT = 5.0  # at least this long between polls after an error


def watch(receiver: ReceiverConfig, images: list[str], poll: float, stop: threading.Event) -> None:
    """Apply new markers as they land in the inbox, until ``stop`` is set.

    Every ``poll`` seconds, compare each marker's (inode, mtime, size) with what was seen;
    apply the new and changed ones (all of them at the start) the way ``apply`` does.
    Errors are logged and the loop goes on; a marker that failed is tried again after
    :data:`WATCH_RETRY` seconds, or as soon as it changes.
    """
    logger = log.get()
    seen: dict[str, tuple[int, int, int]] = {}
    retry_at: dict[str, float] = {}
    logger.info("watching the inbox", inbox=receiver.inbox, poll=poll)
    while not stop.is_set():
        wait = poll
        try:
            _watch_once(receiver, images, seen, retry_at, stop)
        except ImgsyncError as err:
            logger.error("watch: cannot apply", error=str(err))
            wait = max(poll, WATCH_ERROR_WAIT)
        stop.wait(wait)
    logger.info("watch stopped")


def _watch_once(
    receiver: ReceiverConfig,
    images: list[str],
    seen: dict[str, tuple[int, int, int]],
    retry_at: dict[str, float],
    stop: threading.Event,
) -> None:
    inbox = open_inbox(receiver)
    present = inbox.marker_signatures()
    if images:
        wanted = {marker_name(image) for image in images}
        present = {name: sig for name, sig in present.items() if name in wanted}
    for name in set(seen) - set(present):
        del seen[name]
        retry_at.pop(name, None)
    now = time.monotonic()
    due = {
        name
        for name, signature in present.items()
        if seen.get(name) != signature or now >= retry_at.get(name, math.inf)
    }
    if not due:
        return
    outcomes = apply_markers(receiver, inbox, images, only=due, stop=stop)
    for name in due:
        seen[name] = present[name]
        retry_at.pop(name, None)
    for outcome in outcomes:
        if outcome.action is Action.FAILED:
            retry_at[marker_name(outcome.image)] = time.monotonic() + WATCH_RETRY
        else:
            log.get().info(
                "applied", image=outcome.image, action=str(outcome.action), version=outcome.version
            )
