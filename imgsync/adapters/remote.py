"""A command running on a peer, on one SSH channel (paramiko): write its stdin, read its
stdout with a deadline, keep the tail of its stderr for error messages, its exit status.
Started by :meth:`imgsync.adapters.transport.SshSession.start`; paramiko's exceptions stop
here too, as :class:`~imgsync.errors.TransportError` naming the peer."""

from __future__ import annotations

import contextlib
import threading
import time

import paramiko

from imgsync.adapters.signals import Cancelled
from imgsync.config import PeerSettings
from imgsync.errors import (
    RemoteCommandError,
    TransportError,
)
from imgsync.text import printable_text

STDERR_KEPT = 64 * 1024  # what a session keeps of the peer's stderr, for error messages
_POLL = 0.2  # seconds: how often a waiting session looks at ``stop``
_TRANSPORT_ERRORS = (OSError, paramiko.SSHException, EOFError)


class RemoteProcess:
    """One command on the peer, spoken to over its stdin and stdout. Reads and writes wait
    at most ``io_timeout`` for progress (a reply: up to the ``timeout`` given) and give up
    at once when ``stop`` is set; what the command writes to stderr is kept (its last
    :data:`STDERR_KEPT` bytes) for error messages."""

    def __init__(self, channel: paramiko.Channel, peer: PeerSettings, stop: threading.Event):
        self._channel, self.peer, self.stop = channel, peer, stop
        self._stderr = bytearray()

    def write(self, data: bytes) -> None:
        view, deadline = memoryview(data), time.monotonic() + self.peer.io_timeout
        while view:
            self._check(deadline, "sending")
            try:
                sent = self._channel.send(view)  # type: ignore[arg-type]  # bytes-like
            except TimeoutError:
                continue
            except _TRANSPORT_ERRORS as err:
                raise self._lost(err) from None
            if sent == 0:
                raise self._lost(EOFError("the session ended"))
            view, deadline = view[sent:], time.monotonic() + self.peer.io_timeout
            self._drain_stderr()

    def read(self, size: int, timeout: float | None = None) -> bytes:
        """At most ``size`` bytes of its stdout, waiting up to ``timeout`` (default
        ``io_timeout``) for the first; ``b""`` when it closed its stdout."""
        deadline = time.monotonic() + (self.peer.io_timeout if timeout is None else timeout)
        while True:
            self._check(deadline, "waiting for its answer")
            self._drain_stderr()
            try:
                return bytes(self._channel.recv(size))
            except TimeoutError:
                continue
            except _TRANSPORT_ERRORS as err:
                raise self._lost(err) from None

    def stderr_tail(self) -> str:
        """The last line the command wrote to stderr (after it ended: all it wrote),
        printable (text.py)."""
        self._drain_stderr(wait=True)
        lines = self._stderr.decode("utf-8", "replace").strip().splitlines()
        return printable_text(lines[-1]) if lines else ""

    def exit_status(self) -> int | None:
        return self._channel.recv_exit_status() if self._channel.exit_status_ready() else None

    def close(self) -> None:
        with contextlib.suppress(*_TRANSPORT_ERRORS):
            self._channel.shutdown_write()
        self._channel.close()

    def _check(self, deadline: float, doing: str) -> None:
        if self.stop.is_set():
            self._channel.close()
            raise Cancelled(f"session with {self.peer.name} abandoned")
        if time.monotonic() > deadline:
            self._channel.close()
            raise RemoteCommandError(
                f"peer {self.peer.name}: no progress while {doing} within the timeout "
                f"(io_timeout {self.peer.io_timeout:g}s)"
            )

    def _drain_stderr(self, wait: bool = False) -> None:
        deadline = time.monotonic() + (1.0 if wait else 0.0)
        while self._channel.recv_stderr_ready() or (
            wait and not self._channel.closed and time.monotonic() < deadline
        ):
            try:
                data = self._channel.recv_stderr(65536)
            except (TimeoutError, *_TRANSPORT_ERRORS):
                break
            if not data:
                break
            self._stderr.extend(data)
            del self._stderr[:-STDERR_KEPT]

    def _lost(self, err: BaseException) -> TransportError:
        reason = str(err) or type(err).__name__
        return TransportError(f"peer {self.peer.name}: the session was lost: {reason}")
