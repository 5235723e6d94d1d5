"""Small helpers the end-to-end tests share: run the installed CLI, read its JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from lab import Lab, build_image
from lab.tomlw import dumps


def sync_json(
    lab: Lab, *args: str, timeout: float = 300, config: Path | None = None
) -> tuple[int, dict[str, Any]]:
    done = lab.run_imgsync("sync", "--json", *args, timeout=timeout, config=config)
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"sync printed no JSON (exit {done.returncode}):\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        ) from None


def by_peer_image(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["peer"], r["image"]): r for r in report["results"]}


def failures(report: dict[str, Any]) -> list[str]:
    """Each failed result as ``peer image: error`` (whole, for an assertion's message)."""
    return [
        f"{r['peer']} {r['image']}: {r['error']}"
        for r in report.get("results", [])
        if r.get("action") == "failed"
    ]


def actions(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {key: r["action"] for key, r in by_peer_image(report).items()}


def build(lab: Lab, ref: str, seed: int, size: int = 2 * 1024 * 1024) -> str:
    """A fresh image on the source: busybox plus one random layer of ``size`` bytes."""
    return build_image(lab.source.client(), ref, [("data.bin", size)], seed=seed)


def loads_since(lab: Lab, since: float) -> dict[str, int]:
    """How many ``docker load`` each peer's engine performed since ``since``."""
    return {p.name: len(p.docker.events_since(since, event="load")) for p in lab.peers}


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )


def receiver_configs(lab: Lab, **changes: Any) -> None:
    """Rewrite every peer's [receiver] config the way the lab does, plus ``changes``."""
    for peer in lab.peers:
        receiver = {"inbox": str(peer.inbox), **peer.docker.receiver_keys(), **changes}
        peer.config_path.write_text(dumps({"receiver": receiver}))
