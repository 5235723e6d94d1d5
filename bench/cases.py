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
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import docker
import docker.errors

from lab import Lab, Peer, build_image

from . import measure, shaping, sshwire
from .images import build_text_image, zstd_ratio
from .measure import BenchError, Finished, RelaySampler
from .shaping import Link

MiB = 1024 * 1024
SEED = 4242
REPO, TAG = "bench/app", "latest"
REF = f"{REPO}:{TAG}"  # the reference every big-image case syncs; it moves v1 <-> v2
KEEP_V1, KEEP_V2 = "bench/keep:v1", "bench/keep:v2"  # hold both versions on the source
TEXT_REF = "bench/text:1"  # case (e): the compressible image
SMALL = [f"bench/small{i}:1" for i in range(10)]
MEM_REF = "bench/mem:1"
PATCH_MB = 10
PREFERRED_CIPHER = "aes128-gcm@openssh.com"  # imgsync's first choice (paramiko)

LOOPBACK = Link("loopback", None)
SHAPED = Link("100 Mbit/s", shaping.SHAPED_RATE)
RTT = Link("100 Mbit/s + 20 ms RTT", shaping.SHAPED_RATE, 0.010)
LINKS = {"loopback": LOOPBACK, "100mbit": SHAPED, "rtt": RTT}  # --links names
BY_NAME = {link.name: link for link in LINKS.values()}
# which cases run on which link (each goal's link; nothing twice that a goal does not need)
PLAN: dict[str, tuple[str, ...]] = {
    LOOPBACK.name: ("a", "b", "c", "d"),
    SHAPED.name: ("b",),
    RTT.name: ("a", "e", "c", "d"),
}
CASES = ("a", "b", "c", "d", "e")
# imgsync's [ssh] compression as an operator would set it per link (--compression per-link):
# zstd where the link is the bottleneck, none on loopback (there it would only cost CPU)
PER_LINK_COMPRESSION = {LOOPBACK.name: "none", SHAPED.name: "zstd", RTT.name: "zstd"}
COMPRESSION_MODES = ("per-link", "none", "zstd")


def compression_for(mode: str, link: Link) -> str:
    """The ``[ssh] compression`` written for ``link`` under ``--compression mode``."""
    return PER_LINK_COMPRESSION[link.name] if mode == "per-link" else mode


def compression_setting(mode: str, links: tuple[Link, ...]) -> str:
    """The setting in words, for the page: what the configs had on the ``links`` run."""
    if mode != "per-link":
        return f'`compression = "{mode}"` on every link (--compression {mode})'
    by_value: dict[str, list[str]] = {}
    for link in links:
        by_value.setdefault(PER_LINK_COMPRESSION[link.name], []).append(link.name)
    return (
        "per link, as an operator would set it (--compression per-link, the default): "
        + "; ".join(f'`compression = "{v}"` on {", ".join(names)}' for v, names in by_value.items())
    )


CLASSIC = "classic: docker save | ssh docker load"
CLASSIC_4 = "classic: 4 pipelines in parallel"
CLASSIC_ALL = "classic: re-send all (4 peers in parallel)"
SCP = "OpenSSH scp of the tarball (SFTP)"
SAVE = "docker save -o FILE (source only)"
LOAD = "docker load -i FILE (peer only, no network)"
IMGSYNC_FIRST = "imgsync sync (docker save included)"
IMGSYNC_V2 = "imgsync sync (docker save of v2 included)"
IMGSYNC_NOOP = "imgsync sync, nothing changed"


@dataclass
class Options:
    size_mb: int = 500
    links: tuple[Link, ...] = (LOOPBACK, SHAPED, RTT)
    cases: tuple[str, ...] = CASES
    runs: int = 3
    startup_runs: int = 5
    memory_case: bool = True
    memory_mb: int = 2048
    compression: str = "per-link"  # imgsync's [ssh] compression: per-link, none or zstd


