"""The Podman adapter: Podman's Docker-compatible API (``podman system service``; the
``podman.socket`` unit serves it at ``/run/podman/podman.sock``), spoken with the Docker
adapter. What differs from Docker (podman 4.3, measured in the lab):

- **IDs are versions**: an image's ID is its config digest, as on Docker's classic store.
- **Names**: ``podman load`` names a legacy bundle's ``acme/web:1`` (Docker's short form
  of ``docker.io/acme/web:1``) ``localhost/acme/web:1``, but an OCI bundle's
  ``docker.io/acme/web:1``; and a short name finds ``localhost/`` first. imgsync keeps one
  name whatever the source's layout: the qualified one (as containerd and the API's own
  ``tag`` spell it), so ``podman run acme/web:1`` and ``docker.io/acme/web:1`` in a Quadlet
  or kube file both find the synced image, and a local build under ``localhost/`` is never
  taken for it.
- **Thin bundles**: an OCI bundle may leave out a layer Podman holds when Podman holds it
  from that very blob (it reuses a layer by its compressed or uncompressed digest); a legacy
  bundle may not ("Some layer tarfiles are missing"). The store name ``podman`` tells the
  source so; the blobs are the uncompressed ones Podman holds
  (:meth:`PodmanEngine.layer_blobs`) and those the receiver recorded loading from.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from imgsync.engines.base import PODMAN, EngineFacts, ImageInfo
from imgsync.engines.docker import Engine
from imgsync.errors import EngineError, ImageNotFound
from imgsync.model import VERSION_RE, chain_ids
from imgsync.reference import familiar, qualified


class PodmanEngine(Engine):
    UNREACHABLE = "cannot reach Podman at"

    _held: dict[str, str] | None = None  # layer_blobs, until imgsync changes something

    def inspect(self, reference: str) -> ImageInfo:
        return super().inspect(_name(reference))

    def tag(self, image_id: str, reference: str) -> None:
        self._held = None
        super().tag(image_id, qualified(reference))

    def remove_image(self, image_id: str) -> bool:
        self._held = None
        return super().remove_image(image_id)

    def load(
        self, tarball: BinaryIO | Iterator[bytes], what: str, reference: str | None = None
    ) -> list[str]:
        """Load, then leave the bundle's image under its qualified name only (a legacy
        bundle's load names it under ``localhost/``)."""
        self._held = None
        untagged = super().load(tarball, what, reference)
        if reference is not None and qualified(reference) != (local := local_name(reference)):
            image_id = super().image_id(local)
            if image_id is not None and image_id != self.image_id(reference):
                self.tag(image_id, reference)
                self._call(f"untag {local}", self._client.api.remove_image, local)
        return untagged

    def layer_blobs(self) -> dict[str, str]:
        """Every layer Podman holds, by chain ID, with the uncompressed blob it reuses (one
        inspect per image: asked once per engine, with layer_chains, until a change)."""
        if self._held is None:
            held: dict[str, str] = {}
            for image_id in self.image_ids():
                try:
                    diff_ids = self.inspect(image_id).diff_ids
                except ImageNotFound:
                    continue  # removed while we looked
                held.update(zip(chain_ids(diff_ids), diff_ids, strict=True))
            self._held = held
        return dict(self._held)

    def layer_chains(self) -> set[str]:
        return set(self.layer_blobs())

    def store(self) -> str:
        return PODMAN

    def ids_are_versions(self) -> bool:
        return True

    def push(self, image_id: str, target: str) -> None:
        raise EngineError(f"Podman at {self.name}: imgsync does not publish from Podman peers")

    def facts(self) -> EngineFacts:
        return EngineFacts(PODMAN, str(self.version().get("Version") or "unknown"), PODMAN)


def local_name(reference: str) -> str:
    """The name ``podman load`` gives a legacy bundle's image saved under ``reference``:
    Docker's short form of it under ``localhost/``, unless it names another registry."""
    short = familiar(qualified(reference))
    first, slash, _rest = short.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return short
    return f"localhost/{short}"


def _name(reference: str) -> str:
    """How imgsync names ``reference`` to Podman: an ID as it is, a name qualified."""
    if VERSION_RE.fullmatch(reference) or reference.startswith("localhost/"):
        return reference
    return qualified(reference)
