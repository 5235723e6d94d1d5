"""One cycle, one session per peer: one SSH connection (counted at the lab's relay) and one
imgsync process on the peer (counted by a wrapper the peer runs instead of imgsync), for
the first sync as for the one that finds nothing to do. A peer whose imgsync predates the
session is named, with the upgrade it needs."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgsync import frames
from imgsync.bundle import marker as marker_module
from imgsync.bundle.bundledir import BundleDir, marker_name
from imgsync.engines.docker import Engine
from imgsync.source.export import export_image
from lab import Lab, build_image
from lab.cluster import Peer

from .helpers import actions, build, loads_since, sync_json

pytestmark = pytest.mark.lab
MB = 1024 * 1024


def counting_apply(lab: Lab, tmp_path: Path) -> tuple[dict[str, dict[str, str]], Path]:
    """Peer overrides whose apply_command logs one line per start, then runs imgsync."""
    log = tmp_path / "starts.log"
    overrides = {}
    for peer in lab.peers:
        wrapper = tmp_path / f"imgsync-{peer.name}"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'echo "{peer.name} $*" >> {shlex.quote(str(log))}\n'
            f'exec {shlex.join(lab.imgsync_cmd)} "$@"\n'
        )
        wrapper.chmod(0o755)
        config = shlex.quote(str(peer.config_path))
        overrides[peer.name] = {"apply_command": f"{wrapper} --config {config} apply"}
    return overrides, log


def starts(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_cycle_uses_one_ssh_connection_and_one_peer_process_per_peer(
    lab: Lab, tmp_path: Path
) -> None:
    images = ["session/web:1", "session/worker:1"]
    for seed, image in enumerate(images, start=9100):
        build(lab, image, seed=seed)
    overrides, log = counting_apply(lab, tmp_path)
    lab.write_configs(images, peer_overrides=overrides)
    for expected in ("loaded", "unchanged"):
        lab.reset_counters()
        log.unlink(missing_ok=True)
        code, report = sync_json(lab)
        assert code == 0, report
        assert set(actions(report).values()) == {expected}
        assert {p.name: p.relay.connections_total for p in lab.peers} == {"p1": 1, "p2": 1}
        assert sorted(starts(log)) == [
            f"p1 --config {lab.peer('p1').config_path} apply --session",
            f"p2 --config {lab.peer('p2').config_path} apply --session",
        ]


def test_a_peer_whose_imgsync_has_no_session_is_told_to_upgrade(lab: Lab, tmp_path: Path) -> None:
    image = "session/old-peer:1"
    build(lab, image, seed=9110)
    old = tmp_path / "imgsync-old"  # what imgsync 0.1 (click) says to an unknown flag
    old.write_text(
        "#!/bin/sh\n"
        "echo 'Usage: imgsync apply [OPTIONS]' >&2\n"
        'echo "Error: No such option: --session" >&2\n'
        "exit 2\n"
    )
    old.chmod(0o755)
    lab.write_configs(
        [image], peer_overrides={"p1": {"apply_command": f"{old} apply", "retries": 0}}
    )
    code, report = sync_json(lab)
    assert code == 1
    failed = {r["peer"]: r for r in report["results"]}
    assert failed["p1"]["action"] == "failed"
    assert "upgrade imgsync on p1" in failed["p1"]["error"], failed["p1"]["error"]
    assert "No such option: --session" in failed["p1"]["error"]
    assert failed["p2"]["action"] == "loaded"


def test_a_stream_cut_while_the_peer_loads_it_leaves_the_previous_image_and_heals(
    lab: Lab,
) -> None:
    """The peer loads a bundle (untagged) while it arrives; cutting the link then must leave
    the reference on the previous image, and the next cycle brings the new one."""
    image = "session/cut:1"
    p1 = lab.peer("p1")
    old = build_image(lab.source.client(), image, [("a.bin", 4 * MB)], seed=9120)
    lab.write_configs([image], peer_overrides={"p1": {"retries": 0}})
    assert sync_json(lab, "--peer", "p1")[0] == 0
    new = build_image(lab.source.client(), image, [("a.bin", 60 * MB)], seed=9121)
    p1.relay.rate_limit = 15e6  # 4 s for the bundle: time to cut it in the middle
    sync = subprocess.Popen(
        lab.imgsync_argv("-v", "sync", "--json", "--peer", "p1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: _part_size(p1.inbox) > 25 * MB, "the upload to get going")
        assert p1.relay.drop_all() >= 1
        stdout, stderr = sync.communicate(timeout=120)
    finally:
        p1.relay.rate_limit = None
        if sync.poll() is None:
            sync.kill()
    assert sync.returncode == 1, stderr
    assert actions(json.loads(stdout)) == {("p1", image): "failed"}
    assert p1.docker.image_id(image) == old
    code, report = sync_json(lab, "--peer", "p1")
    assert code == 0, report
    assert actions(report) == {("p1", image): "loaded"}
    assert p1.docker.image_id(image) == new


def _part_size(inbox: Path) -> int:
    return sum(p.stat().st_size for p in inbox.glob(".part-*.tar"))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}")
        time.sleep(0.05)


class PeerSession:
    """``imgsync apply --session`` on a peer, spoken to as the source does."""

    def __init__(self, lab: Lab, peer: Peer) -> None:
        argv = lab.imgsync_argv("apply", "--session", config=peer.config_path)
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.reader = frames.FrameReader(self.process.stdout.read)
        assert self.reader.message()["op"] == "hello"

    def ask(self, request: dict[str, Any], data: bytes | None = None) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(frames.message_frame(request))
        if data is not None:
            for frame, _ in frames.data_frames(iter([data]), None):
                stdin.write(frame)
            stdin.write(frames.end_frame())
        stdin.flush()
        return self.reader.message()

    def receive(self, name: str, data: bytes, load: bool = False) -> dict[str, Any]:
        request = {"op": "receive", "name": name, "size": len(data), "offset": 0, "load": load}
        return self.ask(request, data)

    def close(self) -> None:
        if self.process.poll() is None:
            self.ask({"op": "bye"})
        self.process.wait(30)


def test_a_bundle_loaded_as_it_arrives_moves_no_tag_until_apply_checks_it(
    lab: Lab, tmp_path: Path
) -> None:
    image = "session/arrive:1"
    p1 = lab.peer("p1")
    old = build_image(lab.source.client(), image, [("a.bin", 2 * MB)], seed=9130)
    lab.write_configs([image])
    assert sync_json(lab, "--peer", "p1")[0] == 0
    new = build_image(lab.source.client(), image, [("a.bin", 20 * MB)], seed=9131)
    folder = BundleDir(tmp_path / "export")
    folder.create()
    engine = Engine(lab.source.url)
    try:
        marker = export_image(engine, folder, image)[0]
    finally:
        engine.close()
    since = time.time()
    session = PeerSession(lab, p1)
    try:
        reply = session.receive(marker.bundle, folder.bundle_path(marker).read_bytes(), load=True)
        assert reply == {"format": 1, "received": marker.size}
        wait_for(lambda: p1.docker.image_id(new) == new, "the load on arrival")
        assert p1.docker.image_id(image) == old  # loaded, untagged: the tag did not move
        note = marker_module.dumps(marker)
        assert session.receive(marker_name(image), note)["received"] == len(note)
        outcomes = session.ask({"op": "apply", "images": [image]})["results"]
        assert [(o["action"], o["version"]) for o in outcomes] == [("loaded", new)]
    finally:
        session.close()
    assert p1.docker.image_id(image) == new
    assert loads_since(lab, since)["p1"] == 1  # the file was not loaded a second time
