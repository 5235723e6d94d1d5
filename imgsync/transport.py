"""The SSH adapter (paramiko): connect with key auth and strict host keys, move files
by SFTP under temp names, run one command. Every SSH call imgsync makes is here.

``paramiko`` and socket exceptions stop at this module; callers see the
:class:`TransportError` family, each naming the peer.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import shlex
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from imgsync.config import PeerSettings
from imgsync.errors import (
    AuthError,
    ConnectError,
    HostKeyError,
    RemoteCommandError,
    TransportError,
)
from imgsync.fsutil import TEMP_PREFIX, temp_name
from imgsync.signals import Cancelled

UPLOAD_CHUNK = 1024 * 1024
OUTPUT_LIMIT = 4 * 1024 * 1024
# Prefer AES-GCM where both sides offer it: the fastest cipher on hardware with AES-NI.
_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


def fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH prints it: ``SHA256:…``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes


class _RejectUnknownHost(paramiko.MissingHostKeyPolicy):
    def __init__(self, peer: PeerSettings) -> None:
        self.peer = peer

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        raise HostKeyError(
            f"peer {self.peer.name}: host key for {hostname} is not in "
            f"{self.peer.known_hosts} ({key.get_name()} {fingerprint(key)}); "
            "verify it and add it (ssh-keyscan) before syncing"
        )


class SshSession:
    """One authenticated SSH connection to one peer, for one cycle."""

    def __init__(self, peer: PeerSettings, stop: threading.Event | None = None) -> None:
        self.peer = peer
        self.stop = stop or threading.Event()
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> SshSession:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        peer = self.peer
        key = _load_identity(peer)
        client = paramiko.SSHClient()
        try:
            client.get_host_keys().load(peer.known_hosts)
        except FileNotFoundError:
            raise HostKeyError(
                f"peer {peer.name}: known_hosts file {peer.known_hosts} does not exist"
            ) from None
        except (OSError, paramiko.SSHException) as err:
            raise HostKeyError(f"peer {peer.name}: cannot read {peer.known_hosts}: {err}") from None
        client.set_missing_host_key_policy(_RejectUnknownHost(peer))
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
            raise HostKeyError(
                f"peer {peer.name}: host key for {peer.host}:{peer.port} has CHANGED: "
                f"it offers {fingerprint(err.key)}, {peer.known_hosts} has "
                f"{fingerprint(err.expected_key)}; nothing was sent"
            ) from None
        except paramiko.AuthenticationException as err:
            client.close()
            raise AuthError(
                f"peer {peer.name}: key {peer.identity_file} was not accepted for user "
                f"{peer.user} ({err})"
            ) from None
        except TimeoutError:
            client.close()
            raise ConnectError(
                f"peer {peer.name}: {peer.host}:{peer.port} did not answer within "
                f"{peer.connect_timeout:g}s"
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as err:
            client.close()
            raise ConnectError(
                f"peer {peer.name}: cannot connect to {peer.host}:{peer.port}: {err}"
            ) from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(max(1, int(peer.io_timeout // 3)))
        self._client = client

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            client = self._require()
            try:
                self._sftp = client.open_sftp()
            except (OSError, paramiko.SSHException, EOFError) as err:
                raise TransportError(f"peer {self.peer.name}: cannot start SFTP: {err}") from None
            self._sftp.get_channel().settimeout(self.peer.io_timeout)  # type: ignore[union-attr]
        return self._sftp

    def _require(self) -> paramiko.SSHClient:
        if self._client is None:
            raise TransportError(f"peer {self.peer.name}: not connected")
        return self._client

    def file_size(self, remote_path: str) -> int | None:
        """Size of a regular file on the peer, ``None`` when it is not there."""
        sftp = self._sftp_client()
        try:
            attrs = sftp.stat(remote_path)
        except FileNotFoundError:
            return None
        except (OSError, paramiko.SSHException, EOFError) as err:
            raise self._error("stat", remote_path, err) from None
        if attrs.st_mode is None or not stat.S_ISREG(attrs.st_mode):
            return None
        return attrs.st_size

    def upload(
        self,
        local: Path,
        remote_dir: str,
        name: str,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Copy ``local`` to ``remote_dir/name``: written under a temp name in that folder,
        then renamed into place. Return the bytes sent."""
        sftp = self._sftp_client()
        temp = posixpath.join(remote_dir, temp_name(name))
        final = posixpath.join(remote_dir, name)
        sent = 0
        try:
            with local.open("rb") as source, sftp.open(temp, "wb") as remote:
                remote.set_pipelined(True)
                remote.chmod(0o640)
                while chunk := source.read(UPLOAD_CHUNK):
                    if self.stop.is_set():
                        raise Cancelled(f"upload of {name} to {self.peer.name} abandoned")
                    remote.write(chunk)
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent)
            sftp.posix_rename(temp, final)
        except (OSError, paramiko.SSHException, EOFError) as err:
            self._remove_quietly(temp)
            raise self._error("upload to", final, err) from None
        except Cancelled:
            self._remove_quietly(temp)
            raise
        return sent

    def remove_temp_files(self, remote_dir: str) -> list[str]:
        """Remove the temp files an interrupted upload left in ``remote_dir``."""
        sftp = self._sftp_client()
        try:
            names = [n for n in sftp.listdir(remote_dir) if n.startswith(TEMP_PREFIX)]
        except FileNotFoundError:
            return []
        except (OSError, paramiko.SSHException, EOFError) as err:
            raise self._error("list", remote_dir, err) from None
        for name in names:
            self._remove_quietly(posixpath.join(remote_dir, name))
        return names

    def _remove_quietly(self, remote_path: str) -> None:
        try:
            if self._sftp is not None:
                self._sftp.remove(remote_path)
        except (OSError, paramiko.SSHException, EOFError):
            pass

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run one command on the peer. The command line is ``shlex.join(argv)``: every
        word is quoted, none is interpreted by the peer's shell."""
        client = self._require()
        command = shlex.join(argv)
        try:
            transport = client.get_transport()
            if transport is None:
                raise paramiko.SSHException("connection closed")
            channel = transport.open_session(timeout=self.peer.connect_timeout)
            channel.exec_command(command)
            channel.shutdown_write()
            return _collect(channel, time.monotonic() + timeout, self.stop)
        except TimeoutError:
            raise RemoteCommandError(
                f"peer {self.peer.name}: {argv[0]} did not finish within {timeout:g}s"
            ) from None
        except (OSError, paramiko.SSHException, EOFError) as err:
            raise TransportError(
                f"peer {self.peer.name}: running {argv[0]} failed: {err}"
            ) from None

    def _error(self, what: str, path: str, err: BaseException) -> TransportError:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        if reason == "Failure":  # SFTP's generic status: OpenSSH sends it for ENOSPC/EDQUOT
            reason = "the peer refused the write (SFTP 'Failure': disk full or quota?)"
        return TransportError(f"peer {self.peer.name}: {what} {path} failed: {reason}")


