"""What the source streams to a peer: a file, a thin bundle cut out of one, or bytes.

A payload knows its size and yields its bytes from any offset, so an interrupted upload
resumes the same way whatever is being sent.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from imgsync.bundle import saveformat
from imgsync.errors import StorageError, VerificationError

CHUNK = 1024 * 1024
END_OF_ARCHIVE = b"\x00" * 1024  # what a tarball cut out of another ends with


class Payload(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...

    def chunks(self, start: int = 0) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class BytesPayload:
    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def chunks(self, start: int = 0) -> Iterator[bytes]:
        for position in range(start, len(self.data), CHUNK):
            yield self.data[position : position + CHUNK]


@dataclass(frozen=True)
class FilePayload:
    """A file, or the byte ``ranges`` of it (then followed by ``tail``)."""

    name: str
    path: Path
    ranges: tuple[tuple[int, int], ...] | None = None  # (start, end) in the file
    tail: bytes = b""

    @property
    def size(self) -> int:
        if self.ranges is None:
            try:
                return self.path.stat().st_size
            except OSError as err:
                raise StorageError(f"cannot read {self.path}: {err.strerror}") from None
        return sum(end - start for start, end in self.ranges) + len(self.tail)

    def chunks(self, start: int = 0) -> Iterator[bytes]:
        ranges = self.ranges
        try:
            with self.path.open("rb") as handle:
                if ranges is None:
                    handle.seek(start)
                    while chunk := handle.read(CHUNK):
                        yield chunk
                    return
                skip = start
                for first, end in ranges:
                    if skip >= end - first:
                        skip -= end - first
                        continue
                    handle.seek(first + skip)
                    left, skip = end - first - skip, 0
                    while left > 0 and (chunk := handle.read(min(CHUNK, left))):
                        left -= len(chunk)
                        yield chunk
        except OSError as err:
            raise StorageError(f"cannot read {self.path}: {err.strerror}") from None
        yield self.tail[max(0, start - (self.size - len(self.tail))) :]


def sha256_of(payload: Payload, length: int | None = None) -> str:
    """sha256 of the payload's first ``length`` bytes (all of it by default)."""
    digest, left = hashlib.sha256(), payload.size if length is None else length
    for chunk in payload.chunks(0):
        if left <= 0:
            break
        digest.update(chunk[:left])
        left -= len(chunk)
    return digest.hexdigest()


def resume_offset(payload: Payload, size: int, sha256: str) -> int:
    """Where to resume sending ``payload`` to a peer that holds its first ``size`` bytes
    with digest ``sha256``: ``size`` when those bytes are ours, else 0 (start over)."""
    if not 0 < size <= payload.size:
        return 0
    return size if sha256_of(payload, size) == sha256 else 0


def layer_blobs(path: Path) -> list[str] | None:
    """The blob digest of each layer of the single-image OCI-layout tarball at ``path``,
    bottom first; ``None`` for a legacy layout, whose layers are ``<id>/layer.tar`` files."""
    layout, image = saveformat.describe(path)
    if layout != "oci":
        return None
    return ["sha256:" + layer.rsplit("/", 1)[1] for layer in image.layer_paths]


def thin(name: str, full: Path, positions: tuple[int, ...]) -> FilePayload:
    """The single-image tarball ``full`` without the layers at ``positions`` (the peer
    holds them): every other member's header and data, as byte ranges of ``full``. Reading
    the headers seeks over the data, so this costs a few small reads."""
    ranges: list[tuple[int, int]] = []
    layers = saveformat.describe(full)[1].layer_paths
    try:
        leave_out = {layers[i] for i in positions}
        with tarfile.open(full, mode="r:") as tar:
            for info in tar.getmembers():
                if info.name in leave_out:
                    continue
                end = info.offset_data + (-(-info.size // 512) * 512 if info.isfile() else 0)
                if ranges and ranges[-1][1] == info.offset:
                    ranges[-1] = (ranges[-1][0], end)
                else:
                    ranges.append((info.offset, end))
    except (tarfile.TarError, OSError, KeyError, IndexError, TypeError, ValueError) as err:
        raise VerificationError(f"cannot cut a thin bundle out of {full.name}: {err}") from None
    return FilePayload(name, full, tuple(ranges), END_OF_ARCHIVE)


class StreamReader:
    """A file-like ``read(n)`` over an iterator of byte chunks (``docker save``'s stream).
    Small reads are served from the current chunk without copying the rest of it."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._position = 0

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = n
        while wanted != 0:
            if self._position >= len(self._chunk):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._chunk, self._position = chunk, 0
            end = len(self._chunk) if wanted < 0 else min(len(self._chunk), self._position + wanted)
            parts.append(self._chunk[self._position : end])
            if wanted > 0:
                wanted -= end - self._position
            self._position = end
        return b"".join(parts)
