"""Process plumbing shared by the lab: start a daemon, wait for it, always tear it down.

Every process is started with :class:`subprocess.Popen` and stopped by its exact PID
(SIGTERM, wait, SIGKILL) -- never by name.  Processes that are still registered when
the interpreter exits are stopped by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

DEFAULT_STOP_TIMEOUT = 15.0


class LabError(RuntimeError):
    """Something in the lab failed to start or behave; the message says what and why."""


_registry_lock = threading.Lock()
_live: dict[int, ManagedProcess] = {}


def _start_time(pid: int) -> str | None:
    """The kernel start time of ``pid`` (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _descendants(root_pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of every live descendant of ``root_pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[tuple[int, str]] = []
    todo = list(children.get(root_pid, []))
    while todo:
        pid = todo.pop()
        started = _start_time(pid)
        if started is not None:
            found.append((pid, started))
        todo.extend(children.get(pid, []))
    return found


def _signal_if_same(pid: int, started: str, sig: int) -> bool:
    """Send ``sig`` to ``pid`` only if it is still the process we saw (same start time)."""
    if _start_time(pid) != started:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        return True
    return False


class ManagedProcess:
    """One long-running child process with a log file, readiness polling and safe teardown."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def spawn(self) -> None:
        """Start the process (detached from our terminal's process group)."""
        if self.alive():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"--- {time.strftime('%H:%M:%S')} starting: {self.argv}\n".encode())
        self._log.flush()
        argv = list(self.argv)
        # Kill the daemon if we die without running our teardown (e.g. SIGKILL).  The parent
        # death signal fires when the *thread* that forked exits, so only from the main thread.
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            close_fds=True,
        )
        with _registry_lock:
            _live[id(self)] = self

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])

    def fail(self, message: str) -> LabError:
        return LabError(
            f"{self.name}: {message}\n--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll ``check`` until it returns True; fail fast if the process exits."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            if self._proc is None:
                raise LabError(f"{self.name}: not started")
            code = self._proc.poll()
            if code is not None:
                raise self.fail(f"exited with code {code} before it was {what}")
            with contextlib.suppress(OSError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise self.fail(f"not {what} after {timeout:.0f}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.2)

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait, SIGKILL; then the same for descendants left behind.  Idempotent."""
        with self._lock:
            proc, self._proc = self._proc, None
            code: int | None = None
            if proc is not None:
                kids = _descendants(proc.pid) if proc.poll() is None else []
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                        proc.wait(10)
                code = proc.returncode
                _reap_leftovers(kids)
            if self._log is not None:
                self._log.close()
                self._log = None
            with _registry_lock:
                _live.pop(id(self), None)
            return code


def _reap_leftovers(kids: list[tuple[int, str]]) -> None:
    """Terminate descendants that outlived their parent (only if still the same processes)."""
    survivors = [(pid, st) for pid, st in kids if _signal_if_same(pid, st, signal.SIGTERM)]
    deadline = time.monotonic() + 5
    while survivors and time.monotonic() < deadline:
        survivors = [(pid, st) for pid, st in survivors if _start_time(pid) == st]
        time.sleep(0.05)
    for pid, st in survivors:
        _signal_if_same(pid, st, signal.SIGKILL)


def stop_all() -> None:
    """Stop every process still registered, newest first (the atexit hook)."""
    with _registry_lock:
        procs = list(_live.values())
    for proc in reversed(procs):
        with contextlib.suppress(Exception):
            proc.stop()


atexit.register(stop_all)


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks and atexit hooks tear down the lab."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _raise(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


def unmount_under(*paths: Path) -> None:
    """Lazily unmount anything still mounted at or below ``paths`` (deepest first)."""
    prefixes = [str(p.resolve()) for p in paths]
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = []
    for line in lines:
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts leftovers; never follows symlinks out of ``path``."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def pick_port(address: str, preferred: int, avoid: set[int] | None = None) -> int:
    """``preferred`` if free on ``address``, else the next free one, else an ephemeral one."""
    avoid = avoid or set()
    for port in range(preferred, preferred + 200):
        if port not in avoid and port_free(address, port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def unix_socket_ready(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        sock.connect(str(path))
    return True


def unavailable_reason() -> str | None:
    """Why the lab cannot run on this machine (not root, binaries missing), or None."""
    if os.geteuid() != 0:
        return "the lab needs root (it starts dockerd and sshd)"
    missing = [
        b
        for b in ("dockerd", "containerd", "ssh", "ssh-keygen", "umount")
        if shutil.which(b) is None
    ]
    missing += [f for f in ("/usr/sbin/sshd", "/bin/busybox") if not Path(f).exists()]
    if missing:
        return f"the lab needs {', '.join(missing)} (run scripts/bootstrap)"
    return None
