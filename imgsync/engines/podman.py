"""The Podman adapter: Podman's Docker-compatible API (``podman system service``; the
``podman.socket`` unit serves it at ``/run/podman/podman.sock``), spoken with the Docker
adapter. Podman's image IDs are config digests, as on Docker's classic store, so an image's
ID is its version here too."""

from __future__ import annotations

from imgsync.engines.base import PODMAN, EngineFacts
from imgsync.engines.docker import Engine


class PodmanEngine(Engine):
    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.name = f"Podman at {address}"

    def store(self) -> str:
        return PODMAN

    def ids_are_versions(self) -> bool:
        return True

    def facts(self) -> EngineFacts:
        return EngineFacts(PODMAN, str(self.version().get("Version") or "unknown"), PODMAN)
