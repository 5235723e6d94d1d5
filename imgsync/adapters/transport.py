"""The SSH adapter (paramiko): connect with key auth and strict host keys, run one
command, stream one file into one command. Every SSH call imgsync makes is here.

There is no SFTP: a file goes to the peer as the stdin of ``apply --receive``, which picks
the folder itself. So the same sync works through a key locked to ``imgsync serve``.
``paramiko`` and socket exceptions stop at this module; callers see the
:class:`TransportError` family, each naming the peer.
"""

from __future__ import annotations

import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import paramiko

from imgsync.adapters import credentials, hostkeys
from imgsync.adapters.remote import RemoteProcess
from imgsync.adapters.signals import Cancelled
from imgsync.config import PeerSettings
from imgsync.errors import (
    AuthError,
    ConnectError,
    HostKeyError,
    RemoteCommandError,
    TransportError,
)
from imgsync.text import printable_text

SEND_CHUNK = 1024 * 1024
_POLL = 0.2  # seconds: how often a waiting session looks at ``stop``
OUTPUT_LIMIT = 4 * 1024 * 1024
WINDOW = 16 * 1024 * 1024  # bytes in flight per channel: fills a fast link's pipe
# Only modern algorithms are offered (docs/config.md, "SSH algorithms"): AEAD or CTR
# ciphers, AES-GCM first (the fastest with AES-NI); MACs computed over the ciphertext (ETM).
# paramiko's key exchanges and host key types are all modern already (no SHA-1, no DSA).
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com")
_TRANSPORT_ERRORS = (OSError, paramiko.SSHException, EOFError)


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes

    def last_error_line(self) -> str:
        """The last line the command wrote to stderr, printable (text.py)."""
        lines = self.stderr.decode("utf-8", "replace").strip().splitlines()
        return printable_text(lines[-1]) if lines else f"exit status {self.exit_status}"


