"""A containerd-only host, as a Kubernetes node runs one: containerd alone, its CRI plugin on,
images in the ``k8s.io`` namespace, the overlayfs snapshotter — no Docker.

Debian 12's containerd 1.6 runs from the host; the Debian 13 root's 1.7 runs in that root
(lab/chroot.py), as Docker 26 does. Each node has its own root, state dir and socket (under
a short run dir: unix socket paths are limited). :meth:`ctr` runs ``ctr`` against it (the
root's own ``ctr`` for the 1.7 node), an argv list, never a shell string.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ._proc import LabError, ManagedProcess, unix_socket_ready, unmount_under
from .chroot import RootedNode

NAMESPACE = "k8s.io"  # the CRI plugin's namespace: where kubelet looks


class ContainerdNode(RootedNode):
    """A containerd (CRI on) owned by the lab; ``chroot``: run the root's containerd."""

    def __init__(self, name: str, root: Path, run_dir: Path, *, chroot: Path | None = None):
        super().__init__(name, root, run_dir, chroot)
        self.socket = run_dir / "ctd.sock"
        if len(str(self.socket) + ".ttrpc") > 100:
            raise LabError(f"run dir {run_dir} is too long for unix sockets; use e.g. /run/isl-x/")
        argv = [*self._prefix(), "containerd", "--config", self._inner(root / "containerd.toml")]
        self._proc = ManagedProcess(f"containerd[{name}]", argv, root / "containerd.log")

    def __repr__(self) -> str:
        return f"ContainerdNode({self.name!r}, socket={str(self.socket)!r})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def address(self) -> str:
        """The socket as ``ctr -a`` and imgsync's config name it (inside the chroot, if any)."""
        return self._inner(self.socket)

    def _write_config(self) -> None:
        for path in (self.root, self.run_dir):
            path.mkdir(parents=True, exist_ok=True)
        inner = self._inner
        cri = '[plugins."io.containerd.grpc.v1.cri"]'
        lines = [
            "version = 2",
            f"root = {json.dumps(inner(self.root / 'data'))}",
            f"state = {json.dumps(inner(self.run_dir / 'state'))}",
            "[grpc]",
            f"  address = {json.dumps(inner(self.socket))}",
            "[debug]",
            '  level = "warn"',
            cri,
            "  disable_tcp_service = true",
            '  stream_server_address = "127.0.0.1"',
            '  stream_server_port = "0"',
            f"{cri[:-1]}.containerd]",
            '  snapshotter = "overlayfs"',
            '[plugins."io.containerd.internal.v1.opt"]',
            f"  path = {json.dumps(inner(self.root / 'opt'))}",
            "",
        ]
        (self.root / "containerd.toml").write_text("\n".join(lines))

    def start(self, timeout: float = 30.0) -> None:
        """Start containerd and wait for its socket; on failure, tear down."""
        try:
            self._write_config()
            self._mount()
            self._proc.spawn()
            self._proc.wait_until(
                lambda: unix_socket_ready(self.socket), f"listening on {self.socket}", timeout
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop containerd (by PID) and unmount what its snapshots left. Idempotent."""
        try:
            self._proc.stop(timeout=10)
        finally:
            unmount_under(self.run_dir, self.root)
            self._unmount()

    # -- ctr ----------------------------------------------------------------------------------
    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``ctr -a SOCKET -n k8s.io ARGS…``; raise :class:`LabError` when it fails."""
        argv = [*self._prefix(), "ctr", "-a", self.address, "-n", NAMESPACE, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise LabError(f"{self.name}: {' '.join(args)}: {done.stderr.strip()[-500:]}")
        return done

    def import_archive(self, tarball: Path, *options: str) -> None:
        """``ctr images import`` a ``docker save`` tarball (which must lie inside the chroot
        of a chroot node)."""
        self.ctr("images", "import", *options, self._inner(tarball))

    def images(self) -> set[str]:
        """Every image name in the namespace (the CRI adds one per config digest)."""
        return set(self.ctr("images", "ls", "-q").stdout.split())

    def config_digest(self, name: str) -> str:
        """The config digest of the image ``name`` names: its manifest, read back from the
        content store (one platform's manifest; an index is not followed here)."""
        for line in self.ctr("images", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == name:
                manifest = json.loads(self.ctr("content", "get", fields[2]).stdout)
                return str(manifest["config"]["digest"])
        raise LabError(f"{self.name}: no image {name}")
