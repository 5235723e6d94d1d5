"""SSH trust on the real lab: an unknown host key, a key file others can read, a key the
peer does not accept. Each is refused with a message a user can act on, and nothing is
loaded on a peer that was refused.

Seeds are 7200+ (equal seeds give equal image IDs through the build cache). Every test
puts known_hosts back with ``lab.write_known_hosts()``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lab import Lab, Peer

from .helpers import actions, build, by_peer_image, loads_since, sync_json

pytestmark = pytest.mark.lab


def known_hosts_without(lab: Lab, name: str) -> None:
    """known_hosts with every peer's current key but ``name``'s."""
    lines = [p.sshd.host_key_line(p.address, p.port) for p in lab.peers if p.name != name]
    lab.known_hosts.write_text("\n".join(lines) + "\n")


def recorded_keys(lab: Lab, peer: Peer) -> str:
    """The known_hosts lines for the address imgsync reaches ``peer`` at (hashed or not)."""
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[{peer.address}]:{peer.port}", "-f", str(lab.known_hosts)],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout


def test_an_unknown_host_key_is_refused_with_its_fingerprint_and_the_other_peer_is_updated(
    lab: Lab,
) -> None:
    image = "trust-unknown/web:1"
    new_id = build(lab, image, seed=7200)
    lab.write_configs([image])
    p1, p2 = lab.peer("p1"), lab.peer("p2")
    known_hosts_without(lab, "p2")
    try:
        lab.reset_counters()
        since = time.time()
        code, report = sync_json(lab)
    finally:
        lab.write_known_hosts()

    assert code == 1, report
    assert report["ok"] is False
    assert actions(report) == {("p1", image): "loaded", ("p2", image): "failed"}
    error = by_peer_image(report)[("p2", image)]["error"]
    assert "host key" in error, error
    assert p2.sshd.fingerprint() in error, error
    assert loads_since(lab, since)["p2"] == 0
    assert p2.docker.image_id(image) is None
    assert p2.relay.bytes_up < 10_000, "nothing but the key exchange may reach the peer"
    assert p1.docker.image_id(image) == new_id


def test_an_unknown_host_key_trusted_explicitly_is_recorded_and_then_required(lab: Lab) -> None:
    image = "trust-tofu/web:1"
    new_id = build(lab, image, seed=7210)
    p2 = lab.peer("p2")
    known_hosts_without(lab, "p2")
    try:
        lab.write_configs([image], peer_overrides={"p2": {"trust_unknown_hosts": True}})
        code, report = sync_json(lab)
        assert code == 0, report
        assert actions(report) == {("p1", image): "loaded", ("p2", image): "loaded"}
        assert p2.docker.image_id(image) == new_id
        assert p2.sshd.public_key() in recorded_keys(lab, p2), lab.known_hosts.read_text()

        lab.write_configs([image])  # trust off again: the recorded key is what lets p2 in
        code, report = sync_json(lab)
        assert code == 0, report
        assert actions(report) == {("p1", image): "unchanged", ("p2", image): "unchanged"}
    finally:
        lab.write_known_hosts()


def test_an_identity_file_readable_by_group_is_refused_and_nothing_is_sent(
    lab: Lab, tmp_path: Path
) -> None:
    image = "trust-keymode/web:1"
    build(lab, image, seed=7220)
    key = tmp_path / "id_group_readable"
    shutil.copyfile(lab.client_key, key)
    key.chmod(0o640)
    lab.write_configs([image], ssh_overrides={"identity_file": str(key)})
    lab.reset_counters()
    since = time.time()
    code, report = sync_json(lab)

    assert code == 1, report
    assert set(actions(report).values()) == {"failed"}
    assert len(report["results"]) == len(lab.peers)
    for result in report["results"]:
        error = result["error"]
        assert str(key) in error, error
        assert "group or others" in error, error
        assert "chmod 600" in error, error
    assert loads_since(lab, since) == {p.name: 0 for p in lab.peers}
    for peer in lab.peers:
        assert peer.relay.bytes_up < 10_000, (peer.name, peer.relay.bytes_up)
        assert peer.docker.image_id(image) is None, peer.name


def test_a_key_the_peers_do_not_accept_fails_every_peer_naming_the_key(
    lab: Lab, tmp_path: Path
) -> None:
    image = "trust-unauthorized/web:1"
    build(lab, image, seed=7230)
    key = tmp_path / "id_stranger"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stranger", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    stranger = key.with_name(key.name + ".pub").read_text().split()[1]
    assert stranger not in lab.authorized_keys.read_text()
    lab.write_configs([image], ssh_overrides={"identity_file": str(key)})
    since = time.time()
    code, report = sync_json(lab)

    assert code == 1, report
    assert set(actions(report).values()) == {"failed"}
    assert len(report["results"]) == len(lab.peers)
    for result in report["results"]:
        error = result["error"]
        assert str(key) in error and "not accepted" in error, error
    assert loads_since(lab, since) == {p.name: 0 for p in lab.peers}
    for peer in lab.peers:
        assert peer.docker.image_id(image) is None, peer.name


def test_a_key_trusted_on_first_use_that_then_changes_is_refused_even_with_trust_on(
    lab: Lab,
) -> None:
    image = "trust-tofu-change/web:1"
    build(lab, image, seed=7230)
    p2 = lab.peer("p2")
    known_hosts_without(lab, "p2")
    try:
        lab.write_configs([image], peer_overrides={"p2": {"trust_unknown_hosts": True}})
        assert sync_json(lab)[0] == 0  # first use: p2's key recorded
        first = p2.docker.image_id(image)
        new_id = build(lab, image, seed=7231)
        new_key = p2.sshd.rotate_host_key()
        p2.relay.reset()
        code, report = sync_json(lab)
        assert code == 1
        assert actions(report) == {("p1", image): "loaded", ("p2", image): "failed"}
        error = by_peer_image(report)[("p2", image)]["error"]
        assert "CHANGED" in error and new_key in error
        assert p2.docker.image_id(image) == first != new_id
        assert p2.relay.bytes_up < 10_000, "nothing but the key exchange may reach the peer"
        assert p2.sshd.public_key() not in recorded_keys(lab, p2)  # not trusted anew
    finally:
        lab.write_known_hosts()
