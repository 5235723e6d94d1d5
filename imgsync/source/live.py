"""An export in progress that peers stream from while ``docker save`` still writes it.

The export (:mod:`imgsync.source.export`) writes the bundle under its temp name and calls
:meth:`LiveExport.advance` as bytes land; each peer's session reads the same file behind it
(:meth:`LiveExport.chunks`), so the upload starts with the save instead of after it. When
the export is complete and checked, :meth:`LiveExport.finish` gives the final marker —
the peer gets it only then, and last, as always. An export that fails ends every stream
with :class:`ExportFailed`: the peer drops what it received, and the image fails alone.

A peer that already holds some of the image's layers gets a thin bundle the same way
(:class:`LiveThinPayload`): the export tells each member as its data lands
(:meth:`LiveExport.member`), and the stream passes every member but the layers the peer
holds, found by their digests — the bytes :func:`imgsync.bundle.payload.thin` cuts out of the
finished file, sent while ``docker save`` still runs.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from imgsync.adapters.signals import Cancelled
from imgsync.bundle.payload import END_OF_ARCHIVE
from imgsync.bundle.saveformat import Member
from imgsync.errors import StorageError
from imgsync.model import Marker

CHUNK = 1024 * 1024
_POLL = 0.2  # seconds: how often a waiting reader looks at ``stop``


class ExportFailed(StorageError):
    """The export a stream followed failed; ``str()`` is the export's own error."""


class LiveExport:
    def __init__(self, provisional: Marker, path: Path) -> None:
        self.provisional = provisional  # reference, version, layers, bundle name; no digest
        self.path = path  # the temp file being written
        self._cond = threading.Condition()
        self._written = 0
        self._final: Marker | None = None
        self._error: str | None = None
        self._members: list[Member] = []  # regular members whose data is in the file
        self._data_end: int | None = None  # where the end-of-archive blocks start

    # -- the writer ---------------------------------------------------------------------
    def advance(self, written: int) -> None:
        with self._cond:
            self._written = written
            self._cond.notify_all()

    def member(self, member: Member) -> None:
        """``member`` (header and data) is written, and flushed."""
        with self._cond:
            self._members.append(member)
            self._cond.notify_all()

    def finish(self, final: Marker, data_end: int | None = None) -> None:
        with self._cond:
            self._final, self._data_end = final, data_end
            self._cond.notify_all()

    def fail(self, error: str) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    # -- the readers --------------------------------------------------------------------
    @property
    def done(self) -> bool:
        with self._cond:
            return self._final is not None or self._error is not None

    def wait(self, stop: threading.Event) -> Marker:
        """The final marker, once the export is complete."""
        with self._cond:
            while self._final is None:
                self._raise_if_over(stop)
                self._cond.wait(_POLL)
            return self._final

    def chunks(self, stop: threading.Event) -> Iterator[bytes]:
        """The bundle's bytes as they are written, to the end of a complete export."""
        self._available(0, stop)  # the file exists once a first byte is announced
        with self._open(stop) as handle:
            position = 0
            while True:
                available, complete = self._available(position, stop)
                while position < available:
                    data = handle.read(min(CHUNK, available - position))
                    if not data:
                        raise StorageError(f"{self.path} shrank while it was read")
                    position += len(data)
                    yield data
                if complete:
                    return

    def thin_chunks(
        self, leave_out: Callable[[Member], bool], stop: threading.Event
    ) -> Iterator[bytes]:
        """The bundle's bytes without the members ``leave_out`` picks (header and data),
        each range as soon as the members around it are written; then the end of the
        archive."""
        told, position = 0, 0
        members, data_end = self._members_from(told, stop)
        with self._open(stop) as handle:
            while True:
                for member in members:
                    upto = member.offset if leave_out(member) else member.end
                    yield from _read_range(handle, position, upto)
                    position = member.end
                told += len(members)
                if data_end is not None:
                    yield from _read_range(handle, position, data_end)
                    yield END_OF_ARCHIVE
                    return
                members, data_end = self._members_from(told, stop)

    def _members_from(self, told: int, stop: threading.Event) -> tuple[list[Member], int | None]:
        """The members after the first ``told`` (waiting for one); once every member is
        told and the export complete, none and where the archive's data ends."""
        with self._cond:
            while True:
                if len(self._members) > told:
                    return self._members[told:], None
                if self._final is not None:
                    if self._data_end is None:
                        raise StorageError("the export did not tell where its data ends")
                    return [], self._data_end
                self._raise_if_over(stop)
                self._cond.wait(_POLL)

    def _open(self, stop: threading.Event) -> BinaryIO:
        try:
            return self.path.open("rb")
        except FileNotFoundError:  # already renamed: the export is complete
            final = self.wait(stop)
            try:
                return (self.path.parent / final.bundle).open("rb")
            except OSError as err:
                raise StorageError(f"cannot read {final.bundle}: {err.strerror}") from None
        except OSError as err:
            raise StorageError(f"cannot read {self.path}: {err.strerror}") from None

    def _available(self, position: int, stop: threading.Event) -> tuple[int, bool]:
        """Bytes written so far (waiting until there are more than ``position``), and
        whether the export is complete (then: its whole size)."""
        with self._cond:
            while True:
                if self._final is not None:
                    return self._final.size, True
                self._raise_if_over(stop)
                if self._written > position:
                    return self._written, False
                self._cond.wait(_POLL)

    def _raise_if_over(self, stop: threading.Event) -> None:
        if self._error is not None:
            raise ExportFailed(self._error)
        if stop.is_set():
            raise Cancelled(f"stopped while {self.provisional.reference} was exported")


