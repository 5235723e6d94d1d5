"""Host keys: strict checking against ``known_hosts``, or trust on first use when a peer
says ``trust_unknown_hosts = true`` — then the key is recorded, and checked from then on.

Fingerprints are shown the way OpenSSH shows them (``SHA256:…``), so an operator can
compare them with ``ssh-keygen -lf`` on the peer.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path
from typing import Any

import paramiko

from imgsync import log
from imgsync.adapters import fsutil
from imgsync.config import PeerSettings
from imgsync.errors import HostKeyError

_RECORD_LOCK = threading.Lock()  # peers run in threads; one known_hosts file


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def load(client: paramiko.SSHClient, peer: PeerSettings) -> None:
    """Load the peer's known_hosts into ``client`` and set the policy for unknown keys."""
    path = Path(peer.known_hosts)
    try:
        client.get_host_keys().load(str(path))
    except FileNotFoundError:
        if not peer.trust_unknown_hosts:
            raise HostKeyError(
                f"peer {peer.name}: known_hosts file {path} does not exist"
            ) from None
    except (OSError, paramiko.SSHException) as err:
        raise HostKeyError(f"peer {peer.name}: cannot read {path}: {err}") from None
    policy = _TrustOnFirstUse(peer) if peer.trust_unknown_hosts else _RejectUnknown(peer)
    client.set_missing_host_key_policy(policy)


def changed(peer: PeerSettings, err: paramiko.BadHostKeyException) -> HostKeyError:
    return HostKeyError(
        f"peer {peer.name}: host key for {peer.host}:{peer.port} has CHANGED: it offers "
        f"{fingerprint(err.key)}, {peer.known_hosts} has {fingerprint(err.expected_key)}; "
        "nothing was sent (if the peer was reinstalled, verify the new key and replace the "
        "line)"
    )


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, peer: PeerSettings) -> None:
        self.peer = peer

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        raise HostKeyError(
            f"peer {self.peer.name}: host key for {hostname} is not in "
            f"{self.peer.known_hosts} ({key.get_name()} {fingerprint(key)}); verify it and "
            "add it (ssh-keyscan), or set trust_unknown_hosts = true for this peer"
        )


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    def __init__(self, peer: PeerSettings) -> None:
        self.peer = peer

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        peer = self.peer
        line = f"{known_hosts_name(peer.host, peer.port)} {key.get_name()} {key.get_base64()}\n"
        path = Path(peer.known_hosts)
        with _RECORD_LOCK:
            try:
                existing = path.read_bytes()
            except FileNotFoundError:
                existing = b""
            except OSError as err:
                raise HostKeyError(f"peer {peer.name}: cannot read {path}: {err}") from None
            if existing and not existing.endswith(b"\n"):
                existing += b"\n"
            fsutil.write_atomic(path, existing + line.encode(), mode=0o644)
        log.get().warning(
            "host key trusted on first use and recorded",
            peer=peer.name,
            key=f"{key.get_name()} {fingerprint(key)}",
            known_hosts=str(path),
        )
