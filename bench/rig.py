"""The benchmark's rig: a started lab shaped, configured and reset between runs."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import docker.errors

from lab import Lab, Peer, build_image

from . import measure, shaping, sshwire
from .images import build_text_image, zstd_ratio
from .measure import BenchError
from .names import (
    KEEP_V1,
    KEEP_V2,
    LOOPBACK,
    MEM_REF,
    PATCH_MB,
    PLAN,
    PREFERRED_CIPHER,
    REF,
    REPO,
    SEED,
    SMALL,
    TAG,
    TEXT_REF,
    MiB,
    Options,
    Run,
    compression_for,
)
from .shaping import Link
from .util import (
    foreign_dockerds,
    mb,
    pick_docker_cli,
    remove,
    saved_size,
    scp_dest,
    spread_text,
)


class Rig:
    """The lab as the benchmark drives it: links, images, configs, peers reset between runs,
    start-up and cipher checks."""

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

    def peer_has(self, option: str) -> bool:
        """Whether the peer's ``imgsync apply`` knows ``option`` (the protocol moves)."""
        if self._apply_help is None:
            peer = self.lab.peers[0]
            argv = [*self.lab.imgsync_cmd, "--config", str(peer.config_path), "apply", "--help"]
            self._apply_help = measure.run(argv, timeout=60).stdout
        return option in self._apply_help

    def image_bytes(self, ref: str) -> int:
        return int(self.facts.get("image_bytes", {}).get(ref, 0))
