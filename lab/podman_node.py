"""A rootful Podman host with storage of its own, as a peer without Docker runs one: the
podman CLI, and ``podman system service`` serving its Docker-compatible API on a socket.

Debian 12's podman 4.3 runs from the host; the Debian 13 root's podman 5.4 runs in that root
(lab/chroot.py), as Docker 26 and containerd 1.7 do. Its storage (``--root``, overlay), run
root, tmp dir, volumes, network configs, locks (files, not the host's shm) and events log are
the node's, and so are its containers.conf, storage.conf, registries.conf and auth file; every
registry is reached only through a proxy that does not exist (a load needs none; a pull must
fail, not go out). Podman still touches a few paths it hard-codes for root, with no flag or
setting to move them: its blob info cache (/var/lib/containers/cache/, bolt in 4.3, sqlite in
5), /var/cache/containers/short-name-aliases.conf.lock and a /var/tmp/ociNNN dir per load
(removed after) -- the host's for 4.3, the root's for 5. The same flags and settings serve
both: 5 picks netavark and sqlite on fresh storage by itself (4.3: CNI and bolt), and only
warns about cgroups v1 (silenced here). :meth:`podman_argv` is the prefix -- ``chroot ROOT``
for the root's podman, ``env`` with those settings, podman, its flags -- that the service,
:meth:`podman` and imgsync's peers run: an argv list, never a shell string; paths in it are
as podman sees them (inside the root). The socket lies under a short run dir (unix socket
paths are limited); :attr:`url` names it as seen from here, where docker-py and imgsync run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from ._proc import LabError, ManagedProcess
from .chroot import SocketNode

NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens, every registry call fails
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


class PodmanNode(SocketNode):
    """A podman owned by the lab; ``chroot``: run the root's podman (5.x in the Debian 13
    root), with ``root`` and ``run_dir`` inside it."""

    def __init__(self, name: str, root: Path, run_dir: Path, *, chroot: Path | None = None):
        super().__init__(name, root, run_dir, chroot)
        self.socket = run_dir / "podman.sock"
        if len(str(self.socket)) > 100:
            raise LabError(f"run dir {run_dir} is too long for unix sockets; use e.g. /run/ipd-x/")
        argv = [*self.podman_argv(), "system", "service", "--time=0", f"unix://{self.address}"]
        self._proc = ManagedProcess(f"podman[{name}]", argv, root / "podman.log")

    def __repr__(self) -> str:
        return f"PodmanNode({self.name!r}, socket={str(self.socket)!r})"

    @property
    def address(self) -> str:
        """The socket as podman names it (inside the chroot, if any)."""
        return self._inner(self.socket)

    @property
    def url(self) -> str:
        """The Docker-compatible API, as docker-py's ``base_url`` takes it (seen from here)."""
        return f"unix://{self.socket}"

    def _env(self) -> dict[str, str]:
        inner = self._inner
        return {
            "CONTAINERS_CONF": inner(self.root / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": inner(self.root / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": inner(self.root / "registries.conf"),
            "REGISTRY_AUTH_FILE": inner(self.root / "auth.json"),
            "TMPDIR": inner(self.root / "tmp"),
            **dict.fromkeys(PROXY_VARS, NOWHERE),
            "NO_PROXY": "",
            "no_proxy": "",
            "PODMAN_IGNORE_CGROUPSV1_WARNING": "1",  # 5.x warns on every command otherwise
        }

    def podman_argv(self) -> list[str]:
        """``env SETTINGS… podman FLAGS…``: the CLI on this node's storage and settings."""
        inner = self._inner
        return [
            *self._prefix(),
            "env",
            *(f"{key}={value}" for key, value in self._env().items()),
            "podman",
            *("--root", inner(self.root / "storage"), "--runroot", inner(self.run_dir / "runroot")),
            *("--storage-driver", "overlay", "--cgroup-manager", "cgroupfs"),
            *("--events-backend", "file", "--tmpdir", inner(self.run_dir / "libpod")),
            *("--volumepath", inner(self.root / "volumes")),
            *("--network-config-dir", inner(self.root / "networks")),
        ]

    def _write_config(self) -> None:
        for path in (self.root / "tmp", self.root / "networks", self.run_dir):
            path.mkdir(parents=True, exist_ok=True)
        (self.root / "auth.json").write_text('{"auths": {}}\n')  # a pull stats it
        inner = self._inner
        q = json.dumps  # a TOML basic string is a JSON string
        storage = [
            "[storage]",
            'driver = "overlay"',
            f"graphroot = {q(inner(self.root / 'storage'))}",
            f"runroot = {q(inner(self.run_dir / 'runroot'))}",
        ]
        engine = [
            "[engine]",
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            f"events_logfile_path = {q(inner(self.run_dir / 'libpod' / 'events.log'))}",
            'lock_type = "file"',  # not the host-wide /dev/shm/libpod_lock
            "num_locks = 64",
            f"tmp_dir = {q(inner(self.run_dir / 'libpod'))}",
            f"static_dir = {q(inner(self.root / 'storage' / 'libpod'))}",
            f"volume_path = {q(inner(self.root / 'volumes'))}",
            f"image_copy_tmp_dir = {q(inner(self.root / 'tmp'))}",
            "[network]",
            f"network_config_dir = {q(inner(self.root / 'networks'))}",
        ]
        registries = ["unqualified-search-registries = []", 'short-name-mode = "disabled"']
        for name, lines in (
            ("storage.conf", storage),
            ("containers.conf", engine),
            ("registries.conf", registries),
        ):
            (self.root / name).write_text("\n".join([*lines, ""]))

    def receiver_keys(self) -> dict[str, Any]:
        """The ``[receiver]`` keys of an imgsync peer loading into this node (through the
        API: the socket as seen from here, where the peer runs)."""
        return {"engine": "podman", "address": self.url}

    # -- the CLI ------------------------------------------------------------------------------
    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``podman FLAGS… ARGS…`` on this node's storage; raise :class:`LabError` on failure."""
        argv = [*self.podman_argv(), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise LabError(f"{self.name}: podman {' '.join(args)}: {done.stderr.strip()[-500:]}")
        return done

    def load(self, tarball: Path) -> str:
        """``podman load -i TARBALL`` (which must lie inside the chroot of a chroot node);
        its output (``Loaded image: NAME``)."""
        return self.podman("load", "-i", self._inner(tarball)).stdout.strip()

    def loads(self) -> int:
        """How many loads (``loadfromarchive`` events) the node's events log holds so far."""
        log = self.run_dir / "libpod" / "events.log"
        return log.read_text().count('"loadfromarchive"') if log.exists() else 0

    def diff_ids(self, name: str) -> tuple[str, ...]:
        found = self.podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", name)
        return tuple(json.loads(found.stdout))

    def images(self) -> set[str]:
        """Every name an image has (``localhost/…``, ``docker.io/…`` as podman stores it)."""
        listing = json.loads(self.podman("images", "--format", "json").stdout or "[]")
        return {name for image in listing for name in image.get("Names") or []}

    def image_id(self, name: str) -> str | None:
        """The image's ID, ``sha256:``-prefixed (its config digest), or None: no such image."""
        try:
            found = self.podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()
        except LabError as exc:
            if "image not known" in str(exc):
                return None
            raise
        return found if found.startswith("sha256:") else f"sha256:{found}"
