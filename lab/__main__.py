"""``python -m lab demo [--keep]`` and ``python -m lab selftest``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ._proc import LabError, remove_tree, unavailable_reason
from .chroot import docker26_unavailable
from .cluster import CONTAINERD_16, ENGINE_26, ENGINE_HOST, PODMAN_HOST, Lab, Node
from .containerd_node import ContainerdNode
from .docker_node import DockerNode
from .images import build_image, layer_ids

MiB = 1024 * 1024
DEMO_ROOT = Path("/tmp/imgsync-demo")


def _say(message: str) -> None:
    print(f"[lab] {message}", flush=True)


def _check_prereqs() -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(reason)


def _kind(node: Node) -> str:
    if isinstance(node, DockerNode):
        return "containerd store" if node.containerd_store else "classic"
    return "k8s containerd" if isinstance(node, ContainerdNode) else "podman"


def _layers(node: Node, ref: str) -> tuple[str, ...] | None:
    if node.image_id(ref) is None:
        return None
    if isinstance(node, DockerNode):
        return tuple(layer_ids(node.client(), ref))
    return node.diff_ids(ref)


def _ids_table(lab: Lab, images: list[str]) -> bool:
    """Each node's image ID per image (a containerd-store node has its own), and whether
    every node holds the same image: the same layers (diff IDs)."""
    nodes: list[Node] = [lab.source, *(p.docker for p in lab.peers)]
    names = [f"{n.name} ({_kind(n)})" for n in nodes]
    print(f"{'image':<16}" + "".join(f"{name:<24}" for name in names) + "same layers")
    same = True
    for ref in images:
        ids = [n.image_id(ref) for n in nodes]
        layers = [_layers(n, ref) for n in nodes]
        equal = all(found == layers[0] for found in layers) and layers[0] is not None
        same = same and equal
        row = "".join(f"{(i or '-')[7:26]:<24}" for i in ids)
        print(f"{ref:<16}{row}{'yes' if equal else 'NO'}")
    return same


def _run_live(argv: list[str]) -> int:
    """Run a command with its output going straight to our terminal; 127 if it is missing."""
    try:
        return subprocess.run(argv, check=False, stdin=subprocess.DEVNULL).returncode
    except FileNotFoundError:
        _say(f"not found: {argv[0]} (is imgsync installed? run scripts/bootstrap)")
        return 127


def demo(keep: bool) -> int:
    _check_prereqs()
    remove_tree(DEMO_ROOT)
    # p2 runs Docker 26 with the containerd image store when scripts/bootstrap built it;
    # p3 is a Kubernetes node's containerd alone, p4 Podman: no Docker on either
    engines = [ENGINE_HOST, ENGINE_HOST if docker26_unavailable() else ENGINE_26]
    engines += [CONTAINERD_16, PODMAN_HOST]
    lab = Lab(DEMO_ROOT, peers=len(engines), keep=keep, peer_engines=engines)
    images = ["demo/web:1", "demo/worker:1"]
    try:
        lab.start()
        _say(f"lab up in {lab.timings['start']:.1f}s under {DEMO_ROOT}")
        client = lab.source.client()
        build_image(client, "demo/web:1", [("app.bin", 4 * MiB), ("assets.bin", 2 * MiB)], 1)
        build_image(client, "demo/worker:1", [("worker.bin", 3 * MiB)], 2)
        config = lab.write_configs(images)
        _say(f"source config: {config}")
        _say("imgsync sync (1st)")
        first = _run_live(lab.imgsync_argv("sync"))
        _say(f"exit code {first}")
        same = _ids_table(lab, images)
        _say("imgsync sync (2nd, everything should be unchanged)")
        second = _run_live(lab.imgsync_argv("sync"))
        _say(f"exit code {second}")
        for peer in lab.peers:
            _say(f"{peer.name}: {peer.relay.bytes_up} bytes up, {peer.relay.bytes_down} down")
        if keep:
            _say(f"kept: root {lab.root}, source config {config}")
            print(config.read_text())
            for node in [lab.source] + [p.docker for p in lab.peers]:
                print(f"  {node.url}  # {node.name} ({_kind(node)})")
            _say("Ctrl-C to tear down")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        if first != 0:
            return first
        return 0 if same else 3
    finally:
        lab.stop()
        _say(f"lab down in {lab.timings.get('stop', 0):.1f}s")


def _step(name: str, func: Callable[[], None]) -> None:
    t0 = time.monotonic()
    func()
    _say(f"ok   {name} ({time.monotonic() - t0:.2f}s)")


def selftest() -> int:
    _check_prereqs()
    root = Path(tempfile.mkdtemp(prefix="imgsync-lab-selftest-"))
    lab = Lab(root, peers=2)
    pids: list[int] = []
    try:
        lab.start()
        _say(f"lab up in {lab.timings['start']:.2f}s (root {root}, run {lab.run_root})")
        for node in [lab.source] + [
            p.docker for p in lab.peers if isinstance(p.docker, DockerNode)
        ]:
            pids += [pid for pid in (node.pid, node.containerd_pid) if pid]
        pids += [p.sshd.pid for p in lab.peers if p.sshd.pid]
        p1 = lab.peers[0]

        def image() -> None:
            since = time.time()
            image_id = build_image(
                lab.source.client(),
                "lab/selftest:1",
                [("a.bin", 8 * MiB), ("b.bin", 2 * MiB)],
                seed=7,
            )
            assert lab.source.image_id("lab/selftest:1") == image_id
            assert len(layer_ids(lab.source.client(), "lab/selftest:1")) == 3
            assert all(p.docker.image_id("lab/selftest:1") is None for p in lab.peers)
            events = lab.source.events_since(since, "tag")
            assert any(e["Actor"]["Attributes"].get("name") == "lab/selftest:1" for e in events), (
                events
            )

        def ssh_true() -> None:
            for peer in lab.peers:
                peer.relay.reset()
                proc = subprocess.run(
                    lab.ssh_argv(peer, "true"),
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                assert proc.returncode == 0, proc.stderr
                assert peer.relay.bytes_up > 0 and peer.relay.bytes_down > 0, peer.relay

        def throughput() -> None:
            p1.relay.reset()
            size = 64 * MiB
            t0 = time.monotonic()
            proc = subprocess.run(
                lab.ssh_argv(p1, "cat > /dev/null"),
                input=os.urandom(size),
                capture_output=True,
                timeout=60,
                check=False,
            )
            took = time.monotonic() - t0
            assert proc.returncode == 0, proc.stderr
            assert p1.relay.bytes_up >= size, p1.relay
            _say(f"     {size / MiB / took:.0f} MiB/s through ssh+relay")

        def rotate() -> None:
            before = p1.sshd.fingerprint()
            after = p1.sshd.rotate_host_key()
            assert before != after
            proc = subprocess.run(
                lab.ssh_argv(p1, "true"), capture_output=True, text=True, timeout=30, check=False
            )
            assert proc.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in proc.stderr
            lab.write_known_hosts()
            ok = subprocess.run(
                lab.ssh_argv(p1, "true"), capture_output=True, timeout=30, check=False
            )
            assert ok.returncode == 0, ok.stderr
            pids.append(p1.sshd.pid or 0)

        def drop() -> None:
            proc = subprocess.Popen(lab.ssh_argv(p1, "sleep 30"), stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while p1.relay.active_connections == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            assert p1.relay.drop_all() >= 1
            assert proc.wait(10) != 0

        for name, func in [
            ("image build (3 layers, only on source, tag event)", image),
            ("ssh through each relay, bytes counted both ways", ssh_true),
            ("64 MiB through ssh + relay", throughput),
            ("rotate_host_key -> host key mismatch, then OK", rotate),
            ("relay.drop_all kills a live session", drop),
        ]:
            _step(name, func)
    finally:
        lab.stop()
        _say(f"lab down in {lab.timings.get('stop', 0):.2f}s")
    left = [pid for pid in pids if pid and Path(f"/proc/{pid}").exists()]
    if left:
        raise LabError(f"processes left running: {left}")
    if root.exists() or lab.run_root.exists():
        raise LabError("lab directories left behind")
    _say("selftest passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab")
    sub = parser.add_subparsers(dest="cmd", required=True)
    demo_p = sub.add_parser("demo", help="2 peers, 2 images, imgsync sync twice")
    demo_p.add_argument("--keep", action="store_true", help="keep the lab up until Ctrl-C")
    sub.add_parser("selftest", help="start a lab and check it works, then tear it down")
    args = parser.parse_args(argv)
    if args.cmd == "demo":
        return demo(args.keep)
    return selftest()


if __name__ == "__main__":
    sys.exit(main())
