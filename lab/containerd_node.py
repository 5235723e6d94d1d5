"""A containerd-only host, as a Kubernetes node runs one: containerd alone, its CRI plugin on,
images in the ``k8s.io`` namespace, the overlayfs snapshotter — no Docker.

Debian 12's containerd 1.6 runs from the host; the Debian 13 root's 1.7 runs in that root
(lab/chroot.py), as Docker 26 does. Each node has its own root, state dir and socket (under
a short run dir: unix socket paths are limited). :meth:`ctr` runs ``ctr`` against it (the
root's own ``ctr`` for the 1.7 node), an argv list, never a shell string.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._proc import LabError, ManagedProcess
from .chroot import SocketNode

NAMESPACE = "k8s.io"  # the CRI plugin's namespace: where kubelet looks


def qualified(name: str) -> str:
    """``name`` as containerd and kubelet spell it (``acme/web:1`` → ``docker.io/acme/web:1``)."""
    first, slash, _rest = name.partition("/")
    if name.startswith("sha256:") or (
        slash and ("." in first or ":" in first or first == "localhost")
    ):
        return name
    return f"docker.io/{name}" if slash else f"docker.io/library/{name}"


class ContainerdNode(SocketNode):
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

    @property
    def url(self) -> str:
        return self.address

    def receiver_keys(self) -> dict[str, Any]:
        """The ``[receiver]`` keys of an imgsync peer loading into this node."""
        ctr = shlex.join([*self._prefix(), "ctr"])
        return {"engine": "containerd", "address": self.address, "ctr": ctr}

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

    def image_id(self, name: str) -> str | None:
        """The config digest under ``name`` (qualified as kubelet names it), or None."""
        try:
            return self.config_digest(qualified(name))
        except LabError:
            return None

    def diff_ids(self, name: str) -> tuple[str, ...]:
        """The image's layers (diff IDs), from its config in the content store."""
        config = self.ctr("content", "get", self.config_digest(qualified(name))).stdout
        return tuple(json.loads(config)["rootfs"]["diff_ids"])

    def pinned(self, name: str) -> bool:
        """Does the image ``name`` carry the CRI's pin label?"""
        listed = self.ctr("images", "ls", f"name=={name}").stdout
        return "io.cri-containerd.pinned=pinned" in listed

    def config_digest(self, name: str) -> str:
        """The config digest of the image ``name`` names: its manifest (an index's amd64
        one), read back from the content store."""
        for line in self.ctr("images", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == name:
                manifest = json.loads(self.ctr("content", "get", fields[2]).stdout)
                for entry in manifest.get("manifests", ()):  # an index: the amd64 manifest
                    if entry.get("platform", {}).get("architecture") in ("amd64", None):
                        manifest = json.loads(self.ctr("content", "get", entry["digest"]).stdout)
                        break
                return str(manifest["config"]["digest"])
        raise LabError(f"{self.name}: no image {name}")

    @contextlib.contextmanager
    def events(self, log: Path) -> Iterator[list[str]]:
        """Record containerd's events (``ctr events``) while the block runs; the list it
        gives is filled, on leaving, with each event's topic in this namespace
        (``/images/create``, ``/images/update``, …). Starts once a probe event is seen."""
        topics: list[str] = []
        probe = f"lab-probe-{secrets.token_hex(3)}"
        argv = [*self._prefix(), "ctr", "-a", self.address, "events"]
        with log.open("w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline, attempt = time.monotonic() + 10, 0
            while probe not in log.read_text():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise LabError(f"{self.name}: ctr events did not start: {log.read_text()}")
                attempt += 1  # a new namespace each time: each makes one event
                create = ["namespaces", "create", f"{probe}-{attempt}"]
                argv_probe = [*self._prefix(), "ctr", "-a", self.address, *create]
                subprocess.run(argv_probe, capture_output=True, check=False)
                time.sleep(0.05)
            yield topics
        finally:
            proc.terminate()
            proc.wait(10)
        for line in log.read_text().splitlines():
            fields = line.split()
            if NAMESPACE in fields[:-1]:
                topics.append(fields[fields.index(NAMESPACE) + 1])
