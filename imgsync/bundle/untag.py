"""A ``docker save`` tarball without its names, rewritten as it streams by.

A peer loads a bundle *while it arrives* (:mod:`imgsync.receiver.preload`), before the marker that
says what it is and before it is verified, so that load must not move any reference:
``manifest.json`` loses its ``RepoTags``, ``index.json`` its image-name annotations, and
``repositories`` is left out. Everything else passes byte for byte. Docker then loads the
image untagged; the tag moves only once apply has checked it (invariant 1).

The parser reads the raw 512-byte tar headers itself (tarfile cannot write a stream it is
reading). A metadata member over :data:`MAX_METADATA`, or one that is not JSON as
expected, raises :class:`UntagError`: the early load is abandoned (the file is still
loaded the ordinary way by apply).
"""

from __future__ import annotations

import json
from typing import Any

BLOCK = 512
MAX_METADATA = 1024 * 1024
_NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
_HEADER, _PASS, _HOLD, _SKIP, _TAIL = range(5)


class UntagError(ValueError):
    """The stream cannot be loaded untagged."""


class Untagger:
    """Feed the tarball's bytes in; get the untagged tarball's bytes out."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._state = _HEADER
        self._left = 0  # bytes of the current member (padded) still to pass, hold or skip
        self._header = b""
        self._held = bytearray()
        self._name = ""
        self._size = 0

    def feed(self, data: bytes) -> bytes:
        if self._state == _PASS and not self._pending and len(data) < self._left:
            self._left -= len(data)  # inside a layer: as it is, no copy
            return data
        self._pending += data
        out = bytearray()
        while self._step(out):
            pass
        return bytes(out)

    def end(self) -> bytes:
        """What is left, once the whole tarball was fed."""
        if self._state == _TAIL:
            rest = bytes(self._pending)
            self._pending.clear()
            return rest
        if self._state == _HEADER and not self._pending:
            return b""
        raise UntagError("the tarball ends inside a member")

    def _step(self, out: bytearray) -> bool:
        if self._state == _TAIL:
            out += self._pending
            self._pending.clear()
            return False
        if self._state == _HEADER:
            return self._read_header(out)
        take = min(self._left, len(self._pending))
        if not take and self._left:
            return False
        chunk = self._pending[:take]
        del self._pending[:take]
        self._left -= take
        if self._state == _PASS:
            out += chunk
        elif self._state == _HOLD:
            self._held += chunk
        if not self._left:
            if self._state == _HOLD:
                out += self._rewritten()
            self._state = _HEADER
        return True

    def _read_header(self, out: bytearray) -> bool:
        if len(self._pending) < BLOCK:
            return False
        block = bytes(self._pending[:BLOCK])
        del self._pending[:BLOCK]
        if block == b"\0" * BLOCK:  # the end-of-archive blocks: the rest as it is
            out += block
            self._state = _TAIL
            return True
        name, size, kind = _parse(block)
        self._left = -(-size // BLOCK) * BLOCK
        regular = kind in (b"0", b"\0")
        if regular and name == "repositories":
            self._state = _SKIP
        elif regular and name in ("manifest.json", "index.json"):
            if size > MAX_METADATA:
                raise UntagError(f"{name} of {size} bytes is over the limit")
            self._state, self._header, self._name, self._size = _HOLD, block, name, size
            self._held = bytearray()
        else:
            out += block
            self._state = _PASS
        if not self._left and self._state == _HOLD:
            out += self._rewritten()
            self._state = _HEADER
        elif not self._left:
            self._state = _HEADER
        return True

    def _rewritten(self) -> bytes:
        try:
            document = json.loads(bytes(self._held[: self._size]))
            data = json.dumps(_untagged(self._name, document), separators=(",", ":")).encode()
        except (ValueError, TypeError, AttributeError, RecursionError) as err:
            raise UntagError(f"{self._name} cannot be read: {err}") from None
        return _header(self._header, len(data)) + data + b"\0" * (-len(data) % BLOCK)


def _untagged(name: str, document: Any) -> Any:
    if name == "manifest.json":
        if not isinstance(document, list):
            raise TypeError("manifest.json is not a list")
        return [{**entry, "RepoTags": None} for entry in document]
    for descriptor in document.get("manifests") or ():
        annotations = descriptor.get("annotations") or {}
        for key in _NAME_ANNOTATIONS:
            annotations.pop(key, None)
    return document


def _parse(block: bytes) -> tuple[str, int, bytes]:
    name = block[:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar":
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    raw = block[124:136]
    if raw[0] & 0x80:  # base-256, for sizes over 8 GiB
        size = int.from_bytes(raw[1:], "big")
    else:
        digits = raw.split(b"\0", 1)[0].strip() or b"0"
        try:
            size = int(digits, 8)
        except ValueError:
            raise UntagError(f"a tar header with size {digits[:20]!r}") from None
    return name.decode("utf-8", "replace"), size, block[156:157]


def _header(block: bytes, size: int) -> bytes:
    """``block`` with its size field set to ``size`` and its checksum recomputed."""
    header = bytearray(block)
    header[124:136] = f"{size:011o}".encode() + b"\0"
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}".encode() + b"\0 "
    return bytes(header)