class SshSession:
    """One authenticated SSH connection to one peer, for one cycle. ``stop`` (SIGTERM)
    abandons what runs: the send stops between chunks, a command is no longer waited for."""

    def __init__(self, peer: PeerSettings, stop: threading.Event | None = None) -> None:
        self.peer = peer
        self.stop = stop or threading.Event()
        self._client: paramiko.SSHClient | None = None

    def __enter__(self) -> SshSession:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        peer = self.peer
        key = credentials.load_identity(peer)
        client = paramiko.SSHClient()
        hostkeys.load(client, peer)
        try:
            client.connect(
                peer.host,
                port=peer.port,
                username=peer.user,
                pkey=key,
                timeout=peer.connect_timeout,
                banner_timeout=peer.connect_timeout,
                auth_timeout=peer.connect_timeout,
                channel_timeout=peer.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
                transport_factory=_fast_transport,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as err:
            client.close()
            raise hostkeys.changed(peer, err) from None
        except paramiko.AuthenticationException as err:
            client.close()
            raise AuthError(
                f"peer {peer.name}: key {peer.identity_file} was not accepted for user "
                f"{peer.user} ({err}); add its public key to the peer's authorized_keys"
            ) from None
        except TimeoutError:
            client.close()
            raise ConnectError(
                f"peer {peer.name}: {peer.host}:{peer.port} did not answer within "
                f"{peer.connect_timeout:g}s"
            ) from None
        except _TRANSPORT_ERRORS as err:
            client.close()
            why = str(err)
            if why.startswith("Incompatible"):  # paramiko: no algorithm in common
                why += ": it offers none of the SSH algorithms imgsync accepts (docs/config.md)"
            raise ConnectError(
                f"peer {peer.name}: cannot connect to {peer.host}:{peer.port}: {why}"
            ) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(max(1, int(peer.io_timeout // 3)))
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def start(self, argv: Sequence[str]) -> RemoteProcess:
        """Start one long-running command on the peer (the session), its stdin and stdout
        a byte stream each way: :class:`RemoteProcess`."""
        if self._client is None:
            raise TransportError(f"peer {self.peer.name}: not connected")
        try:
            transport = self._client.get_transport()
            if transport is None or not transport.is_active():
                raise paramiko.SSHException("the connection is closed")
            channel = transport.open_session(window_size=WINDOW, timeout=self.peer.connect_timeout)
            channel.settimeout(_POLL)
            channel.exec_command(shlex.join(argv))
        except _TRANSPORT_ERRORS as err:
            reason = str(err) or type(err).__name__
            raise TransportError(f"peer {self.peer.name}: {argv[0]} failed: {reason}") from None
        return RemoteProcess(channel, self.peer, self.stop)

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run one command on the peer. The command line is ``shlex.join(argv)``: every
        word is quoted, none is interpreted by the peer's shell."""
        return self._exec(argv, timeout, feed=None)

    def send(
        self,
        what: str,
        chunks: Iterator[bytes],
        argv: Sequence[str],
        timeout: float,
        max_rate: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[int, CommandResult]:
        """Stream ``chunks`` into the stdin of ``argv`` on the peer, at most ``max_rate``
        bytes per second; return the bytes sent and the command's result."""
        sent = 0
        started = time.monotonic()

        def feed(channel: paramiko.Channel) -> None:
            nonlocal sent
            for chunk in chunks:
                if self.stop.is_set():
                    raise Cancelled(f"upload of {what} to {self.peer.name} abandoned")
                channel.sendall(chunk)
                sent += len(chunk)
                if progress is not None:
                    progress(sent)
                if max_rate:  # pace: never ahead of the rate since the start
                    ahead = sent / max_rate - (time.monotonic() - started)
                    if ahead > 0 and self.stop.wait(ahead):
                        raise Cancelled(f"upload of {what} to {self.peer.name} abandoned")

        result = self._exec(argv, timeout, feed=feed)  # runs feed: counts ``sent``
        return sent, result

    def _exec(
        self,
        argv: Sequence[str],
        timeout: float,
        feed: Callable[[paramiko.Channel], None] | None,
    ) -> CommandResult:
        if self._client is None:
            raise TransportError(f"peer {self.peer.name}: not connected")
        program = argv[0]
        try:
            transport = self._client.get_transport()
            if transport is None or not transport.is_active():
                raise paramiko.SSHException("the connection is closed")
            channel = transport.open_session(window_size=WINDOW, timeout=self.peer.connect_timeout)
            channel.settimeout(self.peer.io_timeout)
            channel.exec_command(shlex.join(argv))
            if feed is not None:
                try:
                    feed(channel)
                except _TRANSPORT_ERRORS:
                    if not channel.exit_status_ready():
                        raise
                    # the command ended before taking everything: its answer says why
            channel.shutdown_write()
            return _collect(channel, time.monotonic() + timeout, self.stop)
        except TimeoutError:
            raise RemoteCommandError(
                f"peer {self.peer.name}: {program} made no progress within the timeout "
                f"(io_timeout {self.peer.io_timeout:g}s, apply_timeout {timeout:g}s)"
            ) from None
        except _TRANSPORT_ERRORS as err:
            reason = str(err) or type(err).__name__
            raise TransportError(f"peer {self.peer.name}: {program} failed: {reason}") from None


def ssh_banner(host: str, port: int, timeout: float) -> bytes:
    """The first line a server sends on connect (b"" when it closes at once); raise
    :class:`ConnectError` when nothing can be reached."""
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout) as sock:
            return sock.recv(256)
    except TimeoutError:
        raise ConnectError(f"{where} did not answer within {timeout:g}s") from None
    except OSError as err:
        raise ConnectError(f"cannot connect to {where}: {err.strerror or err}") from None


def _collect(channel: paramiko.Channel, deadline: float, stop: threading.Event) -> CommandResult:
    stdout, stderr = bytearray(), bytearray()
    channel.settimeout(0.2)
    while True:
        _give_up_if(channel, deadline, stop)
        progressed = _pull(channel, stdout, stderr)
        drained = not (progressed or channel.recv_ready() or channel.recv_stderr_ready())
        if drained and channel.exit_status_ready() and (channel.eof_received or channel.closed):
            break
        if drained and channel.closed:  # the transport died under us: no answer will come
            raise EOFError("the connection was lost before the command finished")
    status = channel.recv_exit_status()
    channel.close()
    if status == -1:  # paramiko's "no exit status": the connection went first
        raise EOFError("the connection was lost before the command finished")
    return CommandResult(status, bytes(stdout), bytes(stderr))


def _give_up_if(channel: paramiko.Channel, deadline: float, stop: threading.Event) -> None:
    """Close the channel and raise when the command was abandoned or ran out of time."""
    if stop.is_set():
        channel.close()
        raise Cancelled("remote command abandoned")
    if time.monotonic() > deadline:
        channel.close()
        raise TimeoutError


def _pull(channel: paramiko.Channel, stdout: bytearray, stderr: bytearray) -> bool:
    """Read what waits on stdout and stderr (each kept up to :data:`OUTPUT_LIMIT`); return
    whether anything came."""
    progressed = False
    for receive, buffer in ((channel.recv, stdout), (channel.recv_stderr, stderr)):
        try:
            data = receive(65536)
        except TimeoutError:
            continue
        if data:
            progressed = True
            if len(buffer) < OUTPUT_LIMIT:
                buffer.extend(data[: OUTPUT_LIMIT - len(buffer)])
    return progressed


def _fast_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    """A transport that offers only :data:`CIPHERS` and :data:`MACS`, in that order."""
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = tuple(c for c in CIPHERS if c in options.ciphers)
    options.digests = tuple(m for m in MACS if m in options.digests)
    return transport
