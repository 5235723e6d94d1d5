"""One pass over a tar stream in which tarfile reads only the headers.

tarfile's stream mode (``r|``) pulls every byte of every member through its own buffers:
joined, sliced and copied four or five times before the caller sees it. For an image
tarball that is hundreds of megabytes of copying with the GIL held, on the source (the
export) and on the peer (a bundle as it arrives) — as much CPU as the two sha256 passes.
Here tarfile runs in its random-access mode (``r:``) over a :class:`Cursor` that can only
seek forward: tarfile reads each header and "seeks" over the member's data, and the
cursor passes those bytes, as views of the chunks it read, to the stream's sha256, to the
sink, and to the member's own :class:`MemberData`. Headers (GNU long names, pax) are
still parsed by tarfile alone.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from imgsync.errors import StorageError

CHUNK = 1024 * 1024
HEADER_MAX = 16 * 1024 * 1024  # the longest read tarfile may ask for (a pax or long-name header)
MAX_MEMBERS = 10_000  # a docker save tarball has a few per layer (at most 127 layers)
INFLATE_STEP = 1024 * 1024  # the most a gzip member inflates to at a time
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_MAGIC = 4  # bytes that tell gzip and zstd data apart


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Cursor:
    """A forward-only file over ``source`` for tarfile: every byte passes once through
    :attr:`digest` and ``sink`` (a full disk there is :class:`StorageError`, not the
    tarball's fault), and the bytes of the range set by :meth:`follow` through its
    function too. Seeking backwards is an :class:`OSError`."""

    def __init__(self, source: Readable, sink: Callable[[memoryview], object] | None) -> None:
        self._source, self._sink = source, sink
        self.digest = hashlib.sha256()
        self.size = 0  # bytes consumed: the position
        self._chunk = memoryview(b"")
        self._at = 0
        self._follow: tuple[int, Callable[[memoryview], None]] | None = None

    def follow(self, size: int, func: Callable[[memoryview], None]) -> None:
        """Pass the next ``size`` bytes to ``func`` too (a member's data, read next)."""
        self._follow = (self.size + size, func)

    def tell(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > HEADER_MAX:
            raise OSError(f"a read of {n} bytes: no header of a tarball is that long")
        parts = []
        while n > 0 and (piece := self._take(n)):
            parts.append(piece.tobytes())
            n -= len(piece)
        return b"".join(parts)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0 or offset < self.size:
            raise OSError("a tarball read as a stream cannot be read backwards")
        while self.size < offset and self._take(offset - self.size):
            pass
        return self.size

    def drain(self) -> None:
        """Consume the rest (the end-of-archive blocks and record padding)."""
        while self._take(CHUNK):
            pass

    def _take(self, n: int) -> memoryview:
        if self._at >= len(self._chunk):
            data = self._source.read(CHUNK)
            if not data:
                return memoryview(b"")
            self._chunk, self._at = memoryview(data), 0
        piece = self._chunk[self._at : self._at + n]
        self._at += len(piece)
        start = self.size
        self.size += len(piece)
        self.digest.update(piece)
        if self._sink is not None:
            try:
                self._sink(piece)
            except OSError as err:  # where it is written (a full disk): not the tarball's fault
                raise StorageError(f"cannot write: {err.strerror or err}") from None
        if self._follow is not None and start < self._follow[0]:
            end, func = self._follow
            func(piece[: end - start])
        return piece


class Budget:
    """What a scan may keep in memory of the metadata it reads, in bytes, across members."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def take(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise tarfile.TarError("more JSON metadata than any image's: refused")


class MemberData:
    """A regular member's data, fed in order: its sha256; gzip or zstd by its first bytes;
    a gzip member's uncompressed sha256 (inflated a step at a time: memory stays bounded
    however far it inflates); the data itself when ``keep`` is a :class:`Budget` and it
    starts as JSON does (the manifests and configs; never a layer)."""

    def __init__(self, keep: Budget | None) -> None:
        self.digest = hashlib.sha256()
        self._budget = keep
        self.kept: bytearray | None = bytearray() if keep is not None else None
        self.compression: str | None = None
        self.content: Any = None  # sha256 of a gzip member's uncompressed data
        self._inflate: Any = None
        self._head: bytearray | None = bytearray()  # until the first bytes tell the format

    def update(self, piece: memoryview) -> None:
        self.digest.update(piece)
        if self._head is not None:
            earlier = bytes(self._head)
            self._head += piece[:_MAGIC]
            if len(self._head) < _MAGIC:
                return  # not told yet: decided with more data, or at the end
            self._decide()
            if earlier:
                self._use(memoryview(earlier))
        self._use(piece)

    def finish(self) -> None:
        if self._head is not None:  # shorter than the magic numbers
            data = bytes(self._head)
            self._decide()
            self._use(memoryview(data))

    def _decide(self) -> None:
        head, self._head = bytes(self._head or b""), None
        if head.startswith(_GZIP):
            self.compression = "gzip"
            self._inflate, self.content = zlib.decompressobj(16 + zlib.MAX_WBITS), hashlib.sha256()
        elif head.startswith(_ZSTD):
            self.compression = "zstd"
        if head.lstrip()[:1] not in (b"{", b"["):
            self.kept = None  # not JSON: no manifest or config to read

    def _use(self, piece: memoryview) -> None:
        if self.kept is not None and self._budget is not None:
            self._budget.take(len(piece))
            self.kept += piece
        if self._inflate is None:
            return
        data = self._inflate.decompress(piece, INFLATE_STEP)
        while True:
            self.content.update(data)
            tail = self._inflate.unconsumed_tail
            if not tail:
                return
            data = self._inflate.decompress(tail, INFLATE_STEP)


Entry = tuple[tarfile.TarInfo, "MemberData"]


def files(tar: tarfile.TarFile, cursor: Cursor, small: int, budget: Budget) -> Iterator[Entry]:
    """Each regular member of ``tar`` (opened ``r:`` over ``cursor``) with its data,
    once all of it has passed; JSON members up to ``small`` bytes are kept, within
    ``budget``. More than :data:`MAX_MEMBERS` entries: :class:`tarfile.TarError`."""
    pending: Entry | None = None
    for count, info in enumerate(tar, 1):  # reading a header passes the data before it
        if pending is not None:
            pending[1].finish()
            yield pending
            pending = None
        if count > MAX_MEMBERS:  # tarfile keeps every header it read
            raise tarfile.TarError(f"more than {MAX_MEMBERS} members: not from docker save")
        if info.issparse():
            raise tarfile.TarError(f"{info.name} is a sparse file: not from docker save")
        if info.isfile():
            data = MemberData(budget if info.size <= small else None)
            cursor.follow(info.size, data.update)  # tarfile just read its header
            pending = (info, data)
    if pending is not None:
        pending[1].finish()
        yield pending
