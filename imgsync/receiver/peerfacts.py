"""What a peer says about itself in an inventory: its engine (version, image store) and,
for ``imgsync check``, whether imgsync can write in its inbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgsync.adapters import fsutil
from imgsync.config import ReceiverConfig
from imgsync.engines.docker import Engine
from imgsync.errors import StorageError


def engine_facts(receiver: ReceiverConfig) -> dict[str, Any]:
    """On a peer (every ``apply --inventory``): the engine's version and image store."""
    engine = Engine(receiver.docker_host)
    try:
        version, store = str(engine.version().get("Version") or "unknown"), engine.store()
    finally:
        engine.close()
    return {"engine": {"version": version, "store": store}}


def peer_facts(receiver: ReceiverConfig) -> dict[str, Any]:
    """On a peer (a bare ``apply --inventory``): the engine's version and image store, and
    whether imgsync can write in the inbox."""
    probe = Path(receiver.inbox) / fsutil.temp_name("write-check")
    try:
        fsutil.write_atomic(probe, b"")
        fsutil.remove(probe)
        writable = True
    except StorageError:
        writable = False
    return {**engine_facts(receiver), "inbox_writable": writable}
