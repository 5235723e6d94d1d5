"""A host that runs imgsync the way a user's does: a real systemd as PID 1.

``scripts/service-root`` builds a Debian 12 root once (systemd, python3, imgsync in
``/opt/imgsync`` as the README installs it, and a wheelhouse to reinstall it offline).
:class:`ServiceHost` boots it with ``systemd-nspawn --boot --register=no --keep-unit
--volatile=overlay``: its own PID, mount, IPC and UTS namespaces, the lab machine's network (so
the lab's peers on 127.0.0.x are reachable), and every change in a tmpfs overlay that vanishes
at shutdown, so the root stays as built. Commands run inside through ``nsenter`` into its
init's namespaces; it is shut down cleanly (SIGTERM to nspawn) and, failing that, killed by
PID like every lab process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ._proc import LabError, ManagedProcess

DEFAULT_ROOT = Path("/var/cache/imgsync-lab/bookworm-service")
READY = ".imgsync-ready"
BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "service-root"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def service_root() -> Path:
    """Where the service root is (``IMGSYNC_SERVICE_ROOT`` or the default)."""
    return Path(os.environ.get("IMGSYNC_SERVICE_ROOT") or DEFAULT_ROOT)


def service_unavailable() -> str | None:
    """Why a service host cannot boot here, or None when it can."""
    root = service_root()
    if shutil.which("systemd-nspawn") is None or shutil.which("nsenter") is None:
        return "systemd-nspawn or nsenter missing (apt-get install systemd-container util-linux)"
    if not (root / READY).is_file():
        return f"no service root at {root} (build it with: {BUILD_SCRIPT})"
    return None


class ServiceHost:
    """One booted systemd container; ``binds`` maps host paths to paths inside it."""

    def __init__(self, work: Path, binds: dict[Path, str], root: Path | None = None) -> None:
        self.root = root or service_root()
        argv = [
            "systemd-nspawn",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "--console=read-only",
            f"--directory={self.root}",
            *(f"--bind={host}:{inside}" for host, inside in binds.items()),
        ]
        self._proc = ManagedProcess("service host", argv, work / "console.log")
        self._init: int | None = None

    def boot(self, timeout: float = 90.0) -> None:
        """Start the container and wait until its systemd reports the system running."""
        self._proc.spawn()
        self._proc.wait_until(self._found_init, "booted (its systemd started)", timeout)
        bus = Path(f"/proc/{self._init}/root/run/systemd/private")  # where systemctl talks
        self._proc.wait_until(bus.exists, "listening on its private bus", timeout)
        state = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout)
        if state.stdout.strip() not in ("running", "degraded"):
            raise self._proc.fail(f"systemd says {state.stdout.strip()!r}, not running")

    def _found_init(self) -> bool:
        """The container's PID 1 is nspawn's child (or grandchild) named ``systemd``."""
        assert self._proc.pid is not None
        children = _children(self._proc.pid)
        for pid in [*children, *(g for child in children for g in _children(child))]:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                self._init = pid
                return True
        return False

    def run(
        self, *argv: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside, as root, with a clean environment; output is captured."""
        if self._init is None:
            raise LabError("service host: not booted")
        done = subprocess.run(
            ["nsenter", "-t", str(self._init), "-a", "--", "env", "-i", f"PATH={PATH}", *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise LabError(
                f"service host: {argv} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
            )
        return done

    def write(self, path: str, text: str, mode: str = "0644", owner: str = "root") -> None:
        """Write a file inside (its directory must exist)."""
        self.run("tee", path, input=text)
        self.run("chmod", mode, path)
        self.run("chown", f"{owner}:", path)

    def console(self) -> str:
        return self._proc.log_tail(80)

    def stop(self) -> None:
        """Shut the container down (nspawn turns SIGTERM into a clean poweroff)."""
        self._proc.stop(timeout=45)
        self._init = None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]
