"""The benchmark's cases, run on a started lab: classic pipeline, scp and imgsync side by side.

Case (a) first sync of the big image to 1 peer; (b) its v2 (one new ~10 MB top layer) to
that peer; (c) a no-change cycle, 10 small images x 4 peers; (d) first sync of the big
image to 4 peers; optional (mem) a 2 GB image to 4 peers, for imgsync's peak RSS.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from lab import Lab, Peer, build_image

from . import measure
from .measure import BenchError, Finished, RelaySampler

MiB = 1024 * 1024
SEED = 4242
REPO, TAG = "bench/app", "latest"
REF = f"{REPO}:{TAG}"  # the reference every big-image case syncs; it moves v1 <-> v2
KEEP_V1, KEEP_V2 = "bench/keep:v1", "bench/keep:v2"  # hold both versions on the source
SMALL = [f"bench/small{i}:1" for i in range(10)]
MEM_REF = "bench/mem:1"
PATCH_MB = 10
LOOPBACK, SHAPED = "loopback", "100 Mbit/s"


@dataclass
class Options:
    size_mb: int = 500
    links: tuple[str, ...] = (LOOPBACK, SHAPED)
    cases: tuple[str, ...] = ("a", "b", "c", "d")
    memory_case: bool = False
    memory_mb: int = 2048


@dataclass
class Run:
    """One measured run: a row of the results table."""

    case: str
    link: str
    tool: str
    seconds: float
    wire: int | None  # relay bytes up + down over the peers involved; None: no wire
    rss: dict[str, int] = field(default_factory=dict)  # process -> peak RSS, KiB
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # imgsync: where the time went
    data: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False  # the classic run this case's ratios are relative to

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Bench:
    def __init__(self, lab: Lab, options: Options, say: Callable[[str], None]) -> None:
        self.lab = lab
        self.options = options
        self.say = say
        self.runs: list[Run] = []
        self.facts: dict[str, Any] = {}
        self.work = lab.root / "bench"
        self.work.mkdir(parents=True, exist_ok=True)
        self.docker_cli, self.docker_env = pick_docker_cli(lab)
        self.v1 = self.v2 = ""
        self.small_ids: dict[str, str] = {}
        self._load_at_start = 0.0
        self._foreign_at_start = 0

    def mark_start(self) -> None:
        """Flush dirty pages (the last run's writes must not be written back during this
        one), and note how busy the machine is (others' labs may share the CPUs)."""
        os.sync()
        self._load_at_start = os.getloadavg()[0]
        self._foreign_at_start = foreign_dockerds(self.lab)

    def measure_startup(self) -> None:
        """The imgsync CLI's start-up (``imgsync --version``: imports only), best of 3; every
        remote step of a sync pays it again on the peer."""
        best = min(self._timed([*self.lab.imgsync_cmd, "--version"]) for _ in range(3))
        self.facts["cli_startup_s"] = best
        self.say(f"imgsync CLI start-up: {best:.2f}s")

    @staticmethod
    def _timed(argv: list[str]) -> float:
        t0 = time.monotonic()
        measure.run(argv, timeout=60).check(argv[-1])
        return time.monotonic() - t0

    # -- setup ------------------------------------------------------------------------------
    def build_images(self) -> None:
        client = self.lab.source.client()
        layer = self.options.size_mb * MiB // 5
        layers = [(f"layer{i}.bin", layer) for i in range(5)]
        t0 = time.monotonic()
        self.v1 = build_image(client, REF, layers, SEED)
        client.images.get(self.v1).tag(*KEEP_V1.split(":"))
        self.v2 = build_image(client, KEEP_V2, [*layers, ("patch.bin", PATCH_MB * MiB)], SEED)
        for i, ref in enumerate(SMALL):
            self.small_ids[ref] = build_image(client, ref, [("data.bin", MiB)], SEED + 1 + i)
        self.say(f"images built in {time.monotonic() - t0:.1f}s")

    def point(self, image_id: str, node: docker.DockerClient | None = None) -> None:
        """Make REF name ``image_id`` (on the source unless ``node``)."""
        client = node or self.lab.source.client()
        client.images.get(image_id).tag(REPO, TAG)

    def reset_peers(self, peers: list[Peer]) -> None:
        """Peers empty: no image (removed, then pruned), no inbox file, no scp copy."""
        for peer in peers:
            for ref in [REF, KEEP_V1, KEEP_V2, MEM_REF, *SMALL]:
                peer.docker.remove_image(ref)
            client = peer.docker.client()
            client.images.prune(filters={"dangling": False})
            for image in client.images.list(all=True):
                with contextlib.suppress(docker.errors.NotFound):
                    client.images.remove(str(image.id), force=True)
            left = client.images.list(all=True)
            if left:
                raise BenchError(f"{peer.name}: images left after reset: {left}")
            for path in peer.inbox.iterdir():
                if not path.name.endswith(".lock"):
                    remove(path)
            remove(scp_dest(peer))

    def clear_export(self) -> None:
        """A cold source: no exported bundle, no state DB."""
        if self.lab.export_dir.exists():
            for path in self.lab.export_dir.iterdir():
                remove(path)
        for suffix in ("", "-wal", "-shm", "-journal"):
            remove(self.lab.state_path.with_name(self.lab.state_path.name + suffix))

    # -- the three ways to ship an image ----------------------------------------------------
    def save_to_file(self, case: str, link: str, image_id: str, name: str) -> Path:
        path = self.work / name
        remove(path)
        self.mark_start()
        t0 = time.monotonic()
        done = measure.run(
            [*self.docker_cli, "-H", self.lab.source.url, "save", "-o", str(path), REF],
            env=self.docker_env,
        )
        seconds = time.monotonic() - t0
        done.check("docker save -o")
        size = path.stat().st_size
        self.facts.setdefault("tarball_bytes", {})[name] = size
        self.add(
            Run(
                case,
                link,
                "docker save -o FILE (source only)",
                seconds,
                None,
                {"docker CLI": done.maxrss_kib},
                [f"{mb(size):.1f} MB tarball"],
                data={"image": image_id[:19], "bytes": size},
            )
        )
        return path

    def classic_argv(self, peer: Peer, ref: str) -> tuple[list[str], list[str]]:
        left = [*self.docker_cli, "-H", self.lab.source.url, "save", ref]
        remote = [*self.remote_env(), self.docker_cli[0], "-H", peer.docker.url, "load"]
        return left, self.lab.ssh_argv(peer, *remote)

    def remote_env(self) -> list[str]:
        version = (self.docker_env or {}).get("DOCKER_API_VERSION")
        return ["env", f"DOCKER_API_VERSION={version}"] if version else []

    def classic(self, peer: Peer, ref: str) -> tuple[Finished, Finished]:
        left, right = self.classic_argv(peer, ref)
        save, load = measure.pipeline(left, right)
        save.check(f"docker save (to {peer.name})")
        load.check(f"ssh {peer.name} docker load")
        return save, load

    def run_classic(
        self,
        case: str,
        link: str,
        tool: str,
        plan: list[list[tuple[Peer, str, str]]],
        *,
        baseline: bool = True,
    ) -> Run:
        """Classic pipelines: ``plan`` is one list of (peer, ref, expected id) per thread,
        each run in order; the threads run at the same time."""
        peers = {p.name: p for lane in plan for p, _, _ in lane}
        self.mark_start()
        self.lab.reset_counters()
        peaks = {"docker save CLI": 0, "ssh client": 0}
        errors: list[BaseException] = []

        def lane_run(lane: list[tuple[Peer, str, str]]) -> None:
            try:
                for peer, ref, expected in lane:
                    save, load = self.classic(peer, ref)
                    peaks["docker save CLI"] = max(peaks["docker save CLI"], save.maxrss_kib)
                    peaks["ssh client"] = max(peaks["ssh client"], load.maxrss_kib)
                    got = peer.docker.image_id(ref)
                    if got != expected:
                        raise BenchError(f"{peer.name}: {ref} is {got} after load, not {expected}")
            except BaseException as err:
                errors.append(err)

        t0 = time.monotonic()
        threads = [threading.Thread(target=lane_run, args=(lane,)) for lane in plan]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - t0
        if errors:
            raise errors[0]
        wire = self.wire(list(peers.values()))
        count = sum(len(lane) for lane in plan)
        run = Run(
            case, link, tool, seconds, wire, peaks, [f"{count} x save|ssh|load"], baseline=baseline
        )
        return self.add(run)

    def run_scp(self, case: str, link: str, peer: Peer, tarball: Path) -> Run:
        dest = scp_dest(peer)
        remove(dest)
        argv = scp_argv(self.lab, peer, tarball, dest)
        self.mark_start()
        self.lab.reset_counters()
        with RelaySampler([peer.relay]) as sampler:
            t0 = time.monotonic()
            done = measure.run(argv, on_start=sampler.watch)
            seconds = time.monotonic() - t0
        done.check("scp")
        size = tarball.stat().st_size
        if dest.stat().st_size != size:
            raise BenchError(f"scp left {dest.stat().st_size} bytes of {size}")
        remove(dest)
        window = sampler.window()
        data: dict[str, Any] = {"bytes": size, "wall_rate": size / seconds}
        notes = [f"{mb(size / seconds):.0f} MB/s wall"]
        if window is not None:
            data["window_rate"] = window.rate  # (scp's CPU is not the crypto: its ssh does it)
            notes.append(f"{mb(window.rate):.0f} MB/s during the transfer")
        return self.add(
            Run(
                case,
                link,
                "OpenSSH scp of the tarball (SFTP)",
                seconds,
                self.wire([peer]),
                {"scp + its ssh": done.maxrss_kib},
                notes,
                data=data,
            )
        )

    def run_imgsync(
        self,
        case: str,
        link: str,
        tool: str,
        peers: list[Peer],
        expect: dict[str, str],
        action: str,
        *,
        record: bool = True,
    ) -> Run:
        """One ``imgsync sync --json`` over ``peers``; every result must be ``action`` and
        every peer must run ``expect`` (ref -> image ID) afterwards."""
        selected = [] if len(peers) == len(self.lab.peers) else peers
        args = ["-v", "sync", "--json"]
        for peer in selected:
            args += ["--peer", peer.name]
        argv = self.lab.imgsync_argv(*args)
        self.mark_start()
        self.lab.reset_counters()
        since = time.time()
        with RelaySampler([p.relay for p in peers]) as sampler:
            t0 = time.time()
            done = measure.run(argv, on_start=sampler.watch)
            t_end = time.time()
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise BenchError(
                f"imgsync sync printed no JSON (exit {done.code}):\n"
                f"{done.stdout}\n{done.stderr[-3000:]}"
            ) from None
        results = report.get("results", [])
        wrong = [r for r in results if r.get("action") != action]
        if done.code != 0 or wrong or len(results) != len(peers) * len(expect):
            raise BenchError(
                f"imgsync sync (exit {done.code}) did not {action} everything:\n"
                f"{json.dumps(report, indent=1)[:4000]}\n{done.stderr[-2000:]}"
            )
        for peer in peers:
            for ref, image_id in expect.items():
                got = peer.docker.image_id(ref)
                if got != image_id:
                    raise BenchError(f"{peer.name}: {ref} is {got} after sync, not {image_id}")
        wire = self.wire(peers)
        saves = len(self.lab.source.events_since(since, "save"))
        load_events = [e for p in peers for e in p.docker.events_since(since, "load")]
        received = inbox_marker_ctime(peers, t0)
        phases, data = self._phases(done, sampler, t0, t_end, load_events, received)
        transfers = sorted({str(r.get("transfer")) for r in results if r.get("transfer")})
        data.update(
            saves=saves,
            loads=len(load_events),
            transfers=transfers,
            bytes_sent=sum(int(r.get("bytes_sent", 0)) for r in results),
            per_peer_wire={p.name: p.relay.bytes_total for p in peers},
            cpu_seconds=done.cpu_seconds,
        )
        notes = [f"{saves} docker save, {len(load_events)} docker load"]
        if transfers:
            notes.append("/".join(transfers) + " bundle")
        if "window_rate" in data:
            notes.append(f"{mb(data['window_rate']):.0f} MB/s during the upload")
        run = Run(
            case, link, tool, t_end - t0, wire, {"imgsync": done.maxrss_kib}, notes, phases, data
        )
        return self.add(run) if record else run

    def _phases(
        self,
        done: Finished,
        sampler: RelaySampler,
        t0: float,
        t_end: float,
        load_events: list[dict[str, Any]],
        received: float | None,
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Split an imgsync run into consecutive phases, from its log, the relay samples
        and the peers' load events."""
        events = measure.log_events(done.stderr)

        def stamps(name: str) -> list[float]:
            return [float(e["ts"]) for e in events if e.get("event") == name and "ts" in e]

        phases: dict[str, float] = {}
        data: dict[str, Any] = {}
        cursor = t0
        finished = [e for e in events if e.get("event") == "cycle finished" and "ts" in e]
        cycle_end = float(finished[-1]["ts"]) if finished else None
        if cycle_end is not None and isinstance(finished[-1].get("seconds"), int | float):
            cycle_start = cycle_end - float(finished[-1]["seconds"])
            phases["startup"] = cycle_start - cursor
            cursor = cycle_start
        exporting, exported = stamps("exporting"), stamps("exported")
        if exporting and exported:
            phases["startup"] = phases.get("startup", 0.0) + min(exporting) - cursor
            phases["export"] = max(exported) - min(exporting)
            cursor = max(exported)
            data["cpu_share_export"] = sampler.cpu_share(min(exporting), max(exported))
        window = sampler.window()
        sending = stamps("sending")
        if window is not None and sending:
            first = min(sending)
            phases["connect + ask"] = first - cursor
            phases["upload"] = window.end - first
            cursor = window.end
            data["window_rate"] = window.rate
            data["window_seconds"] = window.seconds
            data["cpu_share_upload"] = sampler.cpu_share(window.start, window.end)
        if window is not None and received is not None and received > cursor:
            phases["end of receive"] = received - cursor
            cursor = received
        if load_events:
            last_load = max(int(e["timeNano"]) for e in load_events) / 1e9
            if last_load > cursor:
                phases["apply"] = last_load - cursor
                cursor = last_load
        if cycle_end is not None and cycle_end > cursor:
            name = "report + state DB" if window is not None else "connect + ask"
            phases[name] = cycle_end - cursor
            cursor = cycle_end
        phases["exit" if cycle_end is not None else "rest"] = t_end - cursor
        return phases, data

    def wire(self, peers: list[Peer]) -> int:
        time.sleep(0.05)  # the relay counts a chunk just after forwarding it
        return sum(p.relay.bytes_total for p in peers)

    def add(self, run: Run) -> Run:
        run.data.setdefault("load1", self._load_at_start)
        run.data.setdefault("foreign_dockerd", self._foreign_at_start)
        self.runs.append(run)
        wire = "-" if run.wire is None else f"{mb(run.wire):.1f} MB"
        self.say(f"  ({run.case}) {run.link:<10} {run.tool:<46} {run.seconds:7.2f}s  {wire}")
        return run

    # -- cases ------------------------------------------------------------------------------
    def attempt(self, case: str, link: str) -> bool:
        """Run one case; a failure is reported and recorded, and the other cases go on."""
        try:
            if case == "mem":
                self.case_mem()
            else:
                getattr(self, f"case_{case}")(link)
            return True
        except (BenchError, docker.errors.DockerException, OSError) as err:
            self.say(f"case ({case}) on {link} FAILED: {err}")
            self.facts.setdefault("failures", []).append(f"({case}) {link}: {err}")
            with contextlib.suppress(Exception):
                self.reset_peers(self.lab.peers)
            return False

    def case_a(self, link: str) -> None:
        """First sync of the big image to 1 peer: classic, scp, imgsync cold and warm."""
        p1, everyone = self.lab.peers[0], self.lab.peers
        self.point(self.v1)
        self.reset_peers(everyone)
        self.clear_export()
        tarball = self.save_to_file("a", link, self.v1, "v1.tar")
        self.run_classic(
            "a", link, "classic: docker save | ssh docker load", [[(p1, REF, self.v1)]]
        )
        self.reset_peers([p1])
        self.run_scp("a", link, p1, tarball)
        if link == LOOPBACK:
            self.probe(p1, tarball)
            self.load_locally(p1, tarball, self.v1)
        self.lab.write_configs([REF])
        self.run_imgsync(
            "a", link, "imgsync cold (docker save included)", [p1], {REF: self.v1}, "loaded"
        )
        self.reset_peers([p1])
        self.run_imgsync(
            "a", link, "imgsync warm (already exported)", [p1], {REF: self.v1}, "loaded"
        )
        remove(tarball)

    def load_locally(self, peer: Peer, tarball: Path, image_id: str) -> None:
        """``docker load -i`` of the tarball on the peer itself: the load alone, no network."""
        self.reset_peers([peer])
        self.mark_start()
        t0 = time.monotonic()
        done = measure.run(
            [*self.docker_cli, "-H", peer.docker.url, "load", "-i", str(tarball)],
            env=self.docker_env,
        )
        seconds = time.monotonic() - t0
        done.check("docker load -i")
        if peer.docker.image_id(REF) != image_id:
            raise BenchError(f"{peer.name}: docker load -i did not load {image_id}")
        self.facts["docker_load_s"] = seconds
        self.add(
            Run(
                "a",
                LOOPBACK,
                "docker load -i FILE (peer only, no network)",
                seconds,
                None,
                {"docker CLI": done.maxrss_kib},
            )
        )
        self.reset_peers([peer])

    def ciphers(self) -> None:
        """The cipher OpenSSH negotiates with the lab's sshd, and imgsync's preference."""
        done = measure.run(
            [
                *self.lab.ssh_argv(self.lab.peers[0], "true")[:1],
                "-v",
                *self.lab.ssh_argv(self.lab.peers[0], "true")[1:],
            ],
            timeout=60,
        )
        found = re.search(r"kex: client->server cipher: (\S+) MAC: (\S+)", done.stderr)
        self.facts["openssh_cipher"] = found.group(1) if found else "?"
        try:
            from imgsync import transport

            self.facts["imgsync_ciphers"] = list(transport._CIPHERS)
        except (ImportError, AttributeError):
            self.facts["imgsync_ciphers"] = []

    def probe(self, peer: Peer, tarball: Path) -> None:
        """The transport alone, on loopback: which end limits an upload into imgsync."""
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
        variants = [
            ("OpenSSH ssh -> cat > /dev/null", self.lab.ssh_argv(peer, "cat > /dev/null"), "ssh"),
            (
                "OpenSSH ssh -> imgsync apply --receive",
                self.lab.ssh_argv(peer, shlex.join(receive)),
                "ssh",
            ),
            (
                "imgsync SshSession -> cat > /dev/null",
                [*own, "sh", "-c", "cat > /dev/null"],
                "imgsync transport",
            ),
            (
                "imgsync SshSession -> imgsync apply --receive",
                [*own, *receive],
                "imgsync transport",
            ),
        ]
        self.lab.write_configs([REF])
        for tool, argv, who in variants:
            remove(peer.inbox / "probe.tar")
            self.mark_start()
            self.lab.reset_counters()
            with RelaySampler([peer.relay]) as sampler:
                t0 = time.monotonic()
                done = measure.run(argv, on_start=sampler.watch, stdin=tarball, env=env)
                seconds = time.monotonic() - t0
            remove(peer.inbox / "probe.tar")
            if done.code == 3:
                self.say(f"  probe {tool}: n/a ({done.stderr.strip()[:200]})")
                continue
            done.check(tool)
            window = sampler.window()
            data: dict[str, Any] = {"bytes": size, "wall_rate": size / seconds}
            if window is not None:
                data["window_rate"] = window.rate
                data["cpu_share_upload"] = sampler.cpu_share(window.start, window.end)
            self.add(
                Run(
                    "tput",
                    LOOPBACK,
                    tool,
                    seconds,
                    self.wire([peer]),
                    {who: done.maxrss_kib},
                    data=data,
                )
            )

    def case_b(self, link: str) -> None:
        """v2 (a new ~10 MB top layer) to the peer that runs v1."""
        p1 = self.lab.peers[0]
        if p1.docker.image_id(REF) != self.v1:
            raise BenchError("case (b) needs p1 to run v1: run case (a) first")
        self.point(self.v2)
        tarball = self.save_to_file("b", link, self.v2, "v2.tar")
        self.facts["changed_layer_bytes"] = top_layer_bytes(tarball)
        remove(tarball)
        self.run_classic(
            "b", link, "classic: docker save | ssh docker load", [[(p1, REF, self.v2)]]
        )
        # back to v1 on p1: drop v2, re-tag v1 (the load left it there, untagged)
        p1.docker.remove_image(REF)
        self.point(self.v1, p1.docker.client())
        if p1.docker.image_id(REF) != self.v1:
            raise BenchError("p1 could not be put back on v1")
        self.lab.write_configs([REF])
        self.run_imgsync(
            "b", link, "imgsync (docker save of v2 included)", [p1], {REF: self.v2}, "loaded"
        )

    def case_c(self, link: str) -> None:
        """A cycle in which nothing changed: 10 small images, 4 peers."""
        everyone = self.lab.peers
        self.lab.write_configs(SMALL)
        if any(p.docker.image_id(ref) != self.small_ids[ref] for p in everyone for ref in SMALL):
            self.reset_peers(everyone)  # setup, not measured: every peer gets the 10 images
            self.run_imgsync(
                "c",
                link,
                "imgsync first sync (setup)",
                everyone,
                self.small_ids,
                "loaded",
                record=False,
            )
        run = self.run_imgsync(
            "c", link, "imgsync, nothing changed", everyone, self.small_ids, "unchanged"
        )
        run.notes.append(f"max {max(run.data['per_peer_wire'].values()) / 1e3:.1f} kB per peer")
        lanes = [[(p, ref, self.small_ids[ref]) for ref in SMALL] for p in everyone]
        self.run_classic("c", link, "classic: re-send all (4 peers in parallel)", lanes)

    def case_d(self, link: str) -> None:
        """First sync of the big image to 4 peers."""
        everyone = self.lab.peers
        self.point(self.v1)
        self.reset_peers(everyone)
        one_by_one = self.run_classic(
            "d",
            link,
            "classic: 4 pipelines one after another",
            [[(p, REF, self.v1) for p in everyone]],
        )
        self.reset_peers(everyone)
        parallel = self.run_classic(
            "d", link, "classic: 4 pipelines in parallel", [[(p, REF, self.v1)] for p in everyone]
        )
        slower = one_by_one if one_by_one.seconds > parallel.seconds else parallel
        slower.baseline = False
        slower.notes.append("(the slower classic variant)")
        self.reset_peers(everyone)
        self.clear_export()
        self.lab.write_configs([REF])
        self.run_imgsync(
            "d", link, "imgsync cold (docker save included)", everyone, {REF: self.v1}, "loaded"
        )
        self.reset_peers(everyone)
        self.run_imgsync(
            "d", link, "imgsync warm (already exported)", everyone, {REF: self.v1}, "loaded"
        )

    def case_mem(self) -> None:
        """A 2 GB image to 4 peers (cold): imgsync's peak RSS."""
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
        self.lab.write_configs([MEM_REF])
        try:
            self.run_imgsync(
                "mem",
                LOOPBACK,
                f"imgsync cold, {self.options.memory_mb} MB image",
                everyone,
                {MEM_REF: mem_id},
                "loaded",
            )
        finally:
            self.reset_peers(everyone)
            self.clear_export()
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(MEM_REF, force=True)


def pick_docker_cli(lab: Lab) -> tuple[list[str], dict[str, str] | None]:
    """The docker CLI for the classic pipeline, and the env it needs to talk to the lab's
    engine (DOCKER_API_VERSION pinned to the engine's when the CLI does not negotiate)."""
    engine_api = str(lab.source.client().version().get("ApiVersion", ""))
    tried = []
    for path in ("/usr/local/bin/docker", "/usr/bin/docker", shutil.which("docker")):
        if not path or not Path(path).exists():
            continue
        for env in (None, {"DOCKER_API_VERSION": engine_api}):
            full_env = None if env is None else {**_base_env(), **env}
            done = subprocess.run(
                [path, "-H", lab.source.url, "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                env=full_env,
                check=False,
                timeout=30,
            )
            if done.returncode == 0:
                return [path], full_env
            tried.append(f"{path} (env {env}): {done.stderr.strip()[:200]}")
    raise BenchError("no docker CLI talks to the lab's engine:\n  " + "\n  ".join(tried))


def _base_env() -> dict[str, str]:
    return dict(os.environ)


def scp_argv(lab: Lab, peer: Peer, source: Path, dest: Path) -> list[str]:
    """scp with the options of ``lab.ssh_argv`` (strict host key, the lab's key only)."""
    ssh = lab.ssh_argv(peer)
    options = [ssh[i + 1] for i, word in enumerate(ssh[:-1]) if word == "-o"]
    argv = ["scp", "-q", "-F", "/dev/null", "-i", str(lab.client_key), "-P", str(peer.port)]
    for option in options:
        argv += ["-o", option]
    return [*argv, str(source), f"root@{peer.address}:{dest}"]


def scp_dest(peer: Peer) -> Path:
    return peer.inbox.parent / "scp-copy.tar"


def top_layer_bytes(tarball: Path) -> int:
    """Size of the top layer's tar in a ``docker save`` tarball (what v2 adds to v1)."""
    with tarfile.open(tarball, mode="r:") as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise BenchError(f"{tarball} has no manifest.json")
        top = json.loads(member.read())[0]["Layers"][-1]
        return int(tar.getmember(top).size)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def mb(count: float) -> float:
    return count / 1e6


def inbox_marker_ctime(peers: list[Peer], since: float) -> float | None:
    """When the last marker landed in the peers' inboxes (its rename), if after ``since``:
    the end of the last receive."""
    stamps = []
    for peer in peers:
        for path in peer.inbox.glob("*.marker.json"):
            with contextlib.suppress(OSError):
                stamps.append(path.stat().st_ctime)
    latest = max(stamps, default=None)
    return latest if latest is not None and latest >= since else None


def foreign_dockerds(lab: Lab) -> int:
    """dockerd processes that are not this lab's (other labs running on the machine)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dockerd") and str(lab.root).encode() not in b" ".join(argv):
            count += 1
    return count
