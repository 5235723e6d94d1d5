"""``imgsync apply``: a peer's command, in the forms the source (and ``serve``) use — apply
what waits in the inbox (the default), ``--inventory``, ``--has-layer``, ``--receive`` and
``--watch``; ``--session`` serves the first four over one channel
(:mod:`imgsync.receiver.session`). Each form returns what the CLI prints; the work is the
receiver's (:mod:`imgsync.receiver`).
"""

from __future__ import annotations

import json
import threading
from typing import BinaryIO

from imgsync import protocol
from imgsync.config import ReceiverConfig
from imgsync.model import ApplyOutcome
from imgsync.receiver import apply, inventory
from imgsync.receiver import receive as receiving
from imgsync.receiver import watch as watching


def markers(receiver: ReceiverConfig, images: list[str]) -> list[ApplyOutcome]:
    """Apply every marker in the inbox, or those of ``images``: one outcome each."""
    return apply.run(receiver, images)


def report(receiver: ReceiverConfig, images: list[str], clean: bool) -> str:
    """``--inventory``: what the engine runs and the inbox holds (protocol JSON)."""
    return inventory.reply(receiver, images, clean)


def layers(receiver: ReceiverConfig, chains: list[str]) -> str:
    """``--has-layer``: which of ``chains`` the engine holds, and its store (protocol JSON)."""
    return protocol.dump_layers(inventory.held_layers(receiver, chains))


def receive(
    receiver: ReceiverConfig, name: str, size: int, offset: int, data: BinaryIO, compression: str
) -> str:
    """``--receive``: take one file on ``data`` into the inbox; JSON with the bytes taken."""
    received = receiving.receive(receiver, name, size, offset, data, compression)
    return json.dumps({"format": protocol.FORMAT, "received": received})


def watch(receiver: ReceiverConfig, images: list[str], poll: float, stop: threading.Event) -> None:
    """``--watch``: apply new markers as they land, until ``stop`` is set."""
    watching.watch(receiver, images, poll, stop)
