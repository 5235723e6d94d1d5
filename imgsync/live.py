"""An export in progress that peers stream from while ``docker save`` still writes it.

The export (:mod:`imgsync.export`) writes the bundle under its temp name and calls
:meth:`LiveExport.advance` as bytes land; each peer's session reads the same file behind it
(:meth:`LiveExport.chunks`), so the upload starts with the save instead of after it. When
the export is complete and checked, :meth:`LiveExport.finish` gives the final marker —
the peer gets it only then, and last, as always. An export that fails ends every stream
with :class:`ExportFailed`: the peer drops what it received, and the image fails alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

from imgsync.errors import StorageError
from imgsync.model import Marker
from imgsync.signals import Cancelled

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

    # -- the writer ---------------------------------------------------------------------
    def advance(self, written: int) -> None:
        with self._cond:
            self._written = written
            self._cond.notify_all()

    def finish(self, final: Marker) -> None:
        with self._cond:
            self._final = final
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
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:  # already renamed: the export is complete
            final = self.wait(stop)
            handle = (self.path.parent / final.bundle).open("rb")
        except OSError as err:
            raise StorageError(f"cannot read {self.path}: {err.strerror}") from None
        with handle:
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
    """A :class:`~imgsync.payload.Payload` of a bundle still being exported: its size is
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
