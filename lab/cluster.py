"""The whole lab: a source Docker host and N peers, each peer behind sshd and a counting relay.

Layout (ROOT is given; RUN is ``/run/isl-XXXXXX``, short because of unix socket limits)::

    ROOT/client/id_ed25519, authorized_keys, known_hosts   the source's SSH identity
    ROOT/source/            dockerd data + logs, imgsync.toml, export/, state.db
    ROOT/pN/                dockerd data + logs, sshd/ (host key, config, log),
                            inbox/, imgsync.toml (the [receiver] config)
    RUN/source, RUN/pN      exec roots: API and containerd sockets

A node may run Docker 26 with the containerd image store instead of the host's Docker
(``source_engine="26"``, ``peer_engines=[..., "26"]``): its dockerd data and sockets then live in
``D26/x/<lab id>/<node>`` inside the Debian 13 root of lab/chroot.py (D26).

Peers named ``"shared"`` in ``peer_engines`` all use one dockerd (ROOT/shared): for tests of the
source's side of a large fleet, each such peer still has its own sshd, relay, inbox and config.

Peer pN (N = 1, 2, …) listens for SSH on 127.0.0.(10+N):22000+N and is reached by the source
through a ByteCountingRelay on 127.0.0.(10+N):23000+N; known_hosts is keyed by the relay's
address, so what the source sees is sshd's host key.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tomlw
from ._proc import LabError, install_sigterm_handler, pick_port, remove_tree
from .chroot import docker26_root, docker26_unavailable
from .containerd_node import ContainerdNode
from .docker_node import DockerNode
from .pacing import SharedLink
from .podman_node import PodmanNode
from .relay import ByteCountingRelay
from .sshd import SshServer, _keygen

ENGINE_HOST = "host"  # the host's dockerd (Debian 12: 20.10, classic image store)
ENGINE_26 = "26"  # Debian 13's dockerd 26 with the containerd image store (lab/chroot.py)
CONTAINERD_16 = "containerd-1.6"  # a Kubernetes node's containerd alone: Debian 12's (peers only)
CONTAINERD_17 = "containerd-1.7"  # … the Debian 13 root's (lab/chroot.py)
PODMAN_HOST = "podman"  # Podman with its Docker-compatible API: Debian 12's 4.3 (peers only)
PODMAN_5 = "podman-5"  # … the Debian 13 root's 5.x
ENGINE_SHARED = "shared"  # the host's Docker, one dockerd for every peer that names it (peers only)
PEER_ONLY = (CONTAINERD_16, CONTAINERD_17, PODMAN_HOST, PODMAN_5, ENGINE_SHARED)
Node = DockerNode | ContainerdNode | PodmanNode


@dataclass
class Peer:
    name: str
    docker: Node  # the peer's engine: Docker (either store), containerd alone, or Podman
    sshd: SshServer
    relay: ByteCountingRelay
    inbox: Path
    config_path: Path  # the peer's own imgsync.toml ([receiver])
    address: str  # where the source connects (the relay)
    port: int  # the relay's port


def _merge(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(base)
    merged.update(overrides or {})
    return {k: v for k, v in merged.items() if v is not None}


class Lab:
    """Start with ``with Lab(root) as lab:`` (or start()/stop()); see the module docstring."""

    def __init__(
        self,
        root: Path,
        peers: int = 2,
        imgsync_cmd: list[str] | None = None,
        *,
        keep: bool = False,
        storage_driver: str | None = None,
        source_engine: str = ENGINE_HOST,
        peer_engines: list[str] | None = None,
    ) -> None:
        """``source_engine`` / ``peer_engines`` (one per peer, default all the host's):
        :data:`ENGINE_HOST` (the host's Docker, classic store) or :data:`ENGINE_26`."""
        if not 1 <= peers <= 200:
            raise ValueError("peers must be between 1 and 200")
        self.peer_engines = list(peer_engines or [ENGINE_HOST] * peers)
        if len(self.peer_engines) != peers:
            raise ValueError(f"peer_engines names {len(self.peer_engines)} engines for {peers}")
        unknown = {source_engine, *self.peer_engines} - {ENGINE_HOST, ENGINE_26, *PEER_ONLY}
        if unknown or source_engine in PEER_ONLY:
            raise ValueError(
                f"unknown engines {sorted(unknown or {source_engine})}: use {ENGINE_HOST!r} or "
                f"{ENGINE_26!r} (and for peers {', '.join(PEER_ONLY)})"
            )
        self.root = Path(root).resolve()
        self.keep = keep
        self.imgsync_cmd = imgsync_cmd or [str(Path(sys.executable).parent / "imgsync")]
        token = secrets.token_hex(3)
        self.run_root = Path(f"/run/isl-{token}")
        self.chroot_dir: Path | None = None
        if {ENGINE_26, CONTAINERD_17, PODMAN_5} & {source_engine, *self.peer_engines}:
            reason = docker26_unavailable()
            if reason is not None:
                raise LabError(reason)
            self.chroot_dir = docker26_root() / "x" / token
        self.client_dir = self.root / "client"
        self.client_key = self.client_dir / "id_ed25519"
        self.authorized_keys = self.client_dir / "authorized_keys"
        self.known_hosts = self.client_dir / "known_hosts"
        self.source_config = self.root / "source" / "imgsync.toml"
        self.export_dir = self.root / "source" / "export"
        self.state_path = self.root / "source" / "state.db"
        source = self._node("source", source_engine, storage_driver)
        assert isinstance(source, DockerNode)
        self.source = source
        self._n_peers = peers
        self._storage_driver = storage_driver
        self._shared: Node | None = None
        self.peers: list[Peer] = []
        self.timings: dict[str, float] = {}
        self._started = False

    def _node(self, name: str, engine: str, storage_driver: str | None) -> Node:
        if engine in (ENGINE_26, CONTAINERD_17, PODMAN_5):
            assert self.chroot_dir is not None
            home = self.chroot_dir / name
            if engine == CONTAINERD_17:
                return ContainerdNode(name, home, home / "r", chroot=docker26_root())
            if engine == PODMAN_5:
                return PodmanNode(name, home, home / "r", chroot=docker26_root())
            return DockerNode(name, home, home / "r", chroot=docker26_root())
        if engine == ENGINE_SHARED:
            if self._shared is None:
                self._shared = DockerNode("shared", self.root / "shared", self.run_root / "shared")
            return self._shared
        if engine == CONTAINERD_16:
            return ContainerdNode(name, self.root / name / "ctd", self.run_root / name)
        if engine == PODMAN_HOST:
            return PodmanNode(name, self.root / name / "podman", self.run_root / name)
        return DockerNode(name, self.root / name, self.run_root / name, storage_driver)

    def __repr__(self) -> str:
        return f"Lab(root={self.root}, peers={[p.name for p in self.peers]})"

    def peer(self, name: str) -> Peer:
        for peer in self.peers:
            if peer.name == name:
                return peer
        raise KeyError(name)

    # -- lifecycle --------------------------------------------------------------------------
    def _make_peers(self) -> None:
        used: set[int] = set()
        for i in range(1, self._n_peers + 1):
            name, address = f"p{i}", f"127.0.0.{10 + i}"
            ssh_port = pick_port(address, 22000 + i, used)
            relay_port = pick_port(address, 23000 + i, used | {ssh_port})
            used |= {ssh_port, relay_port}
            root = self.root / name
            self.peers.append(
                Peer(
                    name=name,
                    docker=self._node(name, self.peer_engines[i - 1], self._storage_driver),
                    sshd=SshServer(name, address, ssh_port, root / "sshd", self.authorized_keys),
                    relay=ByteCountingRelay(address, relay_port, address, ssh_port),
                    inbox=root / "inbox",
                    config_path=root / "imgsync.toml",
                    address=address,
                    port=relay_port,
                )
            )

    def start(self) -> Lab:
        """Start every daemon (dockerds become ready in parallel); on failure tear down."""
        if self._started:
            return self
        t0 = time.monotonic()
        install_sigterm_handler()
        self._started = True
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.run_root.mkdir(mode=0o700)
            _keygen(self.client_key, "imgsync-lab-client")
            self.peers = []
            self.authorized_keys.write_text(self.client_key.with_name("id_ed25519.pub").read_text())
            self._make_peers()
            for peer in self.peers:
                peer.inbox.mkdir(parents=True, exist_ok=True)
            # Spawn from this thread (parent-death signal is per thread), wait in parallel.
            nodes = self._nodes()
            for node in nodes:
                node.spawn()
            for peer in self.peers:
                peer.sshd.spawn()
            waits = [n.wait_ready for n in nodes] + [p.sshd.wait_ready for p in self.peers]
            with ThreadPoolExecutor(max_workers=min(16, len(waits))) as pool:
                for future in [pool.submit(w) for w in waits]:
                    future.result()
            for peer in self.peers:
                peer.relay.start()
            self.write_known_hosts()
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Tear everything down; never raises for a part that is already gone.  Idempotent."""
        t0 = time.monotonic()
        errors: list[str] = []

        def attempt(what: str, func: Any) -> None:
            try:
                func()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        for peer in self.peers:
            attempt(f"relay {peer.name}", peer.relay.stop)
        for peer in self.peers:
            attempt(f"sshd {peer.name}", peer.sshd.stop)
        errors += _stop_all(self._nodes())
        attempt("run dir", lambda: remove_tree(self.run_root))
        if self.chroot_dir is not None and not self.keep:
            chroot_dir = self.chroot_dir
            attempt("Docker 26 node dirs", lambda: remove_tree(chroot_dir))
        if not self.keep:
            attempt("root", lambda: remove_tree(self.root))
        self._started = False
        self.timings["stop"] = time.monotonic() - t0
        if errors:
            print("lab teardown problems:\n  " + "\n  ".join(errors), file=sys.stderr)

    def _nodes(self) -> list[Node]:
        """Every engine once: the source's and the peers' (a shared one counted once)."""
        nodes: list[Node] = [self.source]
        for peer in self.peers:
            if all(peer.docker is not node for node in nodes):
                nodes.append(peer.docker)
        return nodes

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- SSH trust --------------------------------------------------------------------------
    def write_known_hosts(self) -> Path:
        """(Re)write known_hosts with every peer's current host key, keyed by relay addr:port."""
        lines = [p.sshd.host_key_line(p.address, p.port) for p in self.peers]
        self.known_hosts.write_text("\n".join(lines) + "\n")
        return self.known_hosts

    def ssh_argv(self, peer: Peer, *command: str) -> list[str]:
        """An ``ssh`` command line that reaches ``peer`` the way imgsync does (via the relay)."""
        options = {
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes",
            "BatchMode": "yes",
            "ConnectTimeout": "5",
        }
        argv = ["ssh", "-F", "/dev/null", "-i", str(self.client_key), "-p", str(peer.port)]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        return [*argv, f"root@{peer.address}", *command]

    # -- imgsync ----------------------------------------------------------------------------
    def write_configs(
        self,
        images: list[str],
        *,
        ssh_overrides: dict[str, Any] | None = None,
        peer_overrides: dict[str, dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write every peer's receiver config and the source config; returns the latter.

        Overrides merge keys into [ssh] / a peer's [[peers]] table; a None value removes a key.
        """
        peer_overrides = peer_overrides or {}
        unknown = set(peer_overrides) - {p.name for p in self.peers}
        if unknown:
            raise KeyError(f"unknown peers in peer_overrides: {sorted(unknown)}")
        peer_tables = []
        for peer in self.peers:
            overrides = peer_overrides.get(peer.name, {})
            inbox = str(overrides.get("inbox") or peer.inbox)
            receiver = {"receiver": {"inbox": inbox, **peer.docker.receiver_keys()}}
            peer.config_path.write_text(tomlw.dumps(receiver))
            apply = (
                f"{shlex.join(self.imgsync_cmd)} --config "
                f"{shlex.quote(str(peer.config_path))} apply"
            )
            peer_tables.append(
                _merge(
                    {
                        "name": peer.name,
                        "host": peer.address,
                        "port": peer.port,
                        "inbox": str(peer.inbox),
                        "apply_command": apply,
                    },
                    overrides,
                )
            )
        config: dict[str, Any] = {
            "source": {
                "docker_host": self.source.url,
                "images": list(images),
                "export_dir": str(self.export_dir),
            },
            "ssh": _merge(
                {
                    "user": "root",
                    "identity_file": str(self.client_key),
                    "known_hosts": str(self.known_hosts),
                    "connect_timeout": 5,
                },
                ssh_overrides,
            ),
            "peers": peer_tables,
            "state": {"path": str(self.state_path)},
        }
        config.update(extra or {})
        self.source_config.parent.mkdir(parents=True, exist_ok=True)
        self.source_config.write_text(tomlw.dumps(config))
        return self.source_config

    def imgsync_argv(self, *args: str, config: Path | None = None) -> list[str]:
        return [*self.imgsync_cmd, "--config", str(config or self.source_config), *args]

    def run_imgsync(
        self,
        *args: str,
        config: Path | None = None,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the imgsync CLI with the source config (or ``config``); output is captured."""
        if not Path(self.imgsync_cmd[0]).exists() and "/" in self.imgsync_cmd[0]:
            raise LabError(
                f"imgsync command not found: {self.imgsync_cmd[0]} "
                "(run scripts/bootstrap to install the package)"
            )
        return subprocess.run(
            self.imgsync_argv(*args, config=config),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def cap_uplink(self, rate: float | None) -> None:
        """Pace everything the source sends, to all peers together, to ``rate`` bytes/s (its
        uplink); ``None`` lifts the cap."""
        shared = SharedLink(rate) if rate else None
        for peer in self.peers:
            peer.relay.uplink = shared

    def reset_counters(self) -> None:
        for peer in self.peers:
            peer.relay.reset()


def _stop_all(nodes: list[Node]) -> list[str]:
    """Stop every node in parallel; return what went wrong, by node."""
    errors = []
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        for node, future in [(n, pool.submit(n.stop)) for n in nodes]:
            try:
                future.result()
            except Exception as exc:
                errors.append(f"engine {node.name}: {exc}")
    return errors
