"""One cycle, one session per peer: one SSH connection (counted at the lab's relay) and one
imgsync process on the peer (counted by a wrapper the peer runs instead of imgsync), for
the first sync as for the one that finds nothing to do. A peer whose imgsync predates the
session is named, with the upgrade it needs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from lab import Lab

from .helpers import actions, build, sync_json

pytestmark = pytest.mark.lab


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
