"""One cycle at a time per host: an exclusive ``flock`` on a file in the state folder.

The kernel drops the lock when its holder dies, so a killed run never leaves a stale
lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

from imgsync.adapters import fsutil
from imgsync.adapters.signals import Cancelled
from imgsync.errors import LockedError, StorageError


@contextlib.contextmanager
def cycle_lock(
    path: Path, wait: bool = True, stop: threading.Event | None = None
) -> Iterator[None]:
    """Hold the lock at ``path`` for the block. ``wait=False``: raise LockedError at once
    when it is taken; with ``stop``, waiting gives up (Cancelled) when stop is set."""
    fsutil.ensure_dir(path.parent)
    try:
        handle = fsutil.open_regular(path, write=True, mode=0o600)  # never through a link
    except OSError as err:
        raise StorageError(f"cannot open lock file {path}: {err.strerror}") from None
    fd = handle.fileno()
    try:
        while not _try_lock(fd):
            if not wait:
                raise LockedError(
                    f"another imgsync cycle is running on this host (lock {path}); "
                    "try again later or drop --no-wait to wait for it"
                )
            if stop is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                break
            if stop.wait(0.2):
                raise Cancelled("stopped while waiting for the cycle lock")
        yield
    finally:
        handle.close()


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
