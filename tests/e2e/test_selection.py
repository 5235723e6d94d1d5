"""Which images go where: globs and labels on the source, per-peer lists and groups,
images pulled from a registry first — and a dry run that only says what would move."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab, build_image
from lab.registry import free_port, registry_on

from .helpers import actions, build, loads_since, run, sync_json

pytestmark = pytest.mark.lab


def source_with(lab: Lab, **table: object) -> dict[str, object]:
    base = {"docker_host": lab.source.url, "export_dir": str(lab.export_dir)}
    return {"source": {**base, **table}}


def test_a_glob_selects_the_matching_tags_only(lab: Lab) -> None:
    prod = {ref: build(lab, ref, seed=s) for ref, s in (("sel-glob/a:prod", 10000),
                                                         ("sel-glob/b:prod", 10001))}  # fmt: skip
    build(lab, "sel-glob/a:dev", seed=10002)
    lab.write_configs([], extra=source_with(lab, images=["sel-glob/*:prod"]))
    code, report = sync_json(lab)
    assert code == 0, report
    assert {image for _peer, image in actions(report)} == set(prod)
    for peer in lab.peers:
        assert {ref: peer.docker.image_id(ref) for ref in prod} == prod
        assert peer.docker.image_id("sel-glob/a:dev") is None


def test_a_label_selects_the_images_that_carry_it(lab: Lab) -> None:
    client = lab.source.client()
    wanted = build_image(client, "sel-label/on:1", [("x.bin", 1 << 20)], seed=10010,
                         labels={"imgsync.sync": "true"})  # fmt: skip
    build_image(client, "sel-label/off:1", [("x.bin", 1 << 20)], seed=10011,
                labels={"imgsync.sync": "false"})  # fmt: skip
    lab.write_configs([], extra=source_with(lab, labels=["imgsync.sync=true"]))
    code, report = sync_json(lab)
    assert code == 0, report
    assert {image for _peer, image in actions(report)} == {"sel-label/on:1"}
    assert all(p.docker.image_id("sel-label/on:1") == wanted for p in lab.peers)
    assert all(p.docker.image_id("sel-label/off:1") is None for p in lab.peers)


def test_each_peer_gets_only_its_images_and_its_groups(lab: Lab) -> None:
    web, worker = "sel-peer/web:1", "sel-peer/worker:1"
    build(lab, web, seed=10020)
    build(lab, worker, seed=10021)
    lab.write_configs(
        [web, worker],
        peer_overrides={"p1": {"images": [web]}, "p2": {"groups": ["edge"]}},
        extra={"groups": {"edge": {"images": ["sel-peer/*:1"]}}},
    )
    code, report = sync_json(lab)
    assert code == 0, report
    assert set(actions(report)) == {("p1", web), ("p2", web), ("p2", worker)}
    assert lab.peer("p1").docker.image_id(worker) is None


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on a free loopback port, storing under tmp_path."""
    port = free_port()
    with registry_on(tmp_path / "registry", port):
        yield f"127.0.0.1:{port}"


def test_pull_feeds_the_peers_what_the_registry_has_now(lab: Lab, registry: str) -> None:
    image = f"{registry}/sel-pull/app:1"
    old = build_image(lab.source.client(), image, [("a.bin", 1 << 20)], seed=10030)
    lab.source.client().images.push(f"{registry}/sel-pull/app", tag="1")
    lab.write_configs([image], extra=source_with(lab, images=[image], pull=True))
    assert sync_json(lab)[0] == 0
    assert all(p.docker.image_id(image) == old for p in lab.peers)
    # upstream publishes a new build under the same tag (built elsewhere: p1's engine)
    elsewhere = lab.peer("p1").docker.client()
    new = build_image(elsewhere, image, [("a.bin", 1 << 20)], seed=10031)
    elsewhere.images.push(f"{registry}/sel-pull/app", tag="1")
    code, report = sync_json(lab)
    assert code == 0, report
    assert lab.source.image_id(image) == new
    assert all(p.docker.image_id(image) == new for p in lab.peers)


def test_a_dry_run_says_what_would_move_and_moves_nothing(lab: Lab) -> None:
    image = "sel-dry/app:1"
    build(lab, image, seed=10040)
    lab.write_configs([image])
    assert sync_json(lab)[0] == 0
    before = {p.name: p.docker.image_id(image) for p in lab.peers}
    build(lab, image, seed=10041, size=3 << 20)
    listing = {p.name: sorted(os.listdir(p.inbox)) for p in lab.peers}
    exported = sorted(os.listdir(lab.export_dir))
    since = time.time()
    done = run(lab.imgsync_argv("sync", "--dry-run", "--json"))
    planned = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert planned["dry_run"] is True and planned["exports"] == [image]
    rows = {(r["peer"], r["image"]): r for r in planned["results"]}
    for peer in lab.peers:
        assert rows[(peer.name, image)]["action"] == "would-send"
        assert rows[(peer.name, image)]["bytes"] > 2 << 20
    assert loads_since(lab, since) == {"p1": 0, "p2": 0}
    assert {p.name: sorted(os.listdir(p.inbox)) for p in lab.peers} == listing
    assert sorted(os.listdir(lab.export_dir)) == exported
    assert {p.name: p.docker.image_id(image) for p in lab.peers} == before
