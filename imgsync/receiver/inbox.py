"""The inbox as every peer command opens it, the engine it talks to, and the ages and the
lock by which applies and sessions share the inbox: an apply holds :data:`APPLY_LOCK` while
it works; a temp file younger than :data:`TEMP_MAX_AGE` may be an upload in flight."""

from __future__ import annotations

from pathlib import Path

from imgsync.bundle.bundledir import BundleDir
from imgsync.config import ReceiverConfig
from imgsync.engines.select import engine_for as engine_for  # re-exported

TEMP_MAX_AGE = 3600.0  # an inbox temp file younger than this may be an upload in flight
PARTIAL_MAX_AGE = 86400.0  # a partial upload untouched this long will not be resumed
APPLY_LOCK = ".imgsync-apply.lock"  # held by every apply; an inventory cleans only around it


def open_inbox(receiver: ReceiverConfig) -> BundleDir:
    """The inbox, created if missing."""
    inbox = BundleDir(Path(receiver.inbox))
    inbox.create()
    return inbox
