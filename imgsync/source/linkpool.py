"""The daemon's sessions, kept open from one cycle to the next.

A one-shot ``imgsync sync`` connects to every peer and starts imgsync there for its one
cycle. The daemon runs cycles for months: for each agent peer it keeps the SSH connection
and the peer's session process between cycles, so a cycle with nothing to send costs each
peer one question and one answer — no key exchange, no new process on the peer (about half
a CPU-second there), no start-up before the first byte of a new version moves. That is also
what makes a relay pass a version on quickly.

A kept session is handed out again only when it answers a ``ping`` within the peer's
``connect_timeout`` (a peer that rebooted or a connection that died quietly is found out in
that time, then replaced by a new connection); one that failed during a cycle, one idle for
longer than ``keep`` and one whose peer settings changed are closed, never reused. Agentless
peers are not kept: each of their steps is its own command anyway. The peer re-reads its
own config at each cycle's first question, so a kept session never runs on an old one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgsync import log
from imgsync.config import PeerSettings
from imgsync.errors import ImgsyncError
from imgsync.model import ApplyOutcome, HeldLayers, Inventory, Marker
from imgsync.source.link import Advance, PeerLink, open_link


@dataclass
class _Kept:
    link: Any  # an AgentLink (it answers ping)
    settings: PeerSettings
    idle_since: float


class LinkPool:
    """Links by peer name, kept between cycles; :meth:`connect` is a cycle's ``Connect``."""

    def __init__(self, keep: float, clock: Any = time.monotonic) -> None:
        self.keep = keep  # seconds a session may stay idle and still be reused
        self._clock = clock
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()

    def connect(self, peer: PeerSettings, export_dir: Path, stop: threading.Event) -> PeerLink:
        if peer.mode == "agentless":
            return open_link(peer, export_dir, stop)
        kept = self._take(peer)
        if kept is not None and _alive(kept.link, peer):
            log.get().debug("session reused")
            return KeptLink(self, peer, kept.link)
        if kept is not None:
            _close(kept.link)
        return KeptLink(self, peer, open_link(peer, export_dir, stop))

    def _take(self, peer: PeerSettings) -> _Kept | None:
        with self._lock:
            kept = self._kept.pop(peer.name, None)
        if kept is None:
            return None
        if kept.settings != peer or self._clock() - kept.idle_since > self.keep:
            _close(kept.link)
            return None
        return kept

    def give_back(self, peer: PeerSettings, link: Any) -> None:
        with self._lock:
            old = self._kept.pop(peer.name, None)
            self._kept[peer.name] = _Kept(link, peer, self._clock())
        if old is not None and old.link is not link:
            _close(old.link)

    def expire(self) -> None:
        """Close the sessions idle for longer than ``keep`` (the daemon asks between cycles:
        a kept session holds a process on its peer)."""
        now = self._clock()
        with self._lock:
            old = [n for n, k in self._kept.items() if now - k.idle_since > self.keep]
            gone = [self._kept.pop(name) for name in old]
        for item in gone:
            _close(item.link)

    def close(self) -> None:
        """Close every kept session (the daemon stops or reloads its config)."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), {}
        for item in kept:
            _close(item.link)

    def __len__(self) -> int:
        return len(self._kept)


class KeptLink:
    """A cycle's view of a kept link: ``close`` gives it back unless one of its calls failed."""

    streams = True

    def __init__(self, pool: LinkPool, peer: PeerSettings, link: Any) -> None:
        self._pool, self._peer, self._link = pool, peer, link
        self._broken = False

    @property
    def engine_version(self) -> str | None:
        return self._link.engine_version  # type: ignore[no-any-return]

    @engine_version.setter
    def engine_version(self, value: str | None) -> None:
        self._link.engine_version = value

    @property
    def store(self) -> str | None:
        return self._link.store  # type: ignore[no-any-return]

    @store.setter
    def store(self, value: str | None) -> None:
        self._link.store = value

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self._link, name)(*args)
        except BaseException:
            self._broken = True
            raise

    def inventory(self, images: Sequence[str]) -> Inventory:
        return self._call("inventory", images)  # type: ignore[no-any-return]

    def recognise(self, markers: Mapping[str, Marker], inventory: Inventory) -> Inventory:
        return self._call("recognise", markers, inventory)  # type: ignore[no-any-return]

    def held_layers(self, chains: Sequence[str]) -> HeldLayers:
        return self._call("held_layers", chains)  # type: ignore[no-any-return]

    def send_bundle(self, bundle: Any, sent: Marker, offset: int, advance: Advance | None) -> int:
        return self._call("send_bundle", bundle, sent, offset, advance)  # type: ignore[no-any-return]

    def send_marker(self, sent: Marker) -> int:
        return self._call("send_marker", sent)  # type: ignore[no-any-return]

    def apply(self, markers: Sequence[Marker]) -> list[ApplyOutcome]:
        return self._call("apply", markers)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._broken or not hasattr(self._link, "ping"):
            _close(self._link)
        else:
            self._pool.give_back(self._peer, self._link)


def _alive(link: Any, peer: PeerSettings) -> bool:
    try:
        link.ping(peer.connect_timeout)
        return True
    except ImgsyncError as err:
        log.get().info("kept session gone; connecting again", error=str(err))
        return False


def _close(link: Any) -> None:
    with contextlib.suppress(ImgsyncError):  # closing anyway
        link.close()
