"""The source offers only modern SSH algorithms: a server that offers nothing else (here a
paramiko server in this process, on loopback) gets no connection."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest

from imgsync.adapters import transport
from imgsync.config import Config, peer_settings
from imgsync.errors import ConnectError

HOST_KEY = paramiko.RSAKey.generate(2048)


def serve_once(listener: socket.socket, ciphers: tuple[str, ...], macs: tuple[str, ...]) -> None:
    conn, _ = listener.accept()
    server = paramiko.Transport(conn)
    server.add_server_key(HOST_KEY)
    options = server.get_security_options()
    options.ciphers, options.digests = ciphers, macs
    try:
        server.start_server(server=paramiko.ServerInterface())
    except (paramiko.SSHException, EOFError):
        pass  # the client went away: what the test wants
    finally:
        server.close()


def peer_at(tmp_path: Path, port: int) -> transport.SshSession:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    peer = {"name": "old", "host": "127.0.0.1", "port": port, "identity_file": str(key),
            "known_hosts": str(tmp_path / "known_hosts"), "trust_unknown_hosts": True}  # fmt: skip
    config = Config.model_validate({"peers": [peer]})
    return transport.SshSession(peer_settings(config, config.peers[0]))


@pytest.mark.parametrize(
    ("ciphers", "macs"),
    [
        (("3des-cbc",), ("hmac-md5",)),
        (("aes128-cbc",), ("hmac-sha1",)),
        (("aes128-ctr",), ("hmac-sha1",)),
    ],
)
def test_a_server_offering_only_old_algorithms_gets_no_connection(
    tmp_path: Path, ciphers: tuple[str, ...], macs: tuple[str, ...]
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=serve_once, args=(listener, ciphers, macs), daemon=True)
    thread.start()
    try:
        with pytest.raises(ConnectError, match="offers none of the SSH algorithms imgsync accepts"):
            peer_at(tmp_path, listener.getsockname()[1]).connect()
    finally:
        listener.close()
        thread.join(5)


def test_only_modern_ciphers_and_macs_are_offered() -> None:
    client = transport._fast_transport(socket.socket())
    options = client.get_security_options()
    assert set(options.ciphers) == set(transport.CIPHERS)
    assert set(options.digests) == set(transport.MACS)
    assert not {"3des-cbc", "aes128-cbc", "hmac-md5", "hmac-sha1"} & {
        *options.ciphers,
        *options.digests,
    }
