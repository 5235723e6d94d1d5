"""Fifty peers from one source: the cycles succeed, nothing moves twice, and the source's
threads and file descriptors stay bounded by ``max_parallel_peers``, not by the fleet.

The test is about the source's side, so 47 of the 50 peers share one dockerd (each with its
own sshd, counting relay, inbox and receiver config); p1 to p3 keep their own, so that the
first sync provably delivers to engines that had nothing. Times are not asserted here:
``python -m bench`` records them (docs/benchmarks.md, the fleet table).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from lab import Lab
from lab.cluster import ENGINE_HOST, ENGINE_SHARED
from lab.procstat import Peak

from .helpers import build, failures

pytestmark = pytest.mark.lab

PEERS = 50
OWN = 3  # p1..p3 have their own dockerd
PARALLEL = 6
IMAGES = [f"fleet/app{i}:1" for i in range(4)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    engines = [ENGINE_HOST] * OWN + [ENGINE_SHARED] * (PEERS - OWN)
    the_lab = Lab(tmp_path_factory.mktemp("fleet"), peers=PEERS, peer_engines=engines)
    try:
        the_lab.start()
        for i, image in enumerate(IMAGES):
            build(the_lab, image, seed=15000 + i, size=256 * 1024)
        source = {
            "docker_host": the_lab.source.url,
            "images": IMAGES,
            "export_dir": str(the_lab.export_dir),
            "max_parallel_peers": PARALLEL,
        }
        the_lab.write_configs(IMAGES, extra={"source": source})
        yield the_lab
    finally:
        the_lab.stop()


def sync_measured(lab: Lab) -> tuple[int, dict[str, object], Peak]:
    process = subprocess.Popen(
        lab.imgsync_argv("sync", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    peak = Peak(process.pid)
    try:
        out, err = process.communicate(timeout=600)
    finally:
        peak.stop()
    try:
        return process.returncode, json.loads(out), peak
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON (exit {process.returncode}): {err[-2000:]}") from None


def bundle_bytes(lab: Lab) -> dict[str, int]:
    """What each peer's relay carried towards the peer since the last reset."""
    return {p.name: p.relay.bytes_up for p in lab.peers}


def test_fifty_peers_first_sync_reaches_every_peer_and_each_own_engine_gets_the_bytes(
    fleet: Lab,
) -> None:
    fleet.reset_counters()
    code, report, _ = sync_measured(fleet)
    assert code == 0, failures(report)
    results = report["results"]
    assert isinstance(results, list)
    assert {(r["peer"], r["image"]) for r in results} == {
        (p.name, image) for p in fleet.peers for image in IMAGES
    }
    source_ids = {image: fleet.source.image_id(image) for image in IMAGES}
    for peer in fleet.peers[:OWN] + fleet.peers[-1:]:
        assert {i: peer.docker.image_id(i) for i in IMAGES} == source_ids, peer.name
    carried = bundle_bytes(fleet)
    for peer in fleet.peers[:OWN]:  # their own engines had nothing: each got every image
        assert carried[peer.name] > len(IMAGES) * 256 * 1024, peer.name


def test_fifty_peers_no_change_cycle_moves_nothing_with_threads_and_fds_bounded(
    fleet: Lab,
) -> None:
    """Each session costs the source a worker and paramiko's transport thread, and a socket
    and a few descriptors — so at most ``max_parallel_peers`` of them at once, whatever the
    number of peers."""
    assert sync_measured(fleet)[0] == 0  # whatever the first test left, now all current
    fleet.reset_counters()
    code, report, peak = sync_measured(fleet)
    assert code == 0, failures(report)
    results = report["results"]
    assert isinstance(results, list) and len(results) == PEERS * len(IMAGES)
    assert {r["action"] for r in results} == {"unchanged"}
    carried = bundle_bytes(fleet)
    assert max(carried.values()) < 64 * 1024, carried  # the protocol's questions, no bundle
    assert peak.threads <= 2 * PARALLEL + 6, peak.threads
    assert peak.fds <= 3 * PARALLEL + 20, peak.fds
