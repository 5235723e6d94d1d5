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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from imgsync import log
from imgsync.adapters import fsutil
from imgsync.bundle import saveformat, wire
from imgsync.bundle.bundledir import BundleDir
from imgsync.bundle.saveformat import Readable
from imgsync.bundle.verify import Scanned, hash_file, signature
from imgsync.config import ReceiverConfig
from imgsync.errors import StorageError, VerificationError
from imgsync.plan import MARGIN_FIXED, no_room

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
    """Write ``data`` (zstd frames, see :mod:`imgsync.bundle.wire`, with ``compression``) into
    the inbox as ``name``; return the bytes received (``apply --receive``)."""
    stream: Readable = wire.Decoder(data) if compression == "zstd" else data
    return receive_chunks(receiver, name, size, offset, _chunks(stream), scan=False)[0]


def receive_chunks(
    receiver: ReceiverConfig,
    name: str,
    size: int | None,
    offset: int,
    chunks: Iterator[bytes],
    scan: bool = True,
    tap: Callable[[bytes], None] | None = None,
) -> tuple[int, Scanned | None]:
    """Write ``chunks`` into the inbox as ``name`` from byte ``offset``; return the bytes
    received and, for a bundle with ``scan``, its scan (:func:`saveformat.scan`: sha256,
    manifests, every layer checked), made on the way so that applying it need not read it
    again. A bundle that does not scan is still received; it is checked again on apply.
    ``size`` ``None``: a bundle the source still exports; it stays ``.part-NAME`` until
    :func:`seal` names it. ``tap`` sees every new byte as it is written (a load on
    arrival: :mod:`imgsync.receiver.preload`)."""
    check_name(name)
    if size is not None and not 0 <= offset <= size:
        raise StorageError(f"cannot receive {name} from byte {offset} of {size}")
    if size is None and offset:
        raise StorageError(f"cannot resume {name}, whose size is not known yet")
    inbox = BundleDir(Path(receiver.inbox))
    inbox.create()
    partial = inbox.path / (fsutil.PARTIAL_PREFIX + name)
    # a bundle still being exported may take the inbox's free space, less a margin; one of
    # a known size must fit (with that margin) before a byte is written
    free = inbox.free_bytes()
    wanted = free - MARGIN_FIXED if size is None else size - offset
    full = no_room("inbox", str(inbox.path), name, wanted + MARGIN_FIXED, free)
    if size is not None and full is not None:
        raise StorageError(full)
    try:
        received, archive, stat = _write(
            partial, offset, chunks, wanted, scan and name.endswith(".tar"), tap
        )
        if size is not None:
            if offset + received < size:
                raise StorageError(
                    f"upload of {name} stopped at byte {offset + received} of {size}; "
                    "the part received is kept to resume"
                )
            os.replace(partial, inbox.path / name)
            fsutil.fsync_dir(inbox.path)
    except OSError as err:
        raise StorageError(f"cannot receive {name} into {inbox.path}: {err.strerror}") from None
    scanned = Scanned(signature(stat), archive) if archive is not None else None
    return received, scanned


def _write(
    partial: Path,
    offset: int,
    chunks: Iterator[bytes],
    wanted: int,
    scan: bool,
    tap: Callable[[bytes], None] | None,
) -> tuple[int, saveformat.Archive | None, os.stat_result]:
    try:
        opened = fsutil.open_regular(partial, write=True)
    except OSError as err:
        raise StorageError(f"cannot write in {partial.parent}: {err.strerror}") from None
    with opened as out:
        there = os.fstat(out.fileno()).st_size
        if offset > there:
            raise StorageError(
                f"cannot resume {partial.name} at byte {offset}: the inbox holds {there}"
            )
        out.truncate(offset)
        feed = _Feed(out, offset, chunks, wanted, tap)
        try:
            archive = _scan(feed) if scan else None
            feed.drain()
        finally:
            out.flush()
            os.fsync(out.fileno())
        return feed.received, archive, os.fstat(out.fileno())


def seal(
    receiver: ReceiverConfig,
    name: str,
    scanned: Scanned | None,
    trailer: dict[str, object],
) -> Scanned | None:
    """End a bundle received without a size: with the ``trailer``'s size and sha256, which
    what arrived must match, it is renamed into place; with an ``abort`` (the source's
    export failed), or when it does not match, it is removed."""
    inbox = Path(receiver.inbox)
    partial = inbox / (fsutil.PARTIAL_PREFIX + name)
    size, sha256 = trailer.get("size"), trailer.get("sha256")
    try:
        if "abort" in trailer or type(size) is not int or not isinstance(sha256, str):
            why = str(trailer.get("abort") or "no size and sha256")[:500]
            raise StorageError(f"upload of {name} abandoned by the source: {why}")
        got = _digest(partial, scanned)
        if got != (size, sha256):
            raise StorageError(
                f"{name} arrived with {got[0]} bytes and sha256 {got[1][:16]}…, the source "
                f"says {size} and {sha256[:16]}…; removed"
            )
    except StorageError:
        fsutil.remove(partial)
        raise
    try:
        os.replace(partial, inbox / name)
        fsutil.fsync_dir(inbox)
    except OSError as err:
        raise StorageError(f"cannot name {name} in {inbox}: {err.strerror}") from None
    return scanned


def _digest(partial: Path, scanned: Scanned | None) -> tuple[int, str]:
    try:
        stat = fsutil.lstat_regular(partial)
    except OSError as err:
        raise StorageError(f"cannot read {partial}: {err.strerror}") from None
    if scanned is not None and scanned.describes(stat):
        return scanned.archive.size, scanned.archive.sha256
    digest, size = hash_file(partial)
    return size, digest


def _scan(feed: _Feed) -> saveformat.Archive | None:
    try:
        return saveformat.scan(feed)
    except VerificationError as err:
        log.get().warning("received bundle does not scan; checked again on apply", error=str(err))
        return None


class _Feed:
    """What :func:`saveformat.scan` reads: the bytes already in the part file (a resumed
    upload), then the new ones, each written to the part file as it is read."""

    def __init__(
        self,
        out: BinaryIO,
        offset: int,
        chunks: Iterator[bytes],
        wanted: int,
        tap: Callable[[bytes], None] | None = None,
    ) -> None:
        self._out, self._chunks, self._wanted, self._tap = out, chunks, wanted, tap
        self._kept_left = offset  # bytes of the earlier attempt, read back first
        out.seek(0)
        self._pending = b""
        self.received = 0

    def read(self, n: int = -1) -> bytes:
        if self._kept_left:
            data = self._out.read(min(self._kept_left, n if n >= 0 else self._kept_left))
            if not data:
                raise StorageError("the part file shrank while it was read")
            self._kept_left -= len(data)
            if not self._kept_left:
                self._out.seek(0, os.SEEK_END)
            return data
        if not self._pending:
            self._pending = self._next()
        size = len(self._pending) if n < 0 else n
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def drain(self) -> None:
        if self._kept_left:
            self._out.seek(0, os.SEEK_END)
            self._kept_left = 0
        self._pending = b""
        while self._next():
            pass

    def _next(self) -> bytes:
        chunk = next(self._chunks, b"")
        if self.received + len(chunk) > self._wanted:
            raise StorageError(
                f"the source sent more than the {self._wanted} bytes it announced (or that fit)"
            )
        self._out.write(chunk)
        self.received += len(chunk)
        if self._tap is not None and chunk:
            self._tap(chunk)
        return chunk


def _chunks(data: Readable) -> Iterator[bytes]:
    while chunk := data.read(_CHUNK):
        yield chunk
