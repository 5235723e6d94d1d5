"""One simulated Docker host: a private containerd plus a private dockerd, on unix sockets.

Several of these run side by side on one machine.  Everything a daemon would share with
another is moved into the node's own directories:

* ``ROOT/data``   -- dockerd ``--data-root`` (images, layers) and containerd's root;
* ``RUN_DIR``     -- dockerd ``--exec-root``, the API socket, pid files, containerd's socket
  and state.  Unix socket paths are limited to ~107 bytes, so keep ``RUN_DIR`` short
  (the lab uses ``/run/isl-XXXXXX/<node>``);
* ``ROOT/daemon.json`` -- passed with ``--config-file`` so ``/etc/docker/daemon.json`` is
  never read; it also moves the trust key (``/etc/docker/key.json`` by default) here.

We start containerd ourselves instead of letting dockerd manage one: dockerd 20.10 silently
uses the *system* containerd whenever ``/run/containerd/containerd.sock`` exists, which would
make every node share one containerd, and a managed containerd would outlive a SIGKILLed
dockerd.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ._proc import LabError, ManagedProcess, unix_socket_ready, unmount_under
from .chroot import RootedNode

CLIENT_TIMEOUT = 300  # seconds; image save/load of a few hundred MB must fit

_DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
]


class DockerNode(RootedNode):
    """A dockerd (+ containerd) owned by the lab, reachable at :attr:`url`."""

    def __init__(
        self,
        name: str,
        root: Path,
        run_dir: Path,
        storage_driver: str | None = None,
        *,
        chroot: Path | None = None,
    ) -> None:
        """``chroot``: run the engine installed in that root (lab/chroot.py: Docker 26, with
        the containerd image store); ``root`` and ``run_dir`` must then lie inside it."""
        super().__init__(name, root, run_dir, chroot)
        self.storage_driver = storage_driver
        self.data_root = root / "data"
        self.socket = run_dir / "d.sock"
        self.containerd_socket = run_dir / "ctd.sock"
        if len(str(self.containerd_socket) + ".ttrpc") > 100:
            raise LabError(f"run dir {run_dir} is too long for unix sockets; use e.g. /run/isl-x/")
        self._containerd = ManagedProcess(
            f"containerd[{name}]", self._containerd_argv(), root / "containerd.log"
        )
        self._dockerd = ManagedProcess(
            f"dockerd[{name}]", self._dockerd_argv(), root / "dockerd.log"
        )
        self._client: docker.DockerClient | None = None

    # -- identity ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self._dockerd.pid

    def receiver_keys(self) -> dict[str, Any]:
        """The ``[receiver]`` keys of an imgsync peer loading into this node."""
        return {"docker_host": self.url}

    @property
    def containerd_pid(self) -> int | None:
        return self._containerd.pid

    @property
    def log_path(self) -> Path:
        return self._dockerd.log_path

    @property
    def containerd_store(self) -> bool:
        """True for the Docker 26 node: its images live in containerd (image ID = manifest
        digest), not in the classic graph driver store (image ID = config digest)."""
        return self.chroot is not None

    def __repr__(self) -> str:
        return f"DockerNode({self.name!r}, url={self.url!r}, pid={self.pid})"

    # -- lifecycle --------------------------------------------------------------------------
    def _containerd_argv(self) -> list[str]:
        return [
            *self._prefix(),
            "containerd",
            "--config",
            self._inner(self.root / "containerd.toml"),
        ]

    def _dockerd_argv(self) -> list[str]:
        argv = [
            *self._prefix(),
            "dockerd",
            "--config-file",
            self._inner(self.root / "daemon.json"),
            "--data-root",
            self._inner(self.data_root),
            "--exec-root",
            self._inner(self.run_dir),
            "--host",
            "unix://" + self._inner(self.socket),
            "--pidfile",
            self._inner(self.run_dir / "d.pid"),
            "--containerd",
            self._inner(self.containerd_socket),
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
        ]
        if self.storage_driver:
            argv += ["--storage-driver", self.storage_driver]
        return argv

    def _write_configs(self) -> None:
        for path in (self.root, self.data_root, self.run_dir):
            path.mkdir(parents=True, exist_ok=True)
        daemon: dict[str, Any]
        if self.containerd_store:
            daemon = {"features": {"containerd-snapshotter": True}}
        else:
            daemon = {"deprecated-key-path": str(self.root / "key.json")}
        (self.root / "daemon.json").write_text(json.dumps(daemon, indent=2) + "\n")
        inner = self._inner
        toml = "\n".join(
            [
                "version = 2",
                f"root = {json.dumps(inner(self.data_root / 'containerd'))}",
                f"state = {json.dumps(inner(self.run_dir / 'ctd'))}",
                f"disabled_plugins = {json.dumps(_DISABLED_PLUGINS)}",
                "[grpc]",
                f"  address = {json.dumps(inner(self.containerd_socket))}",
                "[debug]",
                '  level = "warn"',
                '[plugins."io.containerd.internal.v1.opt"]',
                f"  path = {json.dumps(inner(self.data_root / 'containerd-opt'))}",
                "",
            ]
        )
        (self.root / "containerd.toml").write_text(toml)

    def spawn(self) -> None:
        """Start containerd (waits for it: ~20 ms) and dockerd (does not wait)."""
        if self._dockerd.alive():
            return
        self._write_configs()
        self._mount()
        self._containerd.spawn()
        self._containerd.wait_until(
            lambda: unix_socket_ready(self.containerd_socket),
            "listening on " + str(self.containerd_socket),
            timeout=30,
        )
        self._dockerd.spawn()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the API answers ``/_ping``."""
        self._dockerd.wait_until(self._ping, f"answering on {self.url}", timeout=timeout)

    def start(self, timeout: float = 60.0) -> None:
        try:
            self.spawn()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(self.client().ping())
        except docker.errors.DockerException:
            self._close_client()
            return False

    def stop(self) -> None:
        """Stop dockerd, then containerd; unmount leftovers.  Safe to call repeatedly."""
        self._close_client()
        try:
            self._dockerd.stop(timeout=20)
        finally:
            self._containerd.stop(timeout=10)
            unmount_under(self.run_dir, self.data_root)
            self._unmount()

    # -- API helpers ------------------------------------------------------------------------
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.DockerClient(
                base_url=self.url, version="auto", timeout=CLIENT_TIMEOUT
            )
        return self._client

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def image_id(self, ref: str) -> str | None:
        """The image ID (``sha256:…``) that ``ref`` names on this node, or None."""
        try:
            return str(self.client().images.get(ref).id)
        except docker.errors.ImageNotFound:
            return None

    def image_refs(self) -> dict[str, str]:
        """Every tag on this node -> image ID."""
        refs: dict[str, str] = {}
        for image in self.client().images.list():
            for tag in image.tags:
                refs[tag] = str(image.id)
        return refs

    def events_since(self, ts: float, event: str | None = None) -> list[dict[str, Any]]:
        """Image events (``load``, ``tag``, ``delete``, …) from ``ts`` (epoch seconds) to now."""
        filters: dict[str, Any] = {"type": "image"}
        if event is not None:
            filters["event"] = event
        until = time.time()
        # The API takes fractional seconds; docker-py passes floats through (its stubs say int).
        since_arg: Any = ts
        until_arg: Any = until
        stream = self.client().events(
            since=since_arg, until=until_arg, decode=True, filters=filters
        )
        try:
            return list(stream)
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    def remove_image(self, ref: str) -> None:
        """Remove ``ref`` (force); a missing image is not an error."""
        with contextlib.suppress(docker.errors.ImageNotFound):
            self.client().images.remove(ref, force=True)