def _collect(channel: paramiko.Channel, deadline: float, stop: threading.Event) -> CommandResult:
    stdout, stderr = bytearray(), bytearray()
    channel.settimeout(0.2)
    while True:
        if stop.is_set():
            channel.close()
            raise Cancelled("remote command abandoned")
        if time.monotonic() > deadline:
            channel.close()
            raise TimeoutError
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
        drained = not (progressed or channel.recv_ready() or channel.recv_stderr_ready())
        if drained and channel.eof_received and channel.exit_status_ready():
            break
    status = channel.recv_exit_status()
    channel.close()
    return CommandResult(status, bytes(stdout), bytes(stderr))


def _fast_transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    options.ciphers = tuple(c for c in _CIPHERS if c in offered) + tuple(
        c for c in offered if c not in _CIPHERS
    )
    return transport


def _load_identity(peer: PeerSettings) -> paramiko.PKey:
    path = peer.identity_file
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise AuthError(f"peer {peer.name}: identity file {path} does not exist") from None
    except OSError as err:
        raise AuthError(f"peer {peer.name}: cannot read identity file {path}: {err}") from None
    if mode & 0o077:
        raise AuthError(
            f"peer {peer.name}: identity file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {shlex.quote(path)}"
        )
    try:
        return paramiko.PKey.from_path(path)
    except (OSError, paramiko.SSHException, ValueError) as err:
        raise AuthError(f"peer {peer.name}: cannot load identity file {path}: {err}") from None
