"""Compression on the wire: a bundle travels as frames, each 1 MiB of the bundle either
zstd-compressed or, when compressing does not pay (already compressed or random data),
raw. The peer inflates the frames before writing, so what lands in its inbox is the
bundle itself, checked against its marker as always; offsets (resume) count bundle bytes.

Frame: 1 byte kind (0 raw, 1 zstd), 4 bytes big-endian length of the bundle bytes it
holds, 4 bytes length on the wire, then the data. A frame that claims more than
:data:`MAX_FRAME` bytes, or inflates to another size than it claims, ends the upload.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import zstandard

from imgsync.errors import StorageError

MAX_FRAME = 4 * 1024 * 1024
PAYS_OFF = 0.95  # keep the compressed frame only when it is at most this share of the raw
_HEADER = struct.Struct(">BII")
_RAW, _ZSTD = 0, 1


def encode(chunks: Iterator[bytes], level: int) -> Iterator[bytes]:
    compressor = zstandard.ZstdCompressor(level=level)
    for chunk in chunks:
        for start in range(0, len(chunk), MAX_FRAME):
            raw = chunk[start : start + MAX_FRAME]
            packed = compressor.compress(raw)
            if len(packed) <= PAYS_OFF * len(raw):
                yield _HEADER.pack(_ZSTD, len(raw), len(packed)) + packed
            else:
                yield _HEADER.pack(_RAW, len(raw), len(raw)) + raw


class Decoder:
    """A ``read(n)`` over a framed stream that returns the bundle's bytes."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self._inflate = zstandard.ZstdDecompressor()
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        while not self._pending:
            frame = self._frame()
            if frame is None:
                return b""
            self._pending = frame
        size = len(self._pending) if n < 0 else n
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def _frame(self) -> bytes | None:
        header = self._exactly(_HEADER.size, allow_eof=True)
        if header is None:
            return None
        kind, raw_size, wire_size = _HEADER.unpack(header)
        if kind not in (_RAW, _ZSTD) or raw_size > MAX_FRAME or wire_size > MAX_FRAME:
            raise StorageError("the upload is not a valid compressed stream")
        data = self._exactly(wire_size, allow_eof=False) or b""
        if kind == _RAW:
            if wire_size != raw_size:
                raise StorageError("the upload is not a valid compressed stream")
            return data
        try:
            inflated: bytes = self._inflate.decompress(data, max_output_size=raw_size)
        except zstandard.ZstdError as err:
            raise StorageError(f"the upload's zstd data is corrupt: {err}") from None
        if len(inflated) != raw_size:
            raise StorageError("the upload's zstd frame does not inflate to its size")
        return inflated

    def _exactly(self, size: int, allow_eof: bool) -> bytes | None:
        parts: list[bytes] = []
        left = size
        while left:
            chunk = self._stream.read(left)  # type: ignore[attr-defined]
            if not chunk:
                if allow_eof and left == size:
                    return None
                return b"".join(parts)  # short: the receiver sees an early end
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)