@dataclass
class Run:
    """One measured run; the runs of one (case, link, tool) make a row of the table."""

    case: str
    link: str
    tool: str
    seconds: float
    wire: int | None  # relay bytes up + down over the peers involved; None: no wire
    rss: dict[str, int] = field(default_factory=dict)  # process -> peak RSS, KiB
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # imgsync: where the time went
    data: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False  # a classic run this case's ratios are relative to
    rep: int = 0  # which round of the case
    ciphers: list[str] = field(default_factory=list)  # upload cipher(s) seen on the wire

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


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
        self.v1 = self.v2 = self.text = ""
        self.small_ids: dict[str, str] = {}
        self.link = LOOPBACK
        self.rep = 0
        self.cipher = PREFERRED_CIPHER
        self.compression = "none"  # [ssh] compression in the configs last written
        self._load_at_start = 0.0
        self._foreign_at_start = 0
        self._apply_help: str | None = None

    # -- bookkeeping ------------------------------------------------------------------------
    def mark_start(self) -> None:
        """Flush dirty pages (the last run's writes must not be written back during this
        one), and note how busy the machine is (others' labs may share the CPUs)."""
        os.sync()
        self._load_at_start = measure.load_average()
        self._foreign_at_start = foreign_dockerds(self.lab)

    def add(self, run: Run) -> Run:
        run.rep = self.rep
        run.data.setdefault("load1", self._load_at_start)
        run.data.setdefault("foreign_dockerd", self._foreign_at_start)
        self.runs.append(run)
        wire = "-" if run.wire is None else f"{mb(run.wire):.1f} MB"
        case = f"({run.case})"
        self.say(
            f"  {case:<6} {run.link:<22} #{run.rep + 1} {run.tool:<44} {run.seconds:7.2f}s  "
            f"{wire}  load {run.data['load1']:.1f}"
        )
        return run

    def reps(self) -> Iterator[int]:
        for rep in range(self.options.runs):
            self.rep = rep
            yield rep

    def use_link(self, link: Link) -> None:
        shaping.shape(self.lab, link)
        self.link = link

    @contextlib.contextmanager
    def unshaped(self) -> Iterator[None]:
        """For set-up that is not measured: loopback, then back to the current link."""
        link = self.link
        self.use_link(LOOPBACK)
        try:
            yield
        finally:
            self.use_link(link)

    def configure(self, images: list[str]) -> None:
        """The lab's configs for ``images``, with the ``[ssh] compression`` of the current
        link (``--compression``); every imgsync run notes the value it ran with."""
        self.compression = compression_for(self.options.compression, self.link)
        self.lab.write_configs(images, ssh_overrides={"compression": self.compression})

    def wire(self, peers: list[Peer]) -> tuple[int, list[str]]:
        """Bytes the peers' relays carried since their reset, and the upload ciphers seen."""
        time.sleep(0.05)  # the relay counts a chunk just after forwarding it
        heads = [head for peer in peers for head in shaping.relay(peer).heads()]
        return sum(p.relay.bytes_total for p in peers), sshwire.ciphers(heads)

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
        if "e" in self.options.cases and any("e" in PLAN[link.name] for link in self.options.links):
            text_layers = [(f"text{i}.txt", layer) for i in range(5)]
            self.text = build_text_image(client, TEXT_REF, text_layers, SEED)
            self.facts["text_compression"] = zstd_ratio(SEED)
        refs = [KEEP_V1, KEEP_V2, *([TEXT_REF] if self.text else [])]
        self.facts["image_bytes"] = {ref: saved_size(client, ref) for ref in refs}
        self.say(f"images built in {time.monotonic() - t0:.1f}s")

    def point(self, image_id: str, node: docker.DockerClient | None = None) -> None:
        """Make REF name ``image_id`` (on the source unless ``node``)."""
        client = node or self.lab.source.client()
        client.images.get(image_id).tag(REPO, TAG)

    def reset_peers(self, peers: list[Peer]) -> None:
        """Peers empty: no image (removed, then pruned), no inbox file, no scp copy."""
        for peer in peers:
            for ref in [REF, KEEP_V1, KEEP_V2, TEXT_REF, MEM_REF, *SMALL]:
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

    # -- start-up ---------------------------------------------------------------------------
    def measure_startup(self) -> None:
        """``imgsync --version`` (imports only), and the peer session's readiness: from
        starting ``imgsync --config PEER_CONFIG apply --session`` on a lab peer until its
        first byte on stdout (its hello). Each ``startup_runs`` times; the report takes
        the median."""
        count = self.options.startup_runs
        version = [self._timed([*self.lab.imgsync_cmd, "--version"]) for _ in range(count)]
        self.facts["cli_version_s"] = version
        self.say(f"imgsync --version: {spread_text(version)}")
        self.configure([REF])
        peer = self.lab.peers[0]
        base = [*self.lab.imgsync_cmd, "--config", str(peer.config_path), "apply"]
        if not self.peer_has("--session"):
            self.facts["session_ready_s"] = "n/a (peer has no --session)"
            self.say("peer session ready: n/a (imgsync apply has no --session)")
            return
        try:
            ready = [measure.first_output([*base, "--session"]) for _ in range(count)]
        except BenchError as err:
            self.facts["session_ready_s"] = f"n/a (failed: {str(err).splitlines()[0][:200]})"
            self.say(f"peer session ready: FAILED: {err}")
            return
        self.facts["session_ready_s"] = ready
        self.say(f"peer session ready: {spread_text(ready)}")

    @staticmethod
    def _timed(argv: list[str]) -> float:
        t0 = time.monotonic()
        measure.run(argv, timeout=60).check(argv[-1])
        return time.monotonic() - t0

    def calibrate_cipher(self) -> None:
        """The cipher imgsync's SSH (paramiko) ends up with against the lab's sshd, read from
        the wire; OpenSSH (classic, scp, probes) is then told to use the same one."""
        peer = self.lab.peers[0]
        self.configure([REF])
        seen: list[str] = []
        for args in (["check"], ["sync", "--dry-run", "--json"]):
            self.lab.reset_counters()
            measure.run(self.lab.imgsync_argv(*args), timeout=120)
            seen = sshwire.ciphers(shaping.relay(peer).heads())
            if seen:
                break
        self.cipher = seen[0] if seen else PREFERRED_CIPHER
        self.facts["imgsync_cipher"] = seen[0] if seen else f"not seen (assumed {PREFERRED_CIPHER})"
        self.lab.reset_counters()
        self.ssh_check(peer)
        got = sshwire.ciphers(shaping.relay(peer).heads())
        self.facts["openssh_options"] = " ".join(sshwire.openssh_options(self.cipher))
        self.facts["openssh_cipher"] = ", ".join(got) or "?"
        self.say(f"cipher: imgsync {self.facts['imgsync_cipher']}; OpenSSH {got}")

    def ssh_check(self, peer: Peer) -> None:
        measure.run(self.ssh_argv(peer, "true"), timeout=60).check("ssh true")

    # -- the three ways to ship an image ----------------------------------------------------
    def ssh_argv(self, peer: Peer, *command: str) -> list[str]:
        """The lab's ssh command line, with the cipher imgsync uses."""
        argv = self.lab.ssh_argv(peer, *command)
        return [argv[0], *sshwire.openssh_options(self.cipher), *argv[1:]]

    def save_to_file(self, case: str, name: str) -> Path:
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
                self.link.name,
                SAVE,
                seconds,
                None,
                {"docker CLI": done.maxrss_kib},
                [f"{mb(size):.1f} MB tarball"],
                data={"bytes": size},
            )
        )
        return path

    def classic_argv(self, peer: Peer, ref: str) -> tuple[list[str], list[str]]:
        left = [*self.docker_cli, "-H", self.lab.source.url, "save", ref]
        remote = [*self.remote_env(), self.docker_cli[0], "-H", peer.docker.url, "load"]
        return left, self.ssh_argv(peer, *remote)

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
        self, case: str, tool: str, plan: list[list[tuple[Peer, str, str]]], image_bytes: int = 0
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
        wire, ciphers = self.wire(list(peers.values()))
        count = sum(len(lane) for lane in plan)
        run = Run(
            case,
            self.link.name,
            tool,
            seconds,
            wire,
            peaks,
            [f"{count} x save|ssh|load"],
            data={"bytes": image_bytes} if image_bytes else {},
            baseline=True,
            ciphers=ciphers,
        )
        return self.add(run)

    def run_scp(self, case: str, peer: Peer, tarball: Path) -> Run:
        dest = scp_dest(peer)
        remove(dest)
        argv = scp_argv(self.lab, peer, tarball, dest, self.cipher)
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
        data: dict[str, Any] = {"bytes": size}
        if window is not None:
            data["window_rate"] = window.rate  # (scp's CPU is not the crypto: its ssh does it)
        wire, ciphers = self.wire([peer])
        run = Run(
            case,
            self.link.name,
            SCP,
            seconds,
            wire,
            {"scp + its ssh": done.maxrss_kib},
            data=data,
            ciphers=ciphers,
        )
        return self.add(run)

    def run_imgsync(
        self,
        case: str,
        tool: str,
        peers: list[Peer],
        expect: dict[str, str],
        action: str,
        *,
        record: bool = True,
        image_bytes: int = 0,
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
        results = self._results(done, peers, expect, action)
        wire, ciphers = self.wire(peers)
        saves = len(self.lab.source.events_since(since, "save"))
        image_events = [e for p in peers for e in p.docker.events_since(since)]
        load_events = [e for e in image_events if event_action(e) == "load"]
        received = inbox_marker_ctime(peers, t0)
        phases, data = phase_split(done, sampler, t0, t_end, image_events, received)
        transfers = sorted({str(r.get("transfer")) for r in results if r.get("transfer")})
        data.update(
            saves=saves,
            loads=len(load_events),
            transfers=transfers,
            bytes_sent=sum(int(r.get("bytes_sent", 0)) for r in results),
            per_peer_wire={p.name: p.relay.bytes_total for p in peers},
            cpu_seconds=done.cpu_seconds,
            compression=self.compression,
        )
        if image_bytes:
            data["bytes"] = image_bytes
        notes = [
            f'`compression = "{self.compression}"`',
            f"{saves} docker save, {len(load_events)} docker load",
        ]
        if transfers:
            notes.append("/".join(transfers) + " bundle")
        run = Run(
            case,
            self.link.name,
            tool,
            t_end - t0,
            wire,
            {"imgsync": done.maxrss_kib},
            notes,
            phases,
            data,
            ciphers=ciphers,
        )
        return self.add(run) if record else run

    def _results(
        self, done: Finished, peers: list[Peer], expect: dict[str, str], action: str
    ) -> list[dict[str, Any]]:
        """The sync's JSON results, checked: every one ``action``, every peer on ``expect``."""
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise BenchError(
                f"imgsync sync printed no JSON (exit {done.code}):\n"
                f"{done.stdout}\n{done.stderr[-3000:]}"
            ) from None
        results: list[dict[str, Any]] = report.get("results", [])
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
        return results

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

    def image_bytes(self, ref: str) -> int:
        return int(self.facts.get("image_bytes", {}).get(ref, 0))

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
        self.add(Run("a", LOOPBACK.name, LOAD, seconds, None, {"docker CLI": done.maxrss_kib}))
        self.reset_peers([peer])

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

    def peer_has(self, option: str) -> bool:
        """Whether the peer's ``imgsync apply`` knows ``option`` (the protocol moves)."""
        if self._apply_help is None:
            peer = self.lab.peers[0]
            argv = [*self.lab.imgsync_cmd, "--config", str(peer.config_path), "apply", "--help"]
            self._apply_help = measure.run(argv, timeout=60).stdout
        return option in self._apply_help

    def ensure_on_v1(self, peer: Peer) -> None:
        """Set-up for (b), not measured: ``peer`` runs v1, synced by imgsync."""
        if peer.docker.image_id(REF) == self.v1:
            return
        with self.unshaped():
            self.reset_peers([peer])
            self.point(self.v1)
            self.configure([REF])
            self.clear_export()
            self.run_imgsync("b", "setup", [peer], {REF: self.v1}, "loaded", record=False)

    def put_back_v1(self, peer: Peer, inbox: dict[str, bytes | None] | None = None) -> None:
        """After v2 was loaded: v2 removed, v1 (left there untagged) tagged again, and the
        inbox as it was before (``inbox``: :func:`inbox_snapshot`). When v1 is gone from the
        peer (pruned), it is synced there again (not measured)."""
        peer.docker.remove_image(REF)
        with contextlib.suppress(docker.errors.DockerException):
            self.point(self.v1, peer.docker.client())
        if peer.docker.image_id(REF) == self.v1:
            if inbox is not None:
                inbox_restore(peer, inbox)
            return
        self.say(f"  {peer.name} no longer holds v1: synced again (not measured)")
        self.ensure_on_v1(peer)
        self.point(self.v2)
        self.configure([REF])

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
OVERLAP_CONNECT = "export; peers connect + ask (overlapped)"
OVERLAP_UPLOAD = "export + upload (overlapped)"
LOADED_ON_ARRIVAL = "verify + tag (loaded on arrival, during the upload)"


def phase_split(
    done: Finished,
    sampler: RelaySampler,
    t0: float,
    t_end: float,
    peer_events: list[dict[str, Any]],
    received: float | None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Split an imgsync run into consecutive phases at points seen from outside: its log,
    the relay samples, the marker's ctime in the peers' inboxes and the peers' image events
    (``load``, ``tag``). Each phase runs from the last point to its own, so none is
    negative; a point that is not seen (a log line the code no longer writes), or comes
    before the one already reached, merges its phase into the next. Where imgsync does two
    things at once (the upload starts while ``docker save`` still writes), the phase's name
    says so."""
    events = measure.log_events(done.stderr)

    def stamps(name: str) -> list[float]:
        return [float(e["ts"]) for e in events if e.get("event") == name and "ts" in e]

    phases: dict[str, float] = {}
    data: dict[str, Any] = {}
    cursor = t0

    def until(name: str, point: float | None) -> None:
        nonlocal cursor
        if point is not None and point > cursor:
            phases[name] = phases.get(name, 0.0) + point - cursor
            cursor = point

    finished = [e for e in events if e.get("event") == "cycle finished" and "ts" in e]
    cycle_end = float(finished[-1]["ts"]) if finished else None
    if cycle_end is not None and isinstance(finished[-1].get("seconds"), int | float):
        until("startup", cycle_end - float(finished[-1]["seconds"]))
    exporting, exported = stamps("exporting"), stamps("exported")
    export_start = min(exporting, default=None)
    export_end = max(exported, default=None)
    first_send = min(stamps("sending"), default=None)
    window = sampler.window()
    streamed = stamps("streaming while it is exported")
    overlapped = (
        export_end is not None
        and window is not None
        and (any(t < export_end for t in streamed) or window.start < export_end)
    )
    data["overlapped"] = overlapped
    if export_start is not None and export_end is not None:
        data["cpu_share_export"] = sampler.cpu_share(export_start, export_end)
    until("startup", export_start)
    if overlapped:
        assert window is not None and export_end is not None
        until(OVERLAP_CONNECT, first_send)
        until(OVERLAP_UPLOAD, min(export_end, window.end))
        until("upload (after the export)", window.end)
        until("export (after the upload)", export_end)
    else:
        until("export", export_end)
        until("connect + ask", first_send)
        until("upload", window.end if window is not None else None)
    if window is not None:
        data["window_rate"] = window.rate
        data["window_seconds"] = window.seconds
        data["cpu_share_upload"] = sampler.cpu_share(window.start, window.end)
        until("end of receive", received)

    def last(action: str) -> float | None:
        found = [int(e["timeNano"]) / 1e9 for e in peer_events if event_action(e) == action]
        return max(found, default=None)

    last_load, last_tag = last("load"), last("tag")
    applied = max((t for t in (last_load, last_tag) if t is not None), default=None)
    on_arrival = last_load is not None and received is not None and last_load <= received
    until(LOADED_ON_ARRIVAL if on_arrival else "apply", applied)
    until("report + state DB" if window is not None else "connect + ask", cycle_end)
    until("exit" if cycle_end is not None else "rest", t_end)
    return phases, data


def event_action(event: dict[str, Any]) -> str:
    """A docker event's action (``load``, ``tag``…), from the API's new or old field."""
    return str(event.get("Action") or event.get("status") or "")


# -- helpers --------------------------------------------------------------------------------
def pick_docker_cli(lab: Lab) -> tuple[list[str], dict[str, str] | None]:
    """The docker CLI for the classic pipeline, and the env it needs to talk to the lab's
    engine (DOCKER_API_VERSION pinned to the engine's when the CLI does not negotiate)."""
    engine_api = str(lab.source.client().version().get("ApiVersion", ""))
    tried = []
    for path in ("/usr/local/bin/docker", "/usr/bin/docker", shutil.which("docker")):
        if not path or not Path(path).exists():
            continue
        for env in (None, {"DOCKER_API_VERSION": engine_api}):
            full_env = None if env is None else {**os.environ, **env}
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


def spread_text(values: list[float]) -> str:
    spread = measure.Spread.of(values)
    return "-" if spread is None else spread.text(2, "s")


def saved_size(client: docker.DockerClient, ref: str) -> int:
    """The size of ``docker save REF``, streamed and counted (nothing written)."""
    return sum(len(chunk) for chunk in client.images.get(ref).save(chunk_size=MiB))


def scp_argv(lab: Lab, peer: Peer, source: Path, dest: Path, cipher: str) -> list[str]:
    """scp with the options of ``lab.ssh_argv`` (strict host key, the lab's key only) and
    ``cipher``."""
    ssh = lab.ssh_argv(peer)
    options = [ssh[i + 1] for i, word in enumerate(ssh[:-1]) if word == "-o"]
    argv = ["scp", "-q", "-F", "/dev/null", "-i", str(lab.client_key), "-P", str(peer.port)]
    argv += sshwire.openssh_options(cipher)
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


def inbox_snapshot(peer: Peer) -> dict[str, bytes | None]:
    """The inbox's file names, with the content of the small ones (records, markers)."""
    found: dict[str, bytes | None] = {}
    for path in peer.inbox.iterdir():
        if path.is_file() and path.stat().st_size <= MiB:
            found[path.name] = path.read_bytes()
        else:
            found[path.name] = None
    return found


def inbox_restore(peer: Peer, snapshot: dict[str, bytes | None]) -> None:
    """The inbox as in ``snapshot``: new files removed, small files' content put back."""
    for path in peer.inbox.iterdir():
        if path.name not in snapshot:
            remove(path)
    for name, content in snapshot.items():
        path = peer.inbox / name
        if content is not None and (not path.exists() or path.read_bytes() != content):
            path.write_bytes(content)


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
