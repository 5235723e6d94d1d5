"""What a peer says about itself in an inventory: its engine (version, image store) and,
for ``imgsync check``, whether imgsync can write in its inbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgsync.adapters import fsutil
from imgsync.config import ReceiverConfig
from imgsync.engines.select import engine_for
from imgsync.errors import StorageError


def engine_facts(receiver: ReceiverConfig) -> dict[str, Any]:
    """On a peer (every ``apply --inventory``): which engine, its version and image store,
    and what ``check`` should say is wrong with it."""
    with engine_for(receiver) as engine:
        facts = engine.facts()
    said: dict[str, Any] = {"kind": facts.kind, "version": facts.version, "store": facts.store}
    if facts.problems:
        said["problems"] = list(facts.problems)
    if facts.notes:
        said["notes"] = list(facts.notes)
    return {"engine": said}


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
