"""Files written the one safe way: a temp name in the final folder, flushed, renamed.

Temp names start with ``.tmp-`` so a crashed run's leftovers are recognisable and never
mistaken for a bundle or a marker. Files in a folder others may write (the inbox) are
opened only as the regular files they name (:func:`open_regular`, :func:`lstat_regular`):
a symbolic link is never followed, and a FIFO or device is refused without blocking.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from imgsync.errors import StorageError

TEMP_PREFIX = ".tmp-"
PARTIAL_PREFIX = ".part-"  # an upload being received: kept when it breaks, to resume


def temp_name(final_name: str) -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(4)}-{final_name}"


class NotRegular(StorageError):
    """A name in the folder is a symbolic link, FIFO, device or folder: refused."""


def open_regular(path: Path, write: bool = False, mode: int = 0o640) -> BinaryIO:
    """``path`` opened for reading (``write``: reading and writing, created with ``mode``
    when missing) only as the regular file it names; raise :class:`NotRegular` for anything
    else, and ``OSError`` (``FileNotFoundError``…) as ``open`` does."""
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO cannot hang the open
    flags |= os.O_RDWR | os.O_CREAT if write else os.O_RDONLY
    try:
        fd = os.open(path, flags, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NotRegular(f"{path} is a symbolic link: refused") from None
        raise
    try:
        _require_regular(path, os.fstat(fd))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "r+b" if write else "rb")
    except BaseException:
        os.close(fd)
        raise


def lstat_regular(path: Path) -> os.stat_result:
    """``path``'s own stat (never a link's target); :class:`NotRegular` unless a regular file."""
    found = os.lstat(path)
    _require_regular(path, found)
    return found


def _require_regular(path: Path, found: os.stat_result) -> None:
    if not stat.S_ISREG(found.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(found.st_mode) else "not a regular file"
        raise NotRegular(f"{path} is {kind}: refused")


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
