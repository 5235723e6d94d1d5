"""Fast checks of the test lab itself (not of imgsync)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest

from lab import ByteCountingRelay, Lab, SshServer, build_image, layer_ids, tomlw, unavailable_reason
from lab._proc import pick_port

MiB = 1024 * 1024


def _needs_lab() -> None:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


class _Server:
    """Reads everything the client sends, then answers with ``reply_size`` bytes."""

    def __init__(self, reply_size: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.reply_size = reply_size
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while chunk := conn.recv(1 << 20):
                    self.received += len(chunk)
                conn.sendall(b"r" * self.reply_size)


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    return data


def test_relay_counts_bytes_both_ways() -> None:
    server = _Server(reply_size=3 * MiB + 7)
    with ByteCountingRelay("127.0.0.1", 0, "127.0.0.1", server.port) as relay:
        reply = _roundtrip(relay.listen_port, os.urandom(5 * MiB + 3))
        assert len(reply) == 3 * MiB + 7
        assert server.received == 5 * MiB + 3
        assert (relay.bytes_up, relay.bytes_down) == (5 * MiB + 3, 3 * MiB + 7)
        relay.reset()
        assert relay.bytes_total == 0
        _roundtrip(relay.listen_port, b"x" * 10)
        assert (relay.bytes_up, relay.bytes_down) == (10, 3 * MiB + 7)
    server.sock.close()


def test_relay_drop_all_and_block() -> None:
    server = _Server(reply_size=1)
    with ByteCountingRelay("127.0.0.1", 0, "127.0.0.1", server.port) as relay:
        sock = socket.create_connection(("127.0.0.1", relay.listen_port))
        sock.sendall(b"hello")
        deadline = time.monotonic() + 5
        while relay.active_connections == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert relay.drop_all() == 1
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
        sock.close()
        relay.set_blocked(True)
        with socket.create_connection(("127.0.0.1", relay.listen_port)) as blocked:
            blocked.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert blocked.recv(10) == b""
        relay.set_blocked(False)
        assert _roundtrip(relay.listen_port, b"abc") == b"r"
    server.sock.close()


def test_toml_writer_roundtrips() -> None:
    data = {
        "top": 1,
        "a": {
            "s": 'q"uote\\back\nline\ttab\x7f\x01 ünï 😀',
            "i": -3,
            "f": 1.5,
            "b": True,
            "l": ["x", "y"],
            "gone": None,
            "sub": {"k": "v"},
        },
        "arr": [{"name": "p1", "port": 1}, {"name": "p2", "weird key": "w"}],
    }
    parsed = tomllib.loads(tomlw.dumps(data))
    del data["a"]["gone"]  # type: ignore[attr-defined]
    assert parsed == data


@pytest.mark.lab  # starts daemons (sshd; the lab fixture: dockerd too)
def test_rotate_host_key_changes_fingerprint(tmp_path: Path) -> None:
    _needs_lab()
    keys = tmp_path / "authorized_keys"
    keys.write_text("")
    server = SshServer("t", "127.0.0.99", pick_port("127.0.0.99", 22099), tmp_path / "sshd", keys)
    try:
        server.start()
        before, line = server.fingerprint(), server.host_key_line()
        assert before.startswith("SHA256:")
        assert line.startswith(f"[127.0.0.99]:{server.port} ssh-ed25519 AAAA")
        after = server.rotate_host_key()
        assert after != before and server.fingerprint() == after
        assert server.host_key_line() != line
        scan = subprocess.run(
            ["ssh-keyscan", "-p", str(server.port), "-t", "ed25519", "127.0.0.99"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert server.public_key() in scan.stdout
    finally:
        server.stop()
    assert server.pid is None


@pytest.mark.lab  # starts daemons (sshd; the lab fixture: dockerd too)
def test_image_has_layers_and_is_only_on_source(lab: Lab) -> None:
    ref = "lab/selftest-image:1"
    image_id = build_image(lab.source.client(), ref, [("a.bin", 2 * MiB), ("b.bin", 1)], seed=5)
    try:
        assert image_id.startswith("sha256:")
        assert lab.source.image_id(ref) == image_id
        assert len(layer_ids(lab.source.client(), ref)) == 3  # busybox + 2 layers
        for peer in lab.peers:
            assert peer.docker.image_id(ref) is None
    finally:
        lab.source.remove_image(ref)
    assert lab.source.image_id(ref) is None


@pytest.mark.lab  # starts daemons (sshd; the lab fixture: dockerd too)
def test_ssh_through_relay_and_known_hosts(lab: Lab) -> None:
    for peer in lab.peers:
        peer.relay.reset()
        proc = subprocess.run(
            lab.ssh_argv(peer, "echo", "hi"), capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "hi\n"
        assert peer.relay.bytes_up > 0 and peer.relay.bytes_down > 0
        assert f"[{peer.address}]:{peer.port} ssh-ed25519 " in lab.known_hosts.read_text()


@pytest.mark.lab  # starts daemons (sshd; the lab fixture: dockerd too)
def test_write_configs_schema(lab: Lab) -> None:
    other_inbox = str(lab.root / "p2" / "other-inbox")
    path = lab.write_configs(
        ["lab/a:1"],
        ssh_overrides={"connect_timeout": 2},
        peer_overrides={"p2": {"inbox": other_inbox}},
        extra={"sync": {"parallel": 2}},
    )
    config = tomllib.loads(path.read_text())
    assert config["source"] == {
        "docker_host": lab.source.url,
        "images": ["lab/a:1"],
        "export_dir": str(lab.root / "source" / "export"),
    }
    assert config["ssh"]["connect_timeout"] == 2 and config["ssh"]["user"] == "root"
    assert [p["name"] for p in config["peers"]] == ["p1", "p2"]
    assert config["peers"][0]["port"] == lab.peers[0].relay.listen_port
    assert config["peers"][1]["inbox"] == other_inbox
    assert config["peers"][0]["apply_command"].endswith(
        f"--config {lab.peers[0].config_path} apply"
    )
    assert config["state"] == {"path": str(lab.root / "source" / "state.db")}
    assert config["sync"] == {"parallel": 2}
    receiver = tomllib.loads(lab.peers[1].config_path.read_text())["receiver"]
    assert receiver == {"inbox": other_inbox, "docker_host": lab.peers[1].docker.url}


@pytest.mark.lab  # starts daemons (sshd; the lab fixture: dockerd too)
def test_events_since(lab: Lab) -> None:
    ref = "lab/selftest-events:1"
    since = time.time()
    build_image(lab.source.client(), ref, [("e.bin", 1024)], seed=9)
    try:
        events = lab.source.events_since(since, "tag")
        assert [e["Actor"]["Attributes"]["name"] for e in events] == [ref]
        assert lab.peers[0].docker.events_since(since) == []
    finally:
        lab.source.remove_image(ref)
