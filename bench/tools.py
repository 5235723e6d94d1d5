"""Running each tool once and measuring it: the classic pipeline, OpenSSH scp, imgsync."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from lab import Peer

from . import measure
from .measure import BenchError, Finished
from .names import (
    LOAD,
    LOOPBACK,
    REF,
    SAVE,
    SCP,
    Run,
)
from .phases import (
    event_action,
    phase_split,
)
from .rig import Rig
from .sampler import RelaySampler
from .util import (
    inbox_marker_ctime,
    inbox_restore,
    mb,
    remove,
    scp_argv,
    scp_dest,
)


class Tools(Rig):
    """The tools the cases compare: the classic pipeline, scp, and imgsync, each run measured."""

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
