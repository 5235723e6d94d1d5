"""One peer's part of a cycle, through its :class:`~imgsync.source.link.PeerLink`: connect (while
the source still selects and exports), ask what it has, then deliver what it lacks
(:mod:`imgsync.source.delivery`) — retried with backoff when the link fails, resuming an upload
where it broke off.

Results are kept in the peer's :class:`~imgsync.source.ledger.Ledger` as the session goes,
so what finished before a failure stays reported as it is. Host-key and authentication
failures are not retried: waiting does not fix them. An error of one image (its upload
refused, its bundle unreadable) fails that image alone; the session goes on with the others.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from pathlib import Path

from imgsync import log
from imgsync.adapters.signals import Cancelled
from imgsync.config import PeerSettings
from imgsync.errors import AuthError, HostKeyError, ImgsyncError
from imgsync.model import (
    ProgressSink,
    Result,
)
from imgsync.source.delivery import serve
from imgsync.source.exports import Exports
from imgsync.source.ledger import Ledger
from imgsync.source.link import Connect, PeerLink, open_link

Omitted = tuple[int, ...]  # positions of layers a thin bundle leaves out
RETRY_CAP = 60.0  # seconds: the longest wait between two attempts
_PERMANENT = (HostKeyError, AuthError)


def retry_delay(attempt: int, base: float, rng: random.Random) -> float:
    """Exponential backoff with a cap and ±25% jitter, for the wait after ``attempt``
    (0 = after the first try)."""
    return float(min(RETRY_CAP, base * 2**attempt) * rng.uniform(0.75, 1.25))


def sync_peer(
    peer: PeerSettings,
    images: list[str] | None,
    exports: Exports,
    export_dir: Path,
    stop: threading.Event,
    progress: ProgressSink | None = None,
    connect: Connect = open_link,
) -> list[Result]:
    """Serve one peer for one cycle: at most ``retries + 1`` sessions, each through a
    link from ``connect``; every image in ``images`` (``None``: the ones the source selects
    for it, told by ``exports`` once the first connection is made) gets a result."""
    log.bind(peer=peer.name)
    run = _PeerRun(peer, _Chosen(images, exports, peer.name, stop), exports, export_dir, stop,
                   Ledger(peer.name), progress)  # fmt: skip
    try:
        _with_retries(run, connect)
    except Cancelled:
        raise
    except Exception as err:  # a bug: this peer fails alone (its trace at -vv)
        log.get().debug("internal error", exc_info=True)
        log.get().error("peer failed", error=f"internal error ({err!r})")
        run.fail_pending(f"peer {peer.name}: internal error ({err!r}); its trace is logged at -vv")
    finally:
        log.unbind("peer")
    done = run.ledger.results(run.mine.images())
    if progress is not None:
        for result in done:
            progress.finished(result)
    return done


class _Chosen:
    """The images of one peer: given, or as the source selects them (waited for once)."""

    def __init__(
        self, images: list[str] | None, exports: Exports, peer: str, stop: threading.Event
    ) -> None:
        self._images, self._exports, self._peer, self._stop = images, exports, peer, stop

    def images(self) -> list[str]:
        if self._images is None:
            self._images = self._exports.images_for(self._peer, self._stop)
        return self._images

    def none(self) -> bool:
        """Known to be none: nothing to retry for."""
        return self._images is not None and not self._images


@dataclass
class _PeerRun:
    """One peer's part of one cycle: what its attempts share, and its results so far."""

    peer: PeerSettings
    mine: _Chosen
    exports: Exports
    export_dir: Path
    stop: threading.Event
    ledger: Ledger
    progress: ProgressSink | None

    def fail_pending(self, error: str) -> None:
        """Fail what is not finished yet (none yet, or in flight), once the exports are known."""
        markers, errors = self.exports.wait(self.stop)
        self.ledger.fail_pending(self.mine.images(), markers, errors, error)


def _with_retries(run: _PeerRun, connect: Connect) -> None:
    peer, logger = run.peer, log.get()
    rng = random.Random()  # noqa: S311 -- jitter, not a secret
    for attempt in range(peer.retries + 1):
        try:
            _attempt(connect(peer, run.export_dir, run.stop), run)
            return
        except ImgsyncError as err:
            final = isinstance(err, _PERMANENT) or attempt == peer.retries
            if final or run.mine.none():
                tries = f" (after {attempt + 1} attempts)" if attempt else ""
                logger.error("peer failed", error=str(err), attempts=attempt + 1)
                run.fail_pending(f"{err}{tries}")
                return
            wait = retry_delay(attempt, peer.retry_wait, rng)
            logger.warning("peer attempt failed; retrying", error=str(err), retry_in=wait)
            if run.stop.wait(wait):
                raise Cancelled(f"stopped while waiting to retry {peer.name}") from None


def _attempt(link: PeerLink, run: _PeerRun) -> None:
    """One session; the link is closed whatever happens (also when the source's export
    fails before it says which images this peer gets)."""
    ledger = run.ledger
    try:
        images = run.mine.images()
        if not images:
            return  # the source selects nothing for this peer
        inventory = link.inventory(images)  # while the source may still be exporting
        log.get().info("inventory", images=len(images))
        markers, live, errors = run.exports.announced(run.stop)
        for image, error in errors.items():
            if image in images:
                ledger.fail(image, error)
        todo = {
            image: exported
            for image, exported in markers.items()
            if image in images and ledger.needs(image)
        }
        try:
            known = link.recognise(todo, inventory)
            serve(link, run.peer, todo, known, run.export_dir, ledger, run.progress, live, run.stop)
        finally:
            ledger.engine(todo, link.engine_version, link.store)
    finally:
        link.close()
