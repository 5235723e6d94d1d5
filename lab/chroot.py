"""A second Docker engine for the lab: Debian 13's docker.io 26 in a chroot.

``scripts/docker26-root`` builds the root once (debootstrap + ``apt-get install docker.io``);
here we find it and mount what a dockerd inside needs (proc, sys, dev, a tmpfs on run).
Several nodes share one root: the mounts are counted and undone when the last node stops.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from ._proc import LabError

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
