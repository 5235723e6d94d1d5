"""The peer link to a peer with imgsync (:class:`imgsync.source.link.PeerLink`): one SSH
connection and one ``apply --session`` process on the peer for the whole cycle, spoken to
in frames (:mod:`imgsync.frames`, :mod:`imgsync.receiver.session`).

Files travel as data frames after a ``receive`` request, zstd-compressed per chunk where it
pays (``compression = "zstd"``), paced to ``max_rate``. Replies are the same JSON documents
the separate commands print, checked by :mod:`imgsync.protocol` before they are believed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from imgsync import __version__, frames, log, protocol
from imgsync.adapters.remote import RemoteProcess
from imgsync.adapters.signals import Cancelled
from imgsync.adapters.transport import SshSession
from imgsync.bundle import marker
from imgsync.bundle.bundledir import marker_name
from imgsync.bundle.payload import BytesPayload, Payload
from imgsync.config import PeerSettings
from imgsync.errors import RemoteCommandError, TransportError
from imgsync.model import ApplyOutcome, HeldLayers, Inventory, Marker, StatusRow
from imgsync.source.link import IMAGE_ERRORS, Advance
from imgsync.source.live import LivePayload

SESSION_FLAG = "--session"


class AgentLink:
    engine_version: str | None = None
    store: str | None = None
    streams = True

    def __init__(self, ssh: SshSession, process: RemoteProcess, peer: PeerSettings) -> None:
        self._ssh, self._process, self.peer = ssh, process, peer
        self._reader = frames.FrameReader(self._read)
        self._timeout = peer.io_timeout
        self.peer_version = self._hello()

    @classmethod
    def connect(cls, peer: PeerSettings, stop: threading.Event) -> AgentLink:
        ssh = SshSession(peer, stop)
        ssh.connect()
        try:
            process = ssh.start([*peer.apply_argv, SESSION_FLAG])
            return cls(ssh, process, peer)
        except BaseException:
            ssh.close()
            raise

    # -- PeerLink -----------------------------------------------------------------------
    def inventory(self, images: Sequence[str]) -> Inventory:
        raw = self._ask({"op": "inventory", "images": list(images), "clean": True})
        facts = protocol.load_facts(raw)
        self.engine_version, self.store = facts.engine_version, facts.store
        return protocol.load_inventory(raw)

    def recognise(self, markers: Mapping[str, Marker], inventory: Inventory) -> Inventory:
        return inventory  # the peer's record already names versions

    def held_layers(self, chains: Sequence[str]) -> HeldLayers:
        return protocol.load_layers(self._ask({"op": "layers", "chains": list(chains)}))

    def send_bundle(
        self, bundle: Payload | LivePayload, sent: Marker, offset: int, advance: Advance | None
    ) -> int:
        level = self.peer.compression_level if self.peer.compression == "zstd" else None
        whole = sent is None or not sent.omitted  # a thin bundle is loaded by apply, in order
        return self._send_file(bundle, offset, level, advance, whole)

    def send_marker(self, sent: Marker) -> int:
        note = BytesPayload(marker_name(sent.reference), marker.dumps(sent))
        return self._send_file(note, 0, None, None, False)

    def apply(self, markers: Sequence[Marker]) -> list[ApplyOutcome]:
        images = [m.reference for m in markers]
        raw = self._ask({"op": "apply", "images": images}, self.peer.apply_timeout)
        return protocol.load_apply(raw)

    def ping(self, timeout: float) -> None:
        """One round trip within ``timeout`` (any answer will do: an older peer says it
        knows no ping): is a kept session still there?"""
        self._process.write(frames.message_frame({"op": "ping"}))
        self._timeout = timeout
        try:
            self._reader.message()
        except frames.Closed as err:
            raise self._ended("ping", err) from None
        finally:
            self._timeout = self.peer.io_timeout

    def relay_status(self) -> list[StatusRow] | None:
        """What the peer's own peers run, when it is a relay (``None``: it is not)."""
        return protocol.load_relay_status(self._ask({"op": "status"}), self.peer.name)

    def close(self) -> None:
        try:
            if self._process.exit_status() is None and not self._ssh.stop.is_set():
                self._process.write(frames.message_frame({"op": "bye"}))
                self._reader.message()
        except (TransportError, Cancelled):
            pass  # closing anyway
        finally:
            self._process.close()
            self._ssh.close()

    # -- the session --------------------------------------------------------------------
    def _hello(self) -> str:
        try:
            hello = self._reader.message()
        except frames.FrameError as err:
            raise self._no_session(err) from None
        version = protocol.check_hello(self.peer.name, hello)
        log.get().info("session open", peer_imgsync=version)
        return version

    def _no_session(self, err: Exception) -> RemoteCommandError:
        """Why the peer's process did not say hello: its last words, with the fix."""
        tail = protocol.printable_text(self._process.stderr_tail()) or str(err)
        program = self.peer.apply_argv[0]
        if SESSION_FLAG in tail:  # an older imgsync (or its serve) knows no --session
            return RemoteCommandError(
                f"peer {self.peer.name}: its imgsync has no session ({tail}): upgrade imgsync "
                f"on {self.peer.name} to {__version__} or later"
            )
        return RemoteCommandError(f"peer {self.peer.name}: {program} did not start: {tail}")

    def _ask(self, request: dict[str, Any], timeout: float | None = None) -> bytes:
        self._process.write(frames.message_frame(request))
        return self._reply(request["op"], timeout)

    def _reply(self, op: str, timeout: float | None) -> bytes:
        self._timeout = self.peer.apply_timeout if timeout is None else timeout
        try:
            reply = self._reader.message()
        except frames.Closed as err:
            raise self._ended(op, err) from None
        finally:
            self._timeout = self.peer.io_timeout
        error = reply.get("error")
        if error is not None:
            raise RemoteCommandError(
                f"peer {self.peer.name}: {op} failed: {protocol.printable_text(str(error))}"
            )
        return json.dumps(reply).encode()

    def _ended(self, op: str, err: Exception) -> RemoteCommandError:
        tail = protocol.printable_text(self._process.stderr_tail()) or str(err)
        return RemoteCommandError(f"peer {self.peer.name}: its session ended during {op}: {tail}")

    def _send_file(
        self,
        item: Payload | LivePayload,
        offset: int,
        level: int | None,
        advance: Advance | None,
        load: bool,
    ) -> int:
        request = {"op": "receive", "name": item.name, "size": item.size, "offset": offset}
        request["load"] = load  # the peer may load it as it arrives
        try:
            wire, failure = self._stream(item, request, offset, level, advance)
        except TransportError as err:  # the peer's process may have said why it ended
            raise self._ended("receive", err) from None
        try:
            self._reply("receive", None)
        except RemoteCommandError:
            if failure is None:
                raise
        if failure is not None:  # the peer dropped what it got; this image fails alone
            raise failure
        return wire

    def _stream(
        self,
        item: Payload | LivePayload,
        request: dict[str, Any],
        offset: int,
        level: int | None,
        advance: Advance | None,
    ) -> tuple[int, Exception | None]:
        """The request, the file's frames, ``END`` and, for a file of unknown size, the
        trailer (its size and sha256, or why it was abandoned). An error reading the file
        ends it early (the peer keeps nothing of it): returned, for the caller to raise."""
        head = frames.message_frame(request)
        self._process.write(head)
        wire, failure = len(head), None
        started, done, rate = time.monotonic(), 0, self.peer.max_rate_bytes
        try:
            for frame, carried in frames.data_frames(item.chunks(offset), level):
                self._process.write(frame)
                wire, done = wire + len(frame), done + carried
                if advance is not None:
                    advance(done)
                if rate:  # pace: never ahead of the rate since the start
                    ahead = wire / rate - (time.monotonic() - started)
                    if ahead > 0 and self._ssh.stop.wait(ahead):
                        raise Cancelled(f"upload of {item.name} to {self.peer.name} abandoned")
        except IMAGE_ERRORS as err:
            failure = err
        tail = frames.end_frame()
        if item.size is None:
            trailer = _trailer(item, failure)
            tail += frames.message_frame(trailer)
        self._process.write(tail)
        return wire + len(tail), failure

    def _read(self, size: int) -> bytes:
        return self._process.read(size, self._timeout)


def _trailer(item: Payload | LivePayload, failure: Exception | None) -> dict[str, Any]:
    if failure is not None or not isinstance(item, LivePayload):
        return {"abort": str(failure or "no size")}
    final = item.final
    return {"size": final.size, "sha256": final.sha256}
