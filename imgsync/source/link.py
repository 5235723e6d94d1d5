"""The peer link: the source's one interface to one peer for one cycle.

Two links implement it: :class:`imgsync.source.agent_link.AgentLink` (a peer with imgsync: one
SSH connection, one ``apply --session`` process, framed requests) and
:class:`imgsync.source.agentless.AgentlessLink` (a peer with only sshd and Docker: the source runs
each step there as a command). The orchestration in :mod:`imgsync.source.peer` — plan, thin or
full, resume, thin→full fallback, retries, results — speaks only this interface, so the
unit tests drive it through a fake.

A method that fails for the whole peer raises a :class:`~imgsync.errors.TransportError`
(the link is then closed and the attempt retried); one that fails for one image raises an
:class:`~imgsync.errors.EngineError`, :class:`~imgsync.errors.StorageError` or
:class:`~imgsync.errors.VerificationError` and the cycle goes on with the next image.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from imgsync.bundle.payload import Payload
from imgsync.config import PeerSettings
from imgsync.errors import EngineError, StorageError, VerificationError
from imgsync.model import ApplyOutcome, HeldLayers, Inventory, Marker
from imgsync.source.live import LivePayload

IMAGE_ERRORS = (EngineError, StorageError, VerificationError)  # fail one image, not the peer
Advance = Callable[[int], None]  # told the bundle bytes sent so far


class PeerLink(Protocol):
    engine_version: str | None  # the peer's Docker version (None: it did not say)
    store: str | None  # its image store: "classic" or "containerd"
    streams: bool  # it can take a bundle still being exported (size told at the end)

    def inventory(self, images: Sequence[str]) -> Inventory:
        """What the peer runs under ``images`` and holds in its inbox (asked while the
        source still exports: no marker is known yet)."""
        ...

    def recognise(self, markers: Mapping[str, Marker], inventory: Inventory) -> Inventory:
        """``inventory`` once the markers are known: a link that cannot tell versions from
        the peer's answer alone (agentless, containerd store) decides it here."""
        ...

    def held_layers(self, chains: Sequence[str]) -> HeldLayers:
        """Which of these layers (chain IDs) the peer's engine holds, and its store."""
        ...

    def send_bundle(
        self, bundle: Payload | LivePayload, sent: Marker, offset: int, advance: Advance | None
    ) -> int:
        """Upload ``bundle`` (described by ``sent``: its size and sha256) from byte
        ``offset``; return the bytes that crossed the wire. A bundle whose ``size`` is
        ``None`` is still being exported (:class:`~imgsync.source.live.LivePayload`): its size and
        sha256 are told at its end (only to a link that ``streams``)."""
        ...

    def send_marker(self, sent: Marker) -> int:
        """Upload the marker, after its bundle; return the bytes that crossed the wire."""
        ...

    def apply(self, markers: Sequence[Marker]) -> list[ApplyOutcome]:
        """Have the peer load what was sent (verified, checked; rolled back if wrong)."""
        ...

    def close(self) -> None: ...


Connect = Callable[[PeerSettings, Path, threading.Event], PeerLink]


def open_link(peer: PeerSettings, export_dir: Path, stop: threading.Event) -> PeerLink:
    """Connect to ``peer`` the way its ``mode`` says, for a cycle that sends from
    ``export_dir``."""
    if peer.mode == "agentless":
        from imgsync.source.agentless import AgentlessLink

        return AgentlessLink.connect(peer, export_dir, stop)
    from imgsync.source.agent_link import AgentLink

    return AgentLink.connect(peer, stop)
