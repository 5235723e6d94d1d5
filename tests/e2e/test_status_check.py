"""`imgsync status` (what each peer runs, from the state DB) and `imgsync check` (each
peer's checklist, with the line that fixes a failure) on the real lab.

Seeds are 11700+. Each test restores what it breaks (sshd, known_hosts, authorized_keys,
configs) in ``finally``; status tests keep their own state DB.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from imgsync import __version__
from lab import Lab
from lab.tomlw import dumps

from .helpers import build, by_peer_image, sync_json

pytestmark = pytest.mark.lab

TIMEOUT = 600  # the machine is shared: other labs run beside this one
AGENT_ITEMS = ["sshd", "host key", "key auth", "imgsync", "docker", "inbox"]
Checklist = dict[str, dict[str, tuple[str, str, str | None]]]


def status_json(lab: Lab) -> tuple[int, dict[tuple[str, str], dict[str, Any]], bool]:
    done = lab.run_imgsync("status", "--json", timeout=TIMEOUT)
    assert done.stdout, done.stderr
    document = json.loads(done.stdout)
    rows = {(row["peer"], row["image"]): row for row in document["peers"]}
    return done.returncode, rows, document["ok"]


def add_unused_peer(lab: Lab) -> None:
    """A third peer, p3, where nothing listens: no sync ever reaches it."""
    data = tomllib.loads(lab.source_config.read_text())
    data["peers"].append({"name": "p3", "host": "127.0.0.3", "port": 1})
    lab.source_config.write_text(dumps(data))


def check(lab: Lab) -> tuple[int, Checklist, str]:
    """Run `imgsync check`; its items per peer as (status, detail, fix), and its last line."""
    done = lab.run_imgsync("check", timeout=TIMEOUT)
    peers: Checklist = {}
    items: dict[str, tuple[str, str, str | None]] = {}
    for line in done.stdout.splitlines()[:-1]:  # the last line is the summary
        if line and not line.startswith(" "):
            items = peers.setdefault(line.split()[0], {})
        elif line.strip().startswith("FIX: "):
            last = list(items)[-1]
            items[last] = (*items[last][:2], line.strip().removeprefix("FIX: "))
        elif line.strip():
            items[line[11:19].strip()] = (line[2:9].strip(), line[21:], None)
    assert peers, f"check printed no checklist (exit {done.returncode}): {done.stderr}"
    return done.returncode, peers, done.stdout.splitlines()[-1]


def statuses(items: dict[str, tuple[str, str, str | None]]) -> list[tuple[str, str]]:
    return [(name, status) for name, (status, _detail, _fix) in items.items()]


def test_status_shows_what_each_peer_runs_and_a_down_peer_until_a_sync_reaches_it(
    lab: Lab, tmp_path: Path
) -> None:
    web, worker = "status/web:1", "status/worker:1"
    old_web = build(lab, web, seed=11700)
    worker_id = build(lab, worker, seed=11701)
    own_state = {"state": {"path": str(tmp_path / "state.db")}}
    fast = {"connect_timeout": 3, "retries": 0}
    lab.write_configs([web, worker], ssh_overrides=fast, extra=own_state)
    assert sync_json(lab, timeout=TIMEOUT)[0] == 0
    new_web = build(lab, web, seed=11702)
    add_unused_peer(lab)
    p2 = lab.peer("p2")
    p2.sshd.stop()
    try:
        code, report = sync_json(lab, timeout=TIMEOUT)
        assert code == 1, report
        code, rows, ok = status_json(lab)
        table = lab.run_imgsync("status", timeout=TIMEOUT)
    finally:
        p2.sshd.start()

    assert (code, ok) == (1, False)
    assert set(rows) == {(peer, image) for peer in ("p1", "p2", "p3") for image in (web, worker)}
    p1_web = rows[("p1", web)]
    assert (p1_web["version"], p1_web["current"], p1_web["error"]) == (new_web, True, None)
    assert p1_web["bytes_sent"] > 2 * 1024 * 1024 and p1_web["last_success"].endswith("Z")
    p2_web = rows[("p2", web)]
    assert (p2_web["version"], p2_web["current"]) == (old_web, False)
    assert p2_web["error"] == by_peer_image(report)[("p2", web)]["error"]
    assert "p2" in p2_web["error"] and p2_web["last_success"] is not None
    # the worker did not change: p2 still runs the version exported last, though it was down
    p2_worker = rows[("p2", worker)]
    assert (p2_worker["version"], p2_worker["current"]) == (worker_id, True)
    assert p2_worker["error"] is not None
    for image in (web, worker):
        p3 = rows[("p3", image)]
        assert (p3["version"], p3["current"], p3["last_success"]) == (None, False, None)
        assert "p3" in p3["error"]

    assert table.returncode == 1
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["PEER", "IMAGE", "VERSION", "CURRENT"]
    line = {tuple(row.split()[:2]): row for row in lines[1:-1]}
    assert line[("p1", web)].split()[2:4] == [new_web[7:19], "yes"]
    assert line[("p2", web)].split()[2:4] == [old_web[7:19], "no"]
    assert "never reached" in line[("p3", web)] and "never reached" in line[("p3", worker)]
    assert lines[-1].startswith("NOT CURRENT: 3 of 6 peer x image")

    lab.write_configs([web, worker], ssh_overrides=fast, extra=own_state)  # p3 gone again
    assert sync_json(lab, timeout=TIMEOUT)[0] == 0
    code, rows, ok = status_json(lab)
    assert (code, ok) == (0, True)
    assert set(rows) == {(peer, image) for peer in ("p1", "p2") for image in (web, worker)}
    assert rows[("p2", web)]["version"] == new_web
    assert all(row["current"] and row["error"] is None for row in rows.values())
    table = lab.run_imgsync("status", timeout=TIMEOUT)
    assert table.returncode == 0
    assert table.stdout.splitlines()[-1] == "ok: all 4 peer x image current across 2 peer(s)"


def test_check_names_the_changed_host_key_of_one_peer_and_passes_the_other(lab: Lab) -> None:
    lab.write_configs(["check-hostkey/web:1"])  # check asks no engine on the source
    p1 = lab.peer("p1")
    old = p1.sshd.fingerprint()
    new = p1.sshd.rotate_host_key()
    known_hosts = lab.known_hosts.read_text()
    try:
        code, peers, summary = check(lab)
        assert lab.known_hosts.read_text() == known_hosts, "check must not write known_hosts"
    finally:
        lab.write_known_hosts()

    assert code == 1
    assert statuses(peers["p1"]) == [
        ("sshd", "ok"), ("host key", "FAIL"), ("key auth", "skipped"), ("imgsync", "skipped"),
        ("docker", "skipped"), ("inbox", "skipped"),
    ]  # fmt: skip
    _status, detail, fix = peers["p1"]["host key"]
    assert detail == f"CHANGED: {p1.address}:{p1.port} offers {new}, {lab.known_hosts} has {old}"
    assert fix is not None
    assert "verify with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the peer" in fix
    assert f"replace the line for [{p1.address}]:{p1.port} in {lab.known_hosts}" in fix
    assert fix.endswith(f"ssh-keyscan -t ed25519 -p {p1.port} {p1.address} >> {lab.known_hosts}")
    assert statuses(peers["p2"]) == [(name, "ok") for name in AGENT_ITEMS]
    assert peers["p2"]["imgsync"][1].startswith(f"imgsync {__version__} answers")
    assert "image store" in peers["p2"]["docker"][1]
    assert peers["p2"]["inbox"][1].startswith(f"{lab.peer('p2').inbox} writable, ")
    assert summary == "FAILED: p1 (host key); 1 of 2 peer(s) ok"


def test_check_gives_the_authorized_keys_line_that_lets_a_new_key_in(
    lab: Lab, tmp_path: Path
) -> None:
    key = tmp_path / "id_new"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "new", "-f", str(key)], check=True
    )
    public = " ".join(key.with_name("id_new.pub").read_text().split()[:2])
    lab.write_configs(["check-key/web:1"], ssh_overrides={"identity_file": str(key)})
    code, peers, _summary = check(lab)

    assert code == 1
    lines = {}
    for peer in lab.peers:
        assert statuses(peers[peer.name])[:4] == [
            ("sshd", "ok"), ("host key", "ok"), ("key auth", "FAIL"), ("imgsync", "skipped"),
        ]  # fmt: skip
        _status, detail, fix = peers[peer.name]["key auth"]
        assert detail == f"{key} was not accepted for user root"
        serve = shlex.join([*lab.imgsync_cmd, "--config", str(peer.config_path), "serve"])
        line = f'command="{serve}",restrict {public}'
        assert fix == f"on the peer, add to ~root/.ssh/authorized_keys (mode 0600): {line}"
        lines[peer.name] = line

    original = lab.authorized_keys.read_text()  # one file for both sshds: p1's line serves both
    lab.authorized_keys.write_text(original + lines["p1"] + "\n")
    try:
        code, peers, summary = check(lab)
    finally:
        lab.authorized_keys.write_text(original)
    assert code == 0, peers
    assert statuses(peers["p1"]) == [(name, "ok") for name in AGENT_ITEMS]
    assert summary == "ok: every item of 2 peer(s) is ok"


def test_check_names_a_peer_whose_imgsync_cannot_reach_its_docker(lab: Lab, tmp_path: Path) -> None:
    image = "check-docker/web:1"
    lab.write_configs([image])
    p2 = lab.peer("p2")
    socket = tmp_path / "no-docker.sock"
    receiver = {"inbox": str(p2.inbox), "docker_host": f"unix://{socket}"}
    p2.config_path.write_text(dumps({"receiver": receiver}))
    try:
        code, peers, summary = check(lab)
    finally:
        lab.write_configs([image])

    assert code == 1
    assert statuses(peers["p1"]) == [(name, "ok") for name in AGENT_ITEMS]
    assert statuses(peers["p2"]) == [
        ("sshd", "ok"), ("host key", "ok"), ("key auth", "ok"), ("imgsync", "ok"),
        ("docker", "FAIL"), ("inbox", "skipped"),
    ]  # fmt: skip
    _status, detail, fix = peers["p2"]["docker"]
    assert f"cannot reach Docker at unix://{socket}" in detail
    assert fix is not None and "is the docker service running on the peer?" in fix
    assert "systemctl status docker" in fix
    assert summary == "FAILED: p2 (docker); 1 of 2 peer(s) ok"


def test_check_asks_an_agentless_peer_for_its_docker_version_and_store(lab: Lab) -> None:
    image = "check-agentless/web:1"
    p2 = lab.peer("p2")

    def agentless(docker: str) -> None:
        overrides = {"mode": "agentless", "apply_command": "false", "docker_command": docker}
        lab.write_configs([image], peer_overrides={"p2": overrides})

    agentless(f"docker -H {p2.docker.url}")
    code, peers, summary = check(lab)
    assert code == 0, peers
    assert statuses(peers["p2"]) == [(n, "ok") for n in ("sshd", "host key", "key auth", "docker")]
    version = p2.docker.client().version()["Version"]
    want = f"Docker {version}, classic image store (docker -H {p2.docker.url})"
    assert peers["p2"]["docker"][1] == want
    assert summary == "ok: every item of 2 peer(s) is ok"

    agentless("docker -H unix:///nonexistent/docker.sock")
    code, peers, summary = check(lab)
    assert code == 1
    _status, detail, fix = peers["p2"]["docker"]
    assert detail.startswith("docker -H unix:///nonexistent/docker.sock version --format")
    assert fix is not None and "systemctl status docker" in fix and "docker_command" in fix
    assert summary == "FAILED: p2 (docker); 1 of 2 peer(s) ok"
