"""What a running process holds at its busiest: threads and open descriptors, sampled from /proc."""

from __future__ import annotations

import threading
from pathlib import Path


class Peak:
    """The most threads and open descriptors ``pid`` had (with ``child``: its first child's,
    as of a command run under ``/usr/bin/time``), sampled every 10 ms until :meth:`stop`."""

    def __init__(self, pid: int, child: bool = False) -> None:
        self.pid, self.child, self.threads, self.fds = pid, child, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _target(self) -> str:
        if not self.child:
            return str(self.pid)
        return Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()[0]

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            try:
                pid = self._target()
                threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
                fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
            except (OSError, IndexError):
                continue  # not started yet, or gone between two samples
            self.threads, self.fds = max(self.threads, threads), max(self.fds, fds)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
