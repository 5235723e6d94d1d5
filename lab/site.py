"""A site behind a relay: one lab peer configured as a relay for some others, and its daemon.

The relay's ``imgsync.toml`` keeps its ``[receiver]`` (it is headquarters' peer) and gains a
``[source]`` of its own engine, headquarters' ``[ssh]`` keys and the ``[[peers]]`` tables of
its leaves (so it reaches them through their counting relays), its own state DB and a
schedule that wakes on its engine's events. :class:`RelayDaemon` runs ``imgsync daemon``
there; it is started and stopped (by PID) by whoever made it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tomllib
from typing import Any

from .cluster import Lab
from .tomlw import dumps


def make_relay(
    lab: Lab, relay: str, leaves: list[str], images: list[str], debounce: str = "1s"
) -> None:
    """Write ``relay``'s config: a source for ``leaves`` (after :meth:`Lab.write_configs`)."""
    hq = tomllib.loads(lab.source_config.read_text())
    peer = lab.peer(relay)
    mine: dict[str, Any] = tomllib.loads(peer.config_path.read_text())
    home = peer.config_path.parent
    mine["source"] = {
        "docker_host": peer.docker.receiver_keys()["docker_host"],
        "images": list(images),
        "export_dir": str(home / "export"),
    }
    mine["ssh"] = hq["ssh"]
    mine["peers"] = [p for p in hq["peers"] if p["name"] in leaves]
    mine["state"] = {"path": str(home / "state.db")}
    mine["schedule"] = {"interval": "1h", "events": True, "debounce": debounce}
    peer.config_path.write_text(dumps(mine))


class RelayDaemon:
    """``imgsync daemon`` on the relay (its log: daemon.log beside its config)."""

    def __init__(self, lab: Lab, relay: str) -> None:
        self.lab = lab
        self.config = lab.peer(relay).config_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = self.lab.imgsync_argv("daemon", config=self.config)
        with open(self.config.with_name("daemon.log"), "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def kill(self) -> None:
        """SIGKILL: nothing of it runs on, as a power cut or an OOM kill would leave it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def __enter__(self) -> RelayDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
