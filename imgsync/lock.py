"""One cycle at a time per host: an exclusive ``flock`` on a file in the state folder.

The kernel drops the lock when its holder dies, so a killed run never leaves a stale
lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from imgsync import fsutil
from imgsync.errors import LockedError, StorageError


@contextlib.contextmanager
def cycle_lock(path: Path, wait: bool = True) -> Iterator[None]:
    fsutil.ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise StorageError(f"cannot open lock file {path}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(
                f"another imgsync cycle is running on this host (lock {path}); "
                "try again later or drop --no-wait to wait for it"
            ) from None
        yield
    finally:
        os.close(fd)
