"""Turn SIGTERM/SIGINT into a stop request the long-running actions can poll, and SIGHUP
into a reload request. Handlers only set events: all real work stays in the main flow."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class Cancelled(Exception):
    """Raised inside a cycle when a stop was requested; caught by the action that owns the
    cycle (not an ImgsyncError: it is not a failure to report, it is a shutdown)."""


def install_stop_handlers(reload: threading.Event | None = None) -> threading.Event:
    """Return an event set by SIGTERM or SIGINT; with ``reload``, SIGHUP sets that one."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if reload is not None:

        def _reload(signum: int, frame: FrameType | None) -> None:
            reload.set()

        signal.signal(signal.SIGHUP, _reload)
    return stop
