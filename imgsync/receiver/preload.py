"""Load a bundle while it arrives: ``docker load`` of its untagged stream
(:mod:`imgsync.bundle.untag`) in a thread, fed as the session receives it.

The receiving thread hands each chunk to :meth:`Preload.feed`; at most :data:`QUEUED`
chunks wait for the engine, so a slow load slows the upload rather than filling memory.
:meth:`Preload.end` closes the stream once the bundle is whole, and :meth:`Preload.finish`
says which image the engine loaded (untagged): apply adopts it only after the bundle is
verified and the image checked to be the marker's version, and otherwise loads the file
as ever. A load that fails, or a stream that is cut
(:meth:`Preload.abort`), leaves at most an untagged image: no reference moves.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

from imgsync import log
from imgsync.bundle.untag import UntagError, Untagger
from imgsync.engines.base import ReceivingEngine
from imgsync.errors import EngineError

QUEUED = 16  # chunks (of up to 4 MiB) waiting for the engine, at most
_END, _ABORT = b"", None  # queued after the last chunk; queued to give up
_PUT_WAIT = 0.5


class Preload:
    def __init__(self, engine: ReceivingEngine, name: str) -> None:
        self._engine, self.name = engine, name
        self._untagger = Untagger()
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUED)
        self._loaded: list[str] = []
        self._failed: str | None = None
        self._thread = threading.Thread(target=self._load, name=f"preload {name}", daemon=True)
        self._thread.start()

    def feed(self, chunk: bytes) -> None:
        if self._failed is not None:
            return
        try:
            data = self._untagger.feed(chunk)
        except UntagError as err:
            self._give_up(str(err))
            return
        if data:
            self._put(data)

    def end(self) -> None:
        """The whole bundle was fed: let the engine finish its load."""
        if self._failed is not None:
            return
        try:
            rest = self._untagger.end()
        except UntagError as err:
            self._give_up(str(err))
            return
        if rest:
            self._put(rest)
        self._put(_END)

    def finish(self) -> str | None:
        """The ID of the one image the engine loaded, once it is done (after :meth:`end`);
        ``None`` if it loaded none, or not exactly one."""
        self._thread.join()
        if self._failed is not None or len(self._loaded) != 1:
            log.get().info("bundle not loaded on arrival", bundle=self.name, why=self._failed)
            return None
        return self._loaded[0]

    def abort(self) -> None:
        self._give_up("the upload was cut")
        self._thread.join()

    def _give_up(self, why: str) -> None:
        if self._failed is None:
            self._failed = why
        while True:  # make room for the abort, whatever waits in the queue
            try:
                self._queue.put_nowait(_ABORT)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def _put(self, data: bytes | None) -> None:
        while self._failed is None:
            try:
                self._queue.put(data, timeout=_PUT_WAIT)
                return
            except queue.Full:
                continue

    def _chunks(self) -> Iterator[bytes]:
        while True:
            data = self._queue.get()
            if data is _ABORT:
                raise EngineError(f"loading {self.name} on arrival abandoned: {self._failed}")
            if not data:
                return
            yield data

    def _load(self) -> None:
        try:
            self._loaded = self._engine.load(self._chunks(), f"{self.name} (on arrival)")
        except EngineError as err:
            if self._failed is None:
                self._failed = str(err)
        finally:
            self._engine.close()
