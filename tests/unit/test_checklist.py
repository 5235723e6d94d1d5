"""`imgsync check`'s words: what each failure means and the exact line that fixes it."""

from __future__ import annotations

import json
from typing import Any

from imgsync import protocol
from imgsync.config import Config, PeerSettings, peer_settings
from imgsync.model import Inventory
from imgsync.render import checklist
from imgsync.render.checklist import FAIL, OK, SKIPPED, Item, PeerCheck

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHs0"
NEW, OLD = "SHA256:newnewnew+/0", "SHA256:oldoldold+/1"


def peer(**fields: Any) -> PeerSettings:
    table = {"name": "edge-1", "host": "192.0.2.10", "user": "imgsync", **fields}
    config = Config.model_validate(
        {
            "source": {"images": ["acme/web:1"]},
            "ssh": {"known_hosts": "/etc/imgsync/known_hosts"},
            "peers": [table],
        }
    )
    return peer_settings(config, config.peers[0])


def test_a_changed_host_key_names_both_fingerprints_and_how_to_replace_the_line() -> None:
    problem = (
        f"host key for 192.0.2.10:2222 has CHANGED: it offers {NEW}, /etc/imgsync/known_hosts "
        f"has {OLD}; nothing was sent"
    )
    item = checklist.host_key_item(peer(port=2222), problem)
    assert item.status == FAIL
    assert (
        item.detail == f"CHANGED: 192.0.2.10:2222 offers {NEW}, /etc/imgsync/known_hosts has {OLD}"
    )
    assert item.fix == (
        "verify with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the peer (it must "
        f"print {NEW}), then replace the line for [192.0.2.10]:2222 in /etc/imgsync/known_hosts: "
        "ssh-keygen -R '[192.0.2.10]:2222' -f /etc/imgsync/known_hosts && "
        "ssh-keyscan -t ed25519 -p 2222 192.0.2.10 >> /etc/imgsync/known_hosts"
    )


def test_an_unknown_host_key_gives_the_keyscan_line_for_its_key_type() -> None:
    problem = (
        "host key for 192.0.2.10 is not in /etc/imgsync/known_hosts (ecdsa-sha2-nistp256 "
        f"{NEW}); verify it and add it (ssh-keyscan), or set trust_unknown_hosts = true"
    )
    item = checklist.host_key_item(peer(), problem)
    assert item.detail == f"unknown: 192.0.2.10:22 offers {NEW}, not in /etc/imgsync/known_hosts"
    assert item.fix == (
        f"verify {NEW} with `ssh-keygen -lf /etc/ssh/ssh_host_ecdsa_key.pub` on the peer, then "
        "run: ssh-keyscan -t ecdsa -p 22 192.0.2.10 >> /etc/imgsync/known_hosts"
    )


def test_the_authorized_keys_line_runs_serve_with_the_config_apply_command_names() -> None:
    fix = checklist.auth_item(peer(), "key … was not accepted for user imgsync", KEY).fix
    assert fix == (
        "on the peer, add to ~imgsync/.ssh/authorized_keys (mode 0600): "
        f'command="imgsync serve",restrict {KEY}'
    )
    custom = peer(apply_command="/opt/imgsync/bin/imgsync --config '/etc/my \"x\".toml' apply")
    assert checklist.authorized_keys_line(custom, KEY) == (
        f'command="/opt/imgsync/bin/imgsync --config \'/etc/my \\"x\\".toml\' serve",restrict {KEY}'
    )
    odd = peer(apply_command="sudo -u imgsync /usr/local/bin/imgsync-apply")
    assert checklist.authorized_keys_line(odd, KEY) == (
        f'command="imgsync --config /etc/imgsync/imgsync.toml serve",restrict {KEY}'
    )
    assert checklist.authorized_keys_line(peer(mode="agentless"), KEY) == KEY


def test_an_identity_file_others_can_read_gets_the_chmod_line() -> None:
    problem = "identity file /etc/imgsync/id key is readable by group or others (mode 0640)"
    item = checklist.identity_item(peer(identity_file="/etc/imgsync/id key"), problem)
    assert (item.status, item.detail, item.fix) == (
        FAIL,
        problem,
        "chmod 600 '/etc/imgsync/id key'",
    )


