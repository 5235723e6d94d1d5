"""The benchmark's cases, run on a started lab: classic pipeline, scp and imgsync side by side.

(a) first sync of the big image (random layers) to 1 peer; (b) its v2 (one new ~10 MB top
layer) to that peer; (c) a no-change cycle, 10 small images x 4 peers; (d) first sync of the
big image to 4 peers; (e) first sync of an image of the same size whose layers compress;
(mem) a 2 GB image to 4 peers, once, for imgsync's peak RSS.

Every case repeats its runs ``Options.runs`` times, the tools taking turns within each
round (classic, then imgsync, then classic again…), so a slow minute on the shared machine
falls on both. Each run is one :class:`Run`; the report takes medians.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from lab import Peer, build_image

from . import measure
from .measure import BenchError
from .names import (
    CLASSIC,
    CLASSIC_4,
    CLASSIC_ALL,
    IMGSYNC_FIRST,
    IMGSYNC_NOOP,
    IMGSYNC_V2,
    KEEP_V1,
    LOOPBACK,
    MEM_REF,
    REF,
    SEED,
    SMALL,
    TEXT_REF,
    MiB,
    Run,
)
from .sampler import RelaySampler
from .shaping import Link
from .tools import Tools
from .util import (
    inbox_snapshot,
    mb,
    remove,
    top_layer_bytes,
)


class Bench(Tools):
    """The cases, each a method: its runs, the tools taking turns."""

    # -- cases ------------------------------------------------------------------------------
    def attempt(self, case: str, link: Link) -> bool:
        """Run one case; a failure is reported and recorded, and the other cases go on."""
        try:
            self.use_link(link)
            if case == "mem":
                self.case_mem()
            else:
                getattr(self, f"case_{case}")()
            return True
        except Exception as err:  # recorded on the page; the other cases go on
            self.say(f"case ({case}) on {link.name} FAILED: {type(err).__name__}: {err}")
            self.facts.setdefault("failures", []).append(f"({case}) {link.name}: {err}")
            with contextlib.suppress(Exception):
                self.reset_peers(self.lab.peers)
            return False

    def case_a(self) -> None:
        """First sync of the big image to 1 peer: classic, imgsync; on loopback also scp
        of the saved tarball, the transport probes and ``docker load -i`` alone."""
        p1, loopback = self.lab.peers[0], self.link == LOOPBACK
        size = self.image_bytes(KEEP_V1)
        self.point(self.v1)
        self.configure([REF])
        tarball = self.work / "v1.tar"
        for _ in self.reps():
            if loopback:
                tarball = self.save_to_file("a", "v1.tar")
            self.reset_peers([p1])
            self.run_classic("a", CLASSIC, [[(p1, REF, self.v1)]], size)
            if loopback:
                self.run_scp("a", p1, tarball)
                self.probe(p1, tarball)
                self.load_locally(p1, tarball, self.v1)
            self.reset_peers([p1])
            self.clear_export()
            self.run_imgsync("a", IMGSYNC_FIRST, [p1], {REF: self.v1}, "loaded", image_bytes=size)
        remove(tarball)

    def case_e(self) -> None:
        """First sync of the compressible image to 1 peer: classic, imgsync."""
        if not self.text:
            raise BenchError("case (e) needs the compressible image (built with case e)")
        p1 = self.lab.peers[0]
        size = self.image_bytes(TEXT_REF)
        self.configure([TEXT_REF])
        for _ in self.reps():
            self.reset_peers([p1])
            self.run_classic("e", CLASSIC, [[(p1, TEXT_REF, self.text)]], size)
            self.reset_peers([p1])
            self.clear_export()
            self.run_imgsync(
                "e", IMGSYNC_FIRST, [p1], {TEXT_REF: self.text}, "loaded", image_bytes=size
            )
        self.reset_peers([p1])

    def probe(self, peer: Peer, tarball: Path) -> None:
        """The transport alone, on loopback: the tarball into the peer, whole commands timed
        (start-up and connection included, as for scp), one end swapped at a time."""
        size = tarball.stat().st_size
        receive = [
            *self.lab.imgsync_cmd,
            "--config",
            str(peer.config_path),
            "apply",
            "--receive",
            "probe.tar",
            "--size",
            str(size),
            "--offset",
            "0",
        ]
        own = [
            sys.executable,
            "-m",
            "bench.probe_send",
            str(self.lab.source_config),
            peer.name,
            str(tarball),
        ]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        has_receive = self.peer_has("--receive")
        variants = [
            ("OpenSSH ssh -> cat > /dev/null", self.ssh_argv(peer, "cat > /dev/null"), "ssh"),
            ("imgsync transport -> cat > /dev/null", [*own, "sh", "-c", "cat > /dev/null"], "py"),
        ]
        if self.peer_has("--session"):
            session = [*own[:3], "--session", *own[3:]]
            variants.append(("imgsync session -> the peer's inbox (a sync's path)", session, "py"))
        if has_receive:
            variants += [
                (
                    "OpenSSH ssh -> imgsync apply --receive",
                    self.ssh_argv(peer, shlex.join(receive)),
                    "ssh",
                ),
                ("imgsync transport -> imgsync apply --receive", [*own, *receive], "py"),
            ]
        else:
            self.facts["probe_na"] = "the peer's imgsync apply has no --receive"
        for tool, argv, who in variants:
            self._probe_one(peer, tarball, size, tool, argv, env, who)

    def _probe_one(
        self,
        peer: Peer,
        tarball: Path,
        size: int,
        tool: str,
        argv: list[str],
        env: dict[str, str],
        who: str,
    ) -> None:
        remove(peer.inbox / "probe.tar")
        remove(peer.inbox / "probe.marker.json")
        self.mark_start()
        self.lab.reset_counters()
        with RelaySampler([peer.relay]) as sampler:
            t0 = time.monotonic()
            done = measure.run(argv, on_start=sampler.watch, stdin=tarball, env=env)
            seconds = time.monotonic() - t0
        remove(peer.inbox / "probe.tar")
        remove(peer.inbox / "probe.marker.json")
        if done.code == 3 and who == "py":
            self.facts.setdefault("probe_na_tools", {})[tool] = done.stderr.strip()[:200]
            self.say(f"  probe {tool}: n/a ({done.stderr.strip()[:200]})")
            return
        done.check(tool)
        window = sampler.window()
        data: dict[str, Any] = {"bytes": size}
        if window is not None:
            data["window_rate"] = window.rate
            data["cpu_share_upload"] = sampler.cpu_share(window.start, window.end)
        wire, ciphers = self.wire([peer])
        rss = {"ssh" if who == "ssh" else "imgsync transport": done.maxrss_kib}
        self.add(Run("tput", LOOPBACK.name, tool, seconds, wire, rss, data=data, ciphers=ciphers))

    def case_b(self) -> None:
        """v2 (a new ~10 MB top layer) to the peer that runs v1; after every run the peer is
        put back on v1. On loopback also ``docker save -o`` of v2 (the goal's yardstick)."""
        p1, loopback = self.lab.peers[0], self.link == LOOPBACK
        self.ensure_on_v1(p1)
        self.point(self.v2)
        self.configure([REF])
        try:
            for rep in self.reps():
                if loopback:
                    tarball = self.save_to_file("b", "v2.tar")
                    if rep == 0:
                        self.facts["changed_layer_bytes"] = top_layer_bytes(tarball)
                    remove(tarball)
                self.run_classic("b", CLASSIC, [[(p1, REF, self.v2)]])
                self.put_back_v1(p1)
                before = inbox_snapshot(p1)
                self.clear_export()
                self.run_imgsync("b", IMGSYNC_V2, [p1], {REF: self.v2}, "loaded")
                self.put_back_v1(p1, before)
        finally:
            self.point(self.v1)

    def case_c(self) -> None:
        """A cycle in which nothing changed: 10 small images, 4 peers."""
        everyone = self.lab.peers
        self.configure(SMALL)
        if any(p.docker.image_id(ref) != self.small_ids[ref] for p in everyone for ref in SMALL):
            with self.unshaped():  # set-up, not measured: every peer gets the 10 images
                self.reset_peers(everyone)
                self.run_imgsync("c", "setup", everyone, self.small_ids, "loaded", record=False)
        lanes = [[(p, ref, self.small_ids[ref]) for ref in SMALL] for p in everyone]
        for _ in self.reps():
            run = self.run_imgsync("c", IMGSYNC_NOOP, everyone, self.small_ids, "unchanged")
            per_peer = max(run.data["per_peer_wire"].values())
            run.notes.append(f"max {per_peer / 1e3:.1f} kB per peer")
            self.run_classic("c", CLASSIC_ALL, lanes)

    def case_d(self) -> None:
        """First sync of the big image to 4 peers: 4 classic pipelines in parallel, imgsync."""
        everyone = self.lab.peers
        size = self.image_bytes(KEEP_V1) * len(everyone)
        self.point(self.v1)
        self.configure([REF])
        for _ in self.reps():
            self.reset_peers(everyone)
            self.run_classic("d", CLASSIC_4, [[(p, REF, self.v1)] for p in everyone], size)
            self.reset_peers(everyone)
            self.clear_export()
            self.run_imgsync(
                "d", IMGSYNC_FIRST, everyone, {REF: self.v1}, "loaded", image_bytes=size
            )

    def case_mem(self) -> None:
        """A 2 GB image to 4 peers (export included), once: imgsync's peak RSS."""
        everyone = self.lab.peers
        size = self.options.memory_mb * MiB
        need = 11 * size
        free = shutil.disk_usage(self.lab.root).free
        if free < need:
            self.say(f"memory case skipped: {mb(free):.0f} MB free, needs {mb(need):.0f} MB")
            self.facts["memory_skipped"] = f"{mb(free):.0f} MB free, needs {mb(need):.0f} MB"
            return
        self.reset_peers(everyone)
        self.clear_export()
        t0 = time.monotonic()
        client = self.lab.source.client()
        layers = [(f"big{i}.bin", size // 8) for i in range(8)]
        mem_id = build_image(client, MEM_REF, layers, SEED + 100)
        self.say(f"{self.options.memory_mb} MB image built in {time.monotonic() - t0:.1f}s")
        self.configure([MEM_REF])
        self.rep = 0
        try:
            self.run_imgsync(
                "mem",
                f"imgsync sync, {self.options.memory_mb} MB image",
                everyone,
                {MEM_REF: mem_id},
                "loaded",
            )
        finally:
            self.reset_peers(everyone)
            self.clear_export()
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(MEM_REF, force=True)


# -- where an imgsync run's time went -------------------------------------------------------
