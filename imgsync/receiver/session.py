"""``imgsync apply --session``: the peer's side of a whole cycle, in one process.

The source opens one SSH connection and starts this once; from then on the two speak
framed messages (:mod:`imgsync.frames`) over its stdin and stdout. It says hello first —
before its config or Docker is touched, so the source knows at once what it talks to —
then answers each request in order until ``bye`` or the end of its stdin:

=============  ===================================================  ======================
request        fields                                               reply (as the CLI's)
=============  ===================================================  ======================
``inventory``  ``images``, ``clean``                                ``apply --inventory``
``layers``     ``chains``                                           ``apply --has-layer``
``receive``    ``name``, ``size``, ``offset``, ``load``; then the    ``{"received": N}``
               file's data frames and ``END``; with ``size`` null
               (a bundle the source still exports) then a trailer
               ``{"size", "sha256"}`` or ``{"abort"}``
``apply``      ``images``                                           ``apply --json``
``bye``        —                                                    ``{"op": "bye"}``
=============  ===================================================  ======================

An error is a reply ``{"format": 1, "error": "..."}``; the session goes on. A bundle is
scanned as it arrives (sha256, manifests, every layer against its diff ID), so ``apply``
verifies it without reading it again; a whole one (``load``: the source says it leaves no
layer out) is also loaded, untagged, as it arrives (:mod:`imgsync.receiver.preload`). A thin bundle
is loaded by ``apply``, in the cycle's order: the layers it counts on may come with, or go
with, the images applied before it. Everything is decided from the peer's own config,
exactly as the separate commands do; the source only asks.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from imgsync import frames, protocol
from imgsync.bundle.verify import Received
from imgsync.errors import EngineError, ExitCode, ImgsyncError, ProtocolError
from imgsync.model import StatusRow

Reply = dict[str, Any]


class Session:
    """One session over ``stdin``/``stdout``; ``receiver`` loads the peer's config (its
    errors become every request's reply)."""

    def __init__(
        self,
        receiver: Callable[[], Any],
        stdin: BinaryIO,
        stdout: BinaryIO,
        relay_status: Callable[[], list[StatusRow] | None] | None = None,
    ) -> None:
        self._load_receiver = receiver
        self._relay_status = relay_status  # a relay's own status rows (None: no relay)
        self._receiver: Any = None
        self._reader = frames.FrameReader(stdin.read)
        self._stdout = stdout
        self._received: dict[str, Received] = {}
        self._store: str | None = None  # the engine's image store, once asked

    def run(self) -> int:
        self._send(protocol.session_hello())
        # While the source connects its other peers and exports, load what the first
        # request will need: the config, docker-py, the apply code (half a second).
        warm = threading.Thread(target=self._warm_up, name="warm-up", daemon=True)
        warm.start()
        while True:
            try:
                request = self._reader.message()
                warm.join()
            except frames.Closed:
                return ExitCode.OK
            op = request.get("op")
            if op == "bye":
                self._send({"op": "bye"})
                return ExitCode.OK
            try:
                reply = self._answer(op, request)
            except frames.FrameError:
                raise  # the framing broke: nothing more can be understood
            except ImgsyncError as err:
                reply = {"format": protocol.FORMAT, "error": str(err)}
            except Exception as err:  # a bug: said, with its trace in the peer's log
                _log_bug(op)
                reply = {"format": protocol.FORMAT, "error": f"internal error ({err!r})"}
            self._send(reply)

    def _answer(self, op: Any, request: dict[str, Any]) -> Reply:
        if op == "receive":
            return self._receive(request)
        handlers = {
            "inventory": self._inventory,
            "layers": self._layers,
            "apply": self._apply,
            "status": self._status,
            "ping": self._pong,
        }
        handler = handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            raise ProtocolError(f"unknown session request {str(op)[:40]!r}")
        return handler(request)

    def _receiver_config(self) -> Any:
        if self._receiver is None:
            self._receiver = self._load_receiver()
        return self._receiver

    def _warm_up(self) -> None:
        try:
            from imgsync.receiver import apply, inventory  # noqa: F401

            self._receiver_config()
        except ImgsyncError:
            pass  # the first request says it

    def _inventory(self, request: dict[str, Any]) -> Reply:
        from imgsync.receiver import inventory

        images = _references(request.get("images"))
        clean = request.get("clean") is True
        if clean:  # a cycle's first question: a kept session starts afresh
            self._receiver, self._received, self._store = None, {}, None
        if clean:  # a cycle's: publish first what an earlier one could not
            from imgsync.receiver import publish

            publish.pending(self._receiver_config(), images)
        return _parsed(inventory.reply(self._receiver_config(), images, clean))

    def _layers(self, request: dict[str, Any]) -> Reply:
        from imgsync.receiver import inventory

        chains = _strings(request.get("chains"), "chains")
        held = inventory.held_layers(self._receiver_config(), chains)
        return _parsed(protocol.dump_layers(held))

    def _pong(self, request: dict[str, Any]) -> Reply:
        """A kept session's check that it is still there (:mod:`imgsync.source.linkpool`)."""
        return {"format": protocol.FORMAT, "op": "pong"}

    def _status(self, request: dict[str, Any]) -> Reply:
        """``status --fleet`` on headquarters: what this peer's own peers run, if it is a
        relay (read from its state DB, as its ``imgsync status`` would say)."""
        rows = self._relay_status() if self._relay_status is not None else None
        return _parsed(protocol.dump_relay_status(rows))

    def _apply(self, request: dict[str, Any]) -> Reply:
        from imgsync.receiver import apply

        outcomes = apply.run(
            self._receiver_config(), _references(request.get("images")), self._received
        )
        return _parsed(protocol.dump_apply(outcomes))

    def _receive(self, request: dict[str, Any]) -> Reply:
        """Take one file; whatever goes wrong, its data frames (and the trailer of a file
        of unknown size) are read to their end, so the session goes on with the next
        request. A whole bundle is loaded untagged as it arrives, where the engine can."""
        from imgsync.receiver import receive

        chunks = self._reader.file_chunks()
        unsized = request.get("size") is None
        preload = None
        try:
            name, size, offset = _receive_args(request)
            receiver = self._receiver_config()
            preload = self._preload(name, offset) if request.get("load") is True else None
            tap = preload.feed if preload is not None else None
            received, scanned = receive.receive_chunks(
                receiver, name, size, offset, chunks, tap=tap
            )
        except BaseException as err:
            if preload is not None:
                preload.abort()
            if isinstance(err, ImgsyncError) and not isinstance(err, frames.FrameError):
                self._skip(chunks, unsized)
            raise
        if unsized:  # the trailer: the size and sha256 it must have, or why it stops
            try:
                scanned = receive.seal(receiver, name, scanned, self._reader.message())
            except BaseException:
                if preload is not None:
                    preload.abort()
                raise
        if preload is not None:
            preload.end()  # the engine finishes its load while the session goes on
        loaded_on_arrival = preload.finish if preload is not None else lambda: None
        self._received[name] = Received(scanned, _once(loaded_on_arrival))
        return {"format": protocol.FORMAT, "received": received}

    def _preload(self, name: str, offset: int) -> Any:
        """A load on arrival for a whole bundle, on an engine whose image IDs are versions
        (the classic store: what it loads untagged is checked by its ID alone)."""
        if not name.endswith(".tar") or offset:
            return None
        from imgsync.engines.select import open_engine
        from imgsync.receiver.preload import Preload

        engine = None
        try:
            engine = open_engine(self._receiver_config())
            if self._store is None:
                self._store = engine.store()
        except EngineError as err:  # the file is received all the same; apply says more
            from imgsync import log

            log.get().warning("no load on arrival", bundle=name, error=str(err))
            self._store = "unreachable"
        if engine is not None and self._store == "classic":
            return Preload(engine, name)
        if engine is not None:
            engine.close()
        return None

    def _skip(self, chunks: Iterator[bytes], unsized: bool) -> None:
        for _ in chunks:  # what is left of the file, up to its END
            pass
        if unsized:
            self._reader.message()  # its trailer

    def _send(self, doc: Reply) -> None:
        self._stdout.write(frames.message_frame(doc))
        self._stdout.flush()


def _log_bug(op: Any) -> None:
    from imgsync import log

    log.get().exception("session request failed", op=str(op)[:40])


def _once(load: Callable[[], str | None]) -> Callable[[], str | None]:
    """``load``'s answer, asked once (apply may ask more than once)."""
    answers: list[str | None] = []

    def answer() -> str | None:
        if not answers:
            answers.append(load())
        return answers[0]

    return answer


def _parsed(document: str) -> Reply:
    reply: Reply = json.loads(document)
    return reply


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(f"session request without a list of {what}")
    return value


def _references(value: Any) -> list[str]:
    from imgsync.reference import InvalidReference, normalize

    try:
        return [normalize(image) for image in _strings(value, "images")]
    except InvalidReference as err:
        raise ProtocolError(f"session request names a bad image: {err}") from None


def _receive_args(request: dict[str, Any]) -> tuple[str, int | None, int]:
    name, size, offset = request.get("name"), request.get("size"), request.get("offset", 0)
    sized = size is None or type(size) is int
    if not isinstance(name, str) or not sized or type(offset) is not int:
        raise ProtocolError("receive without a name, a size (or null) and an offset")
    return name, size, offset
