"""The receiving side's engine interface: what a peer asks of whatever runs its images.

Three adapters implement it: :mod:`imgsync.engines.docker` (Docker, either image store),
:mod:`imgsync.engines.containerd` (a Kubernetes node's containerd, through ``ctr``) and
:mod:`imgsync.engines.podman` (Podman, through its Docker-compatible API). The receiver
(:mod:`imgsync.receiver`) speaks only this interface; :func:`imgsync.engines.select.open_engine`
picks the adapter from ``[receiver] engine``.

An image's **ID** is what the engine calls it. Where the engine's IDs are config digests
(Docker's classic store, containerd as imgsync reads it, Podman) the ID *is* the version;
on Docker's containerd store it is a manifest digest, and the receiver keeps a record of
which ID it got for which version (:mod:`imgsync.receiver.loaded`). Every method raises
:class:`~imgsync.errors.EngineError` (or :class:`~imgsync.errors.ImageNotFound`) worded
with the engine and the image, never a library's own exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from imgsync.model import RuntimeConfig

DOCKER, CONTAINERD, PODMAN = "docker", "containerd", "podman"
KINDS = (DOCKER, CONTAINERD, PODMAN)


@dataclass(frozen=True)
class ImageInfo:
    id: str  # the engine's own ID: the config digest (classic), a manifest digest (containerd)
    diff_ids: tuple[str, ...]
    size: int
    runtime: RuntimeConfig = ()


@dataclass(frozen=True)
class EngineFacts:
    """What a peer says of its engine: which one (:data:`KINDS`), its version, its image
    store (``classic``/``containerd`` for Docker, ``containerd`` or ``podman`` otherwise),
    and, for ``imgsync check``, problems found (each ``what: fix``) and notes."""

    kind: str
    version: str
    store: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class ReceivingEngine(Protocol):
    """What the receiver asks of an engine (see the module docstring)."""

    name: str

    def close(self) -> None: ...

    def inspect(self, reference: str) -> ImageInfo:
        """The image under ``reference`` (or with that ID); ImageNotFound if none."""
        ...

    def image_id(self, reference: str) -> str | None:
        """The ID of the image under ``reference``, or ``None`` when there is none."""
        ...

    def load(
        self, tarball: BinaryIO | Iterator[bytes], what: str, reference: str | None = None
    ) -> list[str]:
        """Load a bundle; afterwards ``reference`` (when given) names its image. Return the
        IDs of images loaded untagged (Docker's load on arrival); EngineError on failure."""
        ...

    def tag(self, image_id: str, reference: str) -> None: ...

    def remove_image(self, image_id: str) -> bool:
        """Remove an image, never forced: False when the engine keeps it (in use, tagged)."""
        ...

    def image_ids(self) -> set[str]:
        """The ID of every image the engine holds."""
        ...

    def layer_chains(self) -> set[str]:
        """Chain IDs of every layer the engine holds under some image."""
        ...

    def layer_blobs(self) -> dict[str, str]:
        """Chain ID → digest of the blob the engine holds for that layer, where the engine
        can say (empty: it cannot, or a thin bundle needs no blob on this store)."""
        ...

    def store(self) -> str: ...

    def facts(self) -> EngineFacts: ...

    def ids_are_versions(self) -> bool:
        """Is an image's ID its config digest (imgsync's version)?"""
        ...

    def push(self, image_id: str, target: str) -> None:
        """Push the image ``image_id`` to a registry as ``target`` (``host:port/path:tag``),
        with the engine's own credentials for that registry; the name ``target`` is not
        left behind where the image has another. EngineError when the engine cannot push
        (containerd and Podman: ``[receiver] publish`` is refused for them)."""
        ...