def test_docker_problems_get_the_group_or_the_service_fix() -> None:
    denied = "cannot reach Docker at unix:///var/run/docker.sock: ('Connection aborted.', "
    denied += "PermissionError(13, 'Permission denied'))"
    assert checklist.docker_fix("imgsync", denied, "x").startswith(
        "on the peer: usermod -aG docker imgsync, then log in again (a new SSH session) or "
        "restart the service"
    )
    for down in (
        "FileNotFoundError(2, 'No such file or directory')",
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
        "daemon running?",
    ):
        fix = checklist.docker_fix("imgsync", down, "docker_command")
        assert fix == (
            "is the docker service running on the peer? systemctl status docker "
            "(and docker_command)"
        )


def test_a_failed_inventory_is_told_apart_by_who_failed() -> None:
    argv = ["imgsync", "apply", "--inventory", "--json"]

    def items(status: int, why: str) -> list[tuple[str, str, str | None]]:
        found = checklist.failed_inventory(peer(), argv, status, why, "answer is not JSON")
        return [(item.name, item.status, item.fix) for item in found]

    missing = items(127, "bash: line 1: imgsync: command not found")
    assert missing == [("imgsync", FAIL, "install imgsync on the peer, or check apply_command")]
    assert items(2, "imgsync: config x: receiver: …")[0][:2] == ("imgsync", FAIL)
    denied = items(1, "imgsync: cannot reach Docker at unix:///s.sock: … Permission denied")
    assert [(name, status) for name, status, _fix in denied] == [
        ("imgsync", OK),
        ("docker", FAIL),
    ]
    assert "usermod -aG docker imgsync" in (denied[1][2] or "")
    inbox = items(1, "imgsync: cannot create folder /var/lib/imgsync/inbox: Permission denied")
    assert inbox[1:] == [
        ("engine", SKIPPED, None),
        ("inbox", FAIL, "on the peer: install -d -o imgsync -m 0750 /var/lib/imgsync/inbox"),
    ]


def test_a_containerd_or_podman_peer_that_cannot_reach_its_engine_gets_that_engines_fix() -> None:
    argv = ["imgsync", "apply", "--inventory", "--json"]

    def item(why: str) -> tuple[str, str, str]:
        found = list(checklist.failed_inventory(peer(), argv, 1, why, "no JSON"))
        return found[1].name, found[1].status, found[1].fix or ""

    down = (
        'imgsync: ctr version on containerd at /run/x.sock (namespace k8s.io): dial "/run/x.sock"'
    )
    name, status, fix = item(down)
    assert (name, status) == ("containerd", FAIL)
    assert "/run/k3s/containerd/containerd.sock" in fix and "[receiver] address" in fix
    no_ctr = "imgsync: ctr version on containerd at /run/x.sock (namespace k8s.io): cannot run ctr"
    assert 'ctr = "k3s ctr"' in item(no_ctr)[2]
    podman = "imgsync: cannot reach Podman at unix:///run/podman/podman.sock: No such file"
    name, status, fix = item(podman)
    assert (name, status) == ("podman", FAIL)
    assert "systemctl enable --now podman.socket" in fix


def test_the_verdict_names_each_failing_peer_by_its_first_failure() -> None:
    good = PeerCheck("edge-1", "imgsync@a:22", (Item("sshd", OK, "fine"),))
    bad = PeerCheck(
        "edge-2",
        "imgsync@b:22",
        (Item("host key", SKIPPED), Item("key auth", FAIL, "chmod", fix="chmod 600 k")),
    )
    out = checklist.lines([good, bad])
    assert out[-1] == "FAILED: edge-2 (key auth); 1 of 2 peer(s) ok"
    assert "  FAIL     key auth  chmod" in out and "                     FIX: chmod 600 k" in out
    assert checklist.lines([good])[-1] == "ok: every item of 1 peer(s) is ok"


def test_the_inventory_carries_the_peers_facts_and_an_older_peers_lack_them() -> None:
    facts = {"engine": {"version": "24.0.7", "store": "containerd"}, "inbox_writable": False}
    raw = protocol.dump_inventory(Inventory({}, inbox_free=5), facts).encode()
    assert protocol.load_facts(raw) == protocol.PeerFacts(
        imgsync_version=json.loads(raw)["imgsync_version"],
        engine_version="24.0.7",
        store="containerd",
        inbox_writable=False,
        inbox_free=5,
    )
    older = b'{"format": 1, "images": {}, "inbox_free": null}'
    assert protocol.load_facts(older) == protocol.PeerFacts()
    odd = b'{"format": 1, "images": {}, "engine": "x", "imgsync_version": "1\\u001b[2J"}'
    assert protocol.load_facts(odd) == protocol.PeerFacts(imgsync_version="1?[2J")
