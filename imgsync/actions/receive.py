"""``imgsync apply --receive NAME --size N [--offset K]``: on a peer, take one file from
the source on stdin into the inbox.

The bytes go to ``.part-NAME`` in the inbox, from ``offset`` (a resumed upload keeps what
an earlier attempt wrote), and when all ``size`` bytes are there the file is fsynced and
renamed to NAME. A broken upload leaves the partial file for the next attempt. NAME must
be a plain bundle or marker file name: the peer, not the source, picks the folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO

from imgsync import fsutil, wire
from imgsync.bundledir import BundleDir
from imgsync.config import ReceiverConfig
from imgsync.errors import StorageError
from imgsync.saveformat import Readable

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(?:tar|marker\.json)")
_CHUNK = 1024 * 1024


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise StorageError(f"refused to receive {name!r}: not a plain bundle or marker name")
    return name


def receive(
    receiver: ReceiverConfig,
    name: str,
    size: int,
    offset: int,
    data: BinaryIO,
    compression: str = "none",
) -> int:
    """Write ``data`` (zstd frames, see :mod:`imgsync.wire`, with ``compression``) into
    the inbox as ``name``; return the bytes received."""
    check_name(name)
    stream: Readable = wire.Decoder(data) if compression == "zstd" else data
    if not 0 <= offset <= size:
        raise StorageError(f"cannot receive {name} from byte {offset} of {size}")
    inbox = BundleDir(Path(receiver.inbox))
    inbox.create()
    partial = inbox.path / (fsutil.PARTIAL_PREFIX + name)
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT, 0o640)
    except OSError as err:
        raise StorageError(f"cannot write in {inbox.path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            there = os.fstat(out.fileno()).st_size
            if offset > there:
                raise StorageError(
                    f"cannot resume {name} at byte {offset}: the inbox holds {there}"
                )
            out.truncate(offset)
            out.seek(offset)
            received = _copy(stream, out, size - offset)
            out.flush()
            os.fsync(out.fileno())
        if offset + received < size:
            raise StorageError(
                f"upload of {name} stopped at byte {offset + received} of {size}; "
                "the part received is kept to resume"
            )
        os.replace(partial, inbox.path / name)
        fsutil.fsync_dir(inbox.path)
    except OSError as err:
        raise StorageError(f"cannot receive {name} into {inbox.path}: {err.strerror}") from None
    return received


def _copy(data: Readable, out: BinaryIO, wanted: int) -> int:
    received = 0
    while received < wanted:
        chunk = data.read(min(_CHUNK, wanted - received))
        if not chunk:
            break
        out.write(chunk)
        received += len(chunk)
    if received == wanted and data.read(1):
        raise StorageError(f"the source sent more than the {wanted} bytes it announced")
    return received
