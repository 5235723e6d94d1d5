"""Debian's ``docker-registry`` on a loopback port, storing under a folder of the test's: what a
site registry or an upstream one looks like to the lab. Started and stopped (by PID) here."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def registry_on(root: Path, port: int) -> Iterator[Path]:
    """docker-registry on 127.0.0.1:``port``, storing under ``root``; yields its log, once it
    accepts connections."""
    root.mkdir(parents=True, exist_ok=True)
    config, log = root / "registry.yml", root / "registry.log"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with log.open("ab") as sink:
        process = subprocess.Popen(["docker-registry", "serve", str(config)],
                                   stdout=sink, stderr=sink)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"docker-registry did not start (its log: {log})") from None
                time.sleep(0.1)
        yield log
    finally:
        process.terminate()
        process.wait(10)