class LivePayload:
    """A :class:`~imgsync.bundle.payload.Payload` of a bundle still being exported: its size is
    known only at the end (``size`` is ``None`` until then); ``final`` is its marker."""

    def __init__(self, live: LiveExport, stop: threading.Event) -> None:
        self._live, self._stop = live, stop
        self.name = live.provisional.bundle

    size: None = None  # announced at the end, with the sha256 (the receive's trailer)

    @property
    def final(self) -> Marker:
        return self._live.wait(self._stop)

    def chunks(self, start: int = 0) -> Iterator[bytes]:
        if start:
            raise StorageError("a bundle still being exported is sent from its start")
        return self._live.chunks(self._stop)


class LiveThinPayload(LivePayload):
    """A thin bundle of an export still being written: the layers at ``omitted`` (which
    the peer holds) left out, found by their digests as the export passes them; its size
    and sha256, known at the end, are counted on the way."""

    def __init__(self, live: LiveExport, omitted: tuple[int, ...], stop: threading.Event):
        super().__init__(live, stop)
        layers = live.provisional.layers
        self._omitted = omitted
        self._left_out = {layers[i].removeprefix("sha256:") for i in omitted}
        self._digest, self._size = hashlib.sha256(), 0

    @property
    def final(self) -> Marker:
        """The marker of the thin bundle sent (once every chunk is)."""
        exported = self._live.wait(self._stop)
        digest = self._digest.hexdigest()
        return replace(exported, size=self._size, sha256=digest, omitted=self._omitted)

    def chunks(self, start: int = 0) -> Iterator[bytes]:
        if start:
            raise StorageError("a bundle still being exported is sent from its start")
        for chunk in self._live.thin_chunks(self._leaves_out, self._stop):
            self._digest.update(chunk)
            self._size += len(chunk)
            yield chunk

    def _leaves_out(self, member: Member) -> bool:
        layer = member.name.endswith("/layer.tar") or member.name.startswith("blobs/sha256/")
        return layer and member.compression is None and member.sha256 in self._left_out


def thin_streams(provisional: Marker, omitted: tuple[int, ...]) -> bool:
    """Whether the layers at ``omitted`` can be told by their digests alone as the export
    passes them: none of their diff IDs is also at a position that is sent."""
    layers = provisional.layers
    sent = {layer for i, layer in enumerate(layers) if i not in omitted}
    return not sent & {layers[i] for i in omitted}


def _read_range(handle: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    handle.seek(start)
    while start < end:
        data = handle.read(min(CHUNK, end - start))
        if not data:
            raise StorageError("the export shrank while it was read")
        start += len(data)
        yield data
