"""Files written the one safe way: a temp name in the final folder, flushed, renamed.

Temp names start with ``.tmp-`` so a crashed run's leftovers are recognisable and never
mistaken for a bundle or a marker.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from imgsync.errors import StorageError

TEMP_PREFIX = ".tmp-"
PARTIAL_PREFIX = ".part-"  # an upload being received: kept when it breaks, to resume


def temp_name(final_name: str) -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(4)}-{final_name}"


def ensure_dir(path: Path, mode: int = 0o750) -> None:
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"cannot create folder {path}: {err.strerror}") from None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(final: Path, mode: int = 0o640, temp: Path | None = None) -> Iterator[BinaryIO]:
    """Yield a file under a temp name beside ``final`` (``temp``, or a new one); on success
    flush, fsync and rename it into place; on any error remove it and leave ``final``
    untouched."""
    temp = temp or final.with_name(temp_name(final.name))
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as err:
        raise StorageError(f"cannot write in {final.parent}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
        fsync_dir(final.parent)
    except OSError as err:
        _unlink_quietly(temp)
        raise StorageError(f"cannot write {final}: {err.strerror}") from None
    except BaseException:
        _unlink_quietly(temp)
        raise


def write_atomic(final: Path, data: bytes, mode: int = 0o640) -> None:
    with atomic_writer(final, mode) as handle:
        handle.write(data)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def remove(path: Path) -> None:
    try:
        _unlink_quietly(path)
    except OSError as err:
        raise StorageError(f"cannot remove {path}: {err.strerror}") from None
