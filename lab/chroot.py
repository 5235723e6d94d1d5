"""A second Docker engine for the lab: Debian 13's docker.io 26 in a chroot (and its containerd
1.7 and podman 5).

``scripts/docker26-root`` builds the root once (debootstrap + ``apt-get install docker.io
podman``); here we find it and mount what a dockerd inside needs (proc, sys, dev, a tmpfs on
run).
Several nodes share one root: the mounts are counted and undone when the last node stops.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from ._proc import LabError, ManagedProcess, remove_tree, unix_socket_ready, unmount_under

DEFAULT_ROOT = Path("/var/cache/imgsync-lab/trixie-docker26")
READY = ".imgsync-ready"
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "docker26-root"

_lock = threading.Lock()
_users: dict[Path, int] = {}
_mounted: dict[Path, list[Path]] = {}


def docker26_root() -> Path:
    """Where the Docker 26 root is (``IMGSYNC_DOCKER26_ROOT`` or the default)."""
    return Path(os.environ.get("IMGSYNC_DOCKER26_ROOT") or DEFAULT_ROOT)


def docker26_unavailable() -> str | None:
    """Why the Docker 26 root cannot be used, or None when it is ready."""
    root = docker26_root()
    if not (root / READY).is_file():
        return f"no Docker 26 root at {root} (build it with: sudo {BUILD_SCRIPT})"
    return None


def _is_mounted(point: Path) -> bool:
    wanted = str(point)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4].encode().decode("unicode_escape") == wanted:
            return True
    return False


def acquire(root: Path) -> None:
    """Bind ``root`` onto itself, mount proc, sys, dev and a tmpfs on run inside it (once
    for all users)."""
    with _lock:
        if _users.get(root, 0) == 0:
            _mounted[root] = _mount_all(root)
        _users[root] = _users.get(root, 0) + 1


def release(root: Path) -> None:
    """Undo :func:`acquire`; the last user unmounts what was mounted."""
    with _lock:
        left = _users.get(root, 0) - 1
        if left > 0:
            _users[root] = left
            return
        _users.pop(root, None)
        for point in reversed(_mounted.pop(root, [])):
            subprocess.run(["umount", "-R", "-l", str(point)], check=False, capture_output=True)


def _mount_all(root: Path) -> list[Path]:
    done: list[Path] = []
    steps = [
        # "/" must be a mount point inside: builds make it private ("remount /" fails otherwise)
        ("", ["mount", "--bind", str(root)]),
        ("proc", ["mount", "-t", "proc", "proc"]),
        ("sys", ["mount", "--rbind", "/sys"]),
        ("dev", ["mount", "--rbind", "/dev"]),
        ("run", ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs"]),
    ]
    for name, argv in steps:
        point = root / name if name else root
        if _is_mounted(point):
            continue  # left by an earlier run, or by someone else: use it, do not unmount it
        result = subprocess.run([*argv, str(point)], check=False, capture_output=True, text=True)
        if result.returncode != 0:
            for undo in reversed(done):
                subprocess.run(["umount", "-R", "-l", str(undo)], check=False)
            raise LabError(f"cannot mount {point}: {result.stderr.strip()}")
        if name in ("sys", "dev"):
            subprocess.run(["mount", "--make-rslave", str(point)], check=False)
        done.append(point)
    return done


class RootedNode:
    """A daemon node's directories, seen from outside and from the engine it runs (inside
    ``chroot``, if any), and the chroot's mounts it holds while it runs. DockerNode and
    ContainerdNode share it."""

    def __init__(self, name: str, root: Path, run_dir: Path, chroot: Path | None) -> None:
        if chroot is not None and not (
            root.is_relative_to(chroot) and run_dir.is_relative_to(chroot)
        ):
            raise LabError(f"node {name}: {root} and {run_dir} must lie inside {chroot}")
        self.name, self.root, self.run_dir, self.chroot = name, root, run_dir, chroot
        self._mounted = False

    def _inner(self, path: Path) -> str:
        """``path`` as the engine sees it (inside its chroot, if any)."""
        if self.chroot is None:
            return str(path)
        return "/" + str(path.relative_to(self.chroot))

    def _prefix(self) -> list[str]:
        return [] if self.chroot is None else ["chroot", str(self.chroot)]

    def _mount(self) -> None:
        """Mount what the chroot's engine needs (once per node)."""
        if self.chroot is not None and not self._mounted:
            acquire(self.chroot)
            self._mounted = True

    def _unmount(self) -> None:
        """Give the chroot's mounts back (the last node's release unmounts them)."""
        if self._mounted and self.chroot is not None:
            self._mounted = False
            release(self.chroot)

    def stop(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        """stop() and delete the node's run dir and data."""
        self.stop()
        remove_tree(self.run_dir)
        remove_tree(self.root)


class SocketNode(RootedNode):
    """A node that is one daemon answering on a unix socket (containerd, Podman's API):
    written config, spawned, ready once the socket accepts, stopped by PID."""

    socket: Path
    _proc: ManagedProcess

    def _write_config(self) -> None:
        raise NotImplementedError

    def spawn(self) -> None:
        """Start the daemon (does not wait: :meth:`wait_ready`)."""
        if self._proc.alive():
            return
        self._write_config()
        self._mount()
        self._proc.spawn()

    def wait_ready(self, timeout: float = 30.0) -> None:
        self._proc.wait_until(
            lambda: unix_socket_ready(self.socket), f"listening on {self.socket}", timeout
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start the daemon and wait for its socket; on failure, tear down."""
        try:
            self.spawn()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the daemon (by PID) and unmount what it left. Idempotent."""
        try:
            self._proc.stop(timeout=10)
        finally:
            unmount_under(self.run_dir, self.root)
            self._unmount()

    @property
    def pid(self) -> int | None:
        return self._proc.pid
