"""Faults on the real lab: the source SIGKILLed at random moments of a sync, and corrupt or
hostile files in a peer's inbox. A peer always runs a whole image -- the old one or the new
one, never none and never another -- and the next sync heals whatever was left behind.

Disk full on the export dir is covered by test_space_and_retention.py.

Seeds are 7000+ (equal seeds give equal image IDs through the build cache); every random
choice comes from ``random.Random(seed)`` so a failing run can be replayed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imgsync.bundle.bundledir import BundleDir, marker_name
from imgsync.engines.docker import Engine
from imgsync.source.export import export_image
from lab import Lab, Peer, build_image, retag

from .helpers import actions, build, sync_json

pytestmark = pytest.mark.lab

MIB = 1024 * 1024
KILLS = 20
KILL_SEED = 7000


# -- helpers ------------------------------------------------------------------------------
def lab_applies(peer: Peer) -> list[int]:
    """PIDs of ``imgsync apply`` processes running with ``peer``'s config (the lab's peers
    are local processes, started by sshd for the source)."""
    needle = f"{peer.config_path} apply"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline.replace(b"\0", b" ").decode("utf-8", "replace"):
            pids.append(int(entry))
    return pids


def old_or_new(lab: Lab, allowed: dict[str, set[str]]) -> None:
    """Every peer runs, under every reference, one of the allowed image IDs."""
    for peer in lab.peers:
        for ref, ids in allowed.items():
            running = peer.docker.image_id(ref)
            assert running in ids, f"{peer.name} runs {running} under {ref}, not one of {ids}"


def settle(lab: Lab, allowed: dict[str, set[str]], timeout: float = 60) -> None:
    """Until no peer-side apply of the lab runs any more (a killed source does not stop the
    apply it started: it finishes its verified load), check old-or-new over and over."""
    deadline = time.monotonic() + timeout
    # an exec request already on its way to sshd starts its apply before sshd closes that
    # connection: once every relay has no connection left, every apply there is, has started
    while any(p.relay.active_connections for p in lab.peers):
        assert time.monotonic() < deadline, "a connection to a peer stayed open"
        time.sleep(0.01)
    while True:
        old_or_new(lab, allowed)
        if not any(lab_applies(p) for p in lab.peers):
            return
        assert time.monotonic() < deadline, "an imgsync apply on a peer did not finish"
        time.sleep(0.1)


def markers_have_their_bundles(folder: Path, refs: list[str], required: bool) -> dict[str, str]:
    """Per reference: the marker (if any; ``required``: there must be one) names a bundle
    that exists with the marker's size. Returns the version each marker names."""
    versions = {}
    for ref in refs:
        path = folder / marker_name(ref)
        if not path.exists():
            assert not required, f"no marker for {ref} in {folder}"
            continue
        marker = json.loads(path.read_text())
        bundle = folder / marker["bundle"]
        assert bundle.is_file(), f"{path.name} names {marker['bundle']}, which is missing"
        size = bundle.stat().st_size
        assert size == marker["size"], f"{bundle.name} is {size} bytes, marker says {marker}"
        versions[ref] = marker["version"]
    return versions


def forget(peer: Peer, image: str) -> None:
    """Remove ``image``'s marker and bundles from ``peer``'s inbox: a test that damaged them
    must not leave them to the next test's ``apply`` (which applies every marker)."""
    stem = marker_name(image).removesuffix(".marker.json")
    for path in peer.inbox.iterdir():
        if stem in path.name and path.is_file():
            path.unlink()


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".tmp-*"))


