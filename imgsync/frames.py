"""The session's framing: what travels over one SSH channel between the source and the peer
process ``apply --session`` for a whole cycle (see :mod:`imgsync.session`).

Every frame is a 5-byte header — 1 byte kind, 4 bytes big-endian length — then that many
bytes:

- ``MESSAGE``: one JSON object (a request, a reply, the peer's hello), UTF-8;
- ``DATA``: bytes of the file being received;
- ``ZDATA``: the same, zstd-compressed: 4 bytes big-endian of the size it inflates to,
  then one zstd frame (sent only where compressing pays, per chunk: :mod:`imgsync.bundle.wire`);
- ``END``: the file is complete (length 0).

No frame is longer than :data:`MAX_FRAME`, and a ``ZDATA`` frame inflates to at most
:data:`MAX_FRAME`: a hostile side costs the other bounded memory. A frame that breaks these
rules ends the session with :class:`FrameError`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from typing import Any

from imgsync.errors import ProtocolError

MESSAGE, DATA, ZDATA, END = 1, 2, 3, 4
MAX_FRAME = 4 * 1024 * 1024 + 64
MAX_RAW = 4 * 1024 * 1024  # what one DATA or ZDATA frame carries of the file, at most
_HEADER = struct.Struct(">BI")
_RAW_SIZE = struct.Struct(">I")
PAYS_OFF = 0.95  # keep a compressed chunk only when it is at most this share of the raw


class FrameError(ProtocolError):
    """The other side broke the framing (or the stream ended inside a frame)."""


class Closed(FrameError):
    """The stream ended cleanly between two frames."""


def message_frame(doc: dict[str, Any]) -> bytes:
    data = json.dumps(doc, separators=(",", ":")).encode()
    if len(data) > MAX_FRAME:
        raise FrameError(f"a message of {len(data)} bytes is over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(MESSAGE, len(data)) + data


def end_frame() -> bytes:
    return _HEADER.pack(END, 0)


def data_frames(chunks: Iterator[bytes], level: int | None) -> Iterator[tuple[bytes, int]]:
    """``DATA`` (or, with a zstd ``level``, ``ZDATA`` where it pays) frames of ``chunks``,
    each with the file bytes it carries."""
    compress: Callable[[bytes], bytes] | None = None
    if level is not None:
        import zstandard  # only a compressing sender needs it

        compress = zstandard.ZstdCompressor(level=level).compress
    for chunk in chunks:
        for start in range(0, len(chunk), MAX_RAW):
            raw = chunk[start : start + MAX_RAW]
            if compress is not None:
                packed = compress(raw)
                if len(packed) <= PAYS_OFF * len(raw):
                    body = _RAW_SIZE.pack(len(raw)) + packed
                    yield _HEADER.pack(ZDATA, len(body)) + body, len(raw)
                    continue
            yield _HEADER.pack(DATA, len(raw)) + raw, len(raw)


class FrameReader:
    """Frames from ``read(n)`` (a blocking read of at most ``n`` bytes; ``b""`` at the end)."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._inflate: Any = None

    def frame(self) -> tuple[int, bytes]:
        header = self._exactly(_HEADER.size, at_boundary=True)
        kind, length = _HEADER.unpack(header)
        if kind not in (MESSAGE, DATA, ZDATA, END) or length > MAX_FRAME:
            raise FrameError(f"not a session frame (kind {kind}, {length} bytes)")
        return kind, self._exactly(length, at_boundary=False)

    def message(self) -> dict[str, Any]:
        """The next frame, which must be a JSON object."""
        kind, body = self.frame()
        if kind != MESSAGE:
            raise FrameError(f"expected a message, got a frame of kind {kind}")
        try:
            doc = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise FrameError(f"a message that is not JSON: {body[:80]!r}") from None
        if not isinstance(doc, dict):
            raise FrameError("a message that is not a JSON object")
        return doc

    def file_chunks(self) -> Iterator[bytes]:
        """The bytes of one file, frame by frame, until its ``END``."""
        while True:
            kind, body = self.frame()
            if kind == END:
                return
            if kind == DATA:
                if len(body) > MAX_RAW:
                    raise FrameError("a data frame over the size limit")
                yield body
            elif kind == ZDATA:
                yield self._inflated(body)
            else:
                raise FrameError("a message in the middle of a file")

    def _inflated(self, body: bytes) -> bytes:
        if len(body) < _RAW_SIZE.size:
            raise FrameError("a compressed frame without its size")
        (size,) = _RAW_SIZE.unpack_from(body)
        if size > MAX_RAW:
            raise FrameError("a compressed frame that claims more than the limit")
        if self._inflate is None:
            import zstandard

            self._inflate = zstandard.ZstdDecompressor()
        try:
            data: bytes = self._inflate.decompress(body[_RAW_SIZE.size :], max_output_size=size)
        except Exception as err:  # zstandard.ZstdError: corrupt data
            raise FrameError(f"corrupt zstd data: {err}") from None
        if len(data) != size:
            raise FrameError("a compressed frame that does not inflate to its size")
        return data

    def _exactly(self, size: int, at_boundary: bool) -> bytes:
        parts: list[bytes] = []
        left = size
        while left:
            chunk = self._read(left)
            if not chunk:
                if at_boundary and left == size:
                    raise Closed("the other side closed the session")
                raise FrameError("the session ended in the middle of a frame")
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)