# -- SIGKILL at random moments --------------------------------------------------------------
def test_the_source_killed_at_random_moments_never_leaves_a_peer_without_a_whole_image(
    lab: Lab,
) -> None:
    """20 SIGKILLs of ``imgsync sync`` at moments drawn over a sync's duration. When a kill
    came too late (every peer already runs the source's version), the source's tags flip
    to the other version, so every kill interrupts real work."""
    sizes = {"faults-kill/small:1": 3 * MIB, "faults-kill/mid:1": 8 * MIB}
    sizes["faults-kill/big:1"] = 40 * MIB
    refs = list(sizes)
    v1 = {ref: build(lab, ref, KILL_SEED + i, size) for i, (ref, size) in enumerate(sizes.items())}
    lab.write_configs(refs)
    started = time.monotonic()
    first = subprocess.run(lab.imgsync_argv("sync"), capture_output=True, text=True, check=False)
    duration = time.monotonic() - started  # a full cycle: export, upload, load, 3 images
    assert first.returncode == 0, first.stderr
    v2 = {
        ref: build(lab, ref, KILL_SEED + 10 + i, size)
        for i, (ref, size) in enumerate(sizes.items())
    }
    allowed = {ref: {v1[ref], v2[ref]} for ref in refs}
    source = lab.source.client()
    target = dict(v2)
    rng = random.Random(KILL_SEED)
    log: list[dict[str, Any]] = []

    for kill in range(KILLS):
        delay = rng.uniform(0, 1.2 * duration)
        sync = subprocess.Popen(
            lab.imgsync_argv("sync"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            code: int | None = sync.wait(delay)
        except subprocess.TimeoutExpired:
            sync.send_signal(signal.SIGKILL)
            sync.wait(10)
            code = None
        settle(lab, allowed)
        exported = markers_have_their_bundles(lab.export_dir, refs, required=True)
        for ref, version in exported.items():
            assert version in allowed[ref], (kill, ref, version)
        for peer in lab.peers:
            waiting = markers_have_their_bundles(peer.inbox, refs, required=False)
            for ref, version in waiting.items():
                assert version in allowed[ref], (kill, peer.name, ref, version)
        converged = all(p.docker.image_id(r) == target[r] for p in lab.peers for r in refs)
        log.append({"kill": kill, "delay": round(delay, 2), "exit": code, "done": converged})
        if converged:  # flip: the next sync has everything to do again
            target = {ref: (v1 if target[ref] == v2[ref] else v2)[ref] for ref in refs}
            for ref in refs:
                retag(source, target[ref], ref)

    for ref in refs:
        retag(source, v2[ref], ref)
    started = time.monotonic()
    code, report = sync_json(lab)
    final = time.monotonic() - started
    kept = {p.name: sorted(f.name for f in p.inbox.glob(".part-faults-kill*")) for p in lab.peers}
    print(f"calibration {duration:.2f}s; final sync {final:.1f}s\nkills: {log}")
    print(f"partial uploads kept in the inboxes (for resuming): {kept}")
    assert code == 0, report
    for peer in lab.peers:
        for ref in refs:
            assert peer.docker.image_id(ref) == v2[ref], (peer.name, ref)
        assert temp_files(peer.inbox) == [], peer.name
    assert temp_files(lab.export_dir) == []
    assert sum(entry["exit"] is None for entry in log) >= KILLS // 2, log


# -- corrupt or hostile inbox content -------------------------------------------------------
def land(lab: Lab, peer: Peer, image: str, export_dir: Path | None = None) -> tuple[Path, Path]:
    """Copy ``image``'s bundle and marker from the export dir into ``peer``'s inbox the way
    the source uploads them: a temp name in the inbox, renamed, the marker last."""
    marker = (export_dir or lab.export_dir) / marker_name(image)
    bundle = marker.parent / json.loads(marker.read_text())["bundle"]
    for path in (bundle, marker):
        temp = peer.inbox / f".tmp-00c0ffee-{path.name}"
        shutil.copyfile(path, temp)
        os.rename(temp, peer.inbox / path.name)
    return peer.inbox / bundle.name, peer.inbox / marker.name


def fingerprint(path: Path) -> tuple[int, int, str] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def truncate(bundle: Path, marker: Path, outside: Path) -> None:
    with bundle.open("r+b") as handle:
        handle.truncate(bundle.stat().st_size // 2)


def flip_byte(bundle: Path, marker: Path, outside: Path) -> None:
    data = bytearray(bundle.read_bytes())
    data[len(data) // 3] ^= 0x40
    bundle.write_bytes(bytes(data))


def break_json(bundle: Path, marker: Path, outside: Path) -> None:
    marker.write_bytes(marker.read_bytes()[:-20])


def point_bundle_at(name: Callable[[Path, Path], str]) -> Callable[[Path, Path, Path], None]:
    """Rewrite the marker's bundle field to ``name(inbox, outside)``; ``outside`` is a copy
    of the real bundle out of the inbox: following the marker there would load it."""

    def damage(bundle: Path, marker: Path, outside: Path) -> None:
        shutil.copyfile(bundle, outside)
        data = json.loads(marker.read_text())
        data["bundle"] = name(marker.parent, outside)
        marker.write_text(json.dumps(data))

    return damage


def relative(inbox: Path, outside: Path) -> str:
    return os.path.relpath(outside, inbox)


def inflate(bundle: Path, marker: Path, outside: Path) -> None:
    data = marker.read_bytes().rstrip()
    marker.write_bytes(data[:-1] + b" " * (10 * MIB) + data[-1:])  # still valid JSON


DAMAGE: dict[str, tuple[Callable[[Path, Path, Path], None], str]] = {
    "truncated-bundle": (truncate, "bytes"),
    "flipped-byte": (flip_byte, "sha256"),
    "marker-bad-json": (break_json, "JSON"),
    "marker-bundle-etc-passwd": (point_bundle_at(lambda i, o: "../../../etc/passwd"), "plain"),
    "marker-bundle-escapes-inbox": (point_bundle_at(relative), "plain file name"),
    "marker-bundle-absolute": (point_bundle_at(lambda i, o: str(o)), "plain file name"),
    "marker-10mb": (inflate, "larger than"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_or_hostile_inbox_is_refused_and_the_next_sync_heals_the_peer(
    lab: Lab, case: str
) -> None:
    damage, keyword = DAMAGE[case]
    index = list(DAMAGE).index(case)
    image = f"faults-inbox-{case}/web:1"
    v1 = build(lab, image, seed=7100 + 2 * index)
    lab.write_configs([image])
    code, report = sync_json(lab)
    assert code == 0, report
    p1 = lab.peer("p1")
    v2 = build(lab, image, seed=7101 + 2 * index)
    code, report = sync_json(lab, "--peer", "p2")  # the export dir now holds v2
    assert code == 0 and actions(report) == {("p2", image): "loaded"}, report

    outside = p1.inbox.parent / f"outside-{case}.tar"  # next to the inbox, not in it
    try:
        bundle, marker = land(lab, p1, image)
        damage(bundle, marker, outside)
        watched = [outside, Path("/etc/passwd"), lab.export_dir / bundle.name]
        before = {path: fingerprint(path) for path in watched}
        beside = sorted(p.name for p in p1.inbox.parent.iterdir())

        applied = lab.run_imgsync("apply", "--json", "--image", image, config=p1.config_path)

        assert applied.returncode != 0, applied
        answer = json.loads(applied.stdout)
        assert answer["ok"] is False, answer
        (result,) = answer["results"]
        assert result["action"] == "failed", result
        assert keyword in result["error"], result
        assert p1.docker.image_id(image) == v1, "p1 keeps running what it had"
        assert {path: fingerprint(path) for path in watched} == before
        assert sorted(p.name for p in p1.inbox.parent.iterdir()) == beside

        code, report = sync_json(lab)
        assert code == 0, report
        assert actions(report) == {("p1", image): "loaded", ("p2", image): "unchanged"}
        assert p1.docker.image_id(image) == v2
    finally:
        outside.unlink(missing_ok=True)
        forget(p1, image)


# -- an upload that lands while the peer still applies the previous version -----------------
def test_a_bundle_that_lands_while_the_peer_applies_the_previous_one_is_kept(
    lab: Lab, tmp_path: Path
) -> None:
    """What happens when the source is killed (or its connection drops) while the peer
    loads version 2, and the next sync uploads version 3 before that load is done."""
    image = "faults-race/web:1"
    p1 = lab.peer("p1")
    lab.write_configs([image])
    exports = {}
    engine = Engine(lab.source.url)
    try:
        for name, seed, size in (("v2", 7300, 200 * MIB), ("v3", 7301, 2 * MIB)):
            build_image(lab.source.client(), image, [("data.bin", size)], seed=seed)
            folder = BundleDir(tmp_path / name)
            folder.create()
            exports[name] = export_image(engine, folder, image)[0]
    finally:
        engine.close()
    try:
        race(lab, p1, image, exports, tmp_path)
    finally:
        forget(p1, image)


def race(lab: Lab, p1: Peer, image: str, exports: dict[str, Any], tmp_path: Path) -> None:
    land(lab, p1, image, tmp_path / "v2")
    first = subprocess.Popen(
        lab.imgsync_argv("-v", "apply", "--json", "--image", image, config=p1.config_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stderr is not None
        for line in first.stderr:  # its log: it has read v2's marker, verified it, and loads it
            if '"event": "loading"' in line:
                break
        else:
            raise AssertionError("the apply of v2 ended without loading")
        land(lab, p1, image, tmp_path / "v3")  # the next sync's upload: bundle, then marker
        assert first.poll() is None, "timing: the apply of v2 ended before v3 landed"
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, (out, err)
    assert p1.docker.image_id(image) == exports["v2"].version

    assert markers_have_their_bundles(p1.inbox, [image], required=True) == {
        image: exports["v3"].version
    }
    second = lab.run_imgsync("apply", "--json", "--image", image, config=p1.config_path)
    assert second.returncode == 0, second.stdout
    assert p1.docker.image_id(image) == exports["v3"].version
