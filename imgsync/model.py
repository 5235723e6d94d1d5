"""Plain data shared by the planner, the actions and the CLI. No I/O here."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

VERSION_RE = re.compile(r"sha256:[0-9a-f]{64}")
SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")


def chain_ids(diff_ids: tuple[str, ...] | list[str]) -> list[str]:
    """OCI chain IDs: a layer named together with every layer beneath it."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            chains.append(
                "sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest()
            )
    return chains


# The parts of an image config a container gets, as ``docker image inspect`` shows them
# under ``Config`` on every engine (and the image config JSON under ``config``).
RUNTIME_KEYS = (
    "Cmd", "Entrypoint", "Env", "ExposedPorts", "Healthcheck", "Labels", "OnBuild", "Shell",
    "StopSignal", "User", "Volumes", "WorkingDir",
)  # fmt: skip
RuntimeConfig = tuple[tuple[str, str], ...]


def runtime_config(config: Any, architecture: Any, os: Any) -> RuntimeConfig:
    """A comparable form of an image's runtime config: the :data:`RUNTIME_KEYS` present, plus
    architecture and OS, each as canonical JSON, sorted. Empty values count as absent (one
    engine shows ``null`` where another shows ``[]``). The classic and containerd stores
    disagree on an image's ID but agree on this, so it checks a load on either."""
    fields: dict[str, Any] = {}
    if isinstance(config, dict):
        for key in RUNTIME_KEYS:
            value = config.get(key)
            if value not in (None, "", [], {}):
                fields[key] = value
    for key, value in (("architecture", architecture), ("os", os)):
        if value:
            fields[key] = value
    return tuple(sorted((key, json.dumps(v, sort_keys=True)) for key, v in fields.items()))


def store_of(driver_status: Any) -> str:
    """``containerd`` for an engine whose ``docker info`` DriverStatus names a containerd
    snapshotter (the containerd image store), else ``classic``."""
    pairs = driver_status if isinstance(driver_status, list) else []
    status = dict(tuple(pair) for pair in pairs if isinstance(pair, list) and len(pair) == 2)
    return "containerd" if "containerd" in str(status.get("driver-type", "")) else "classic"


class Action(StrEnum):
    LOADED = "loaded"
    RESTORED = "restored"  # the reference was moved by hand; the version it names was
    # still held, so it was tagged again (no load)
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True)
class Marker:
    """Names one version of one reference and describes its bundle file.

    ``version`` is the image's config digest: the one identity every engine agrees on (the
    classic store uses it as the image ID; the containerd store's image ID is a manifest
    digest, which differs between a save and the load of it elsewhere). ``layers`` are the
    image's diff IDs, bottom first; ``bundle`` is the tarball's file name in the same
    folder as the marker, with its ``size`` and ``sha256``. Written last: a bundle without
    a marker is never current. ``omitted`` lists the positions of layers a *thin* bundle
    leaves out, because the peer holds them. ``image_id`` (export dir only, never sent) is
    the source engine's own ID for the image when that is not ``version``.
    """

    FORMAT = 2

    reference: str
    version: str
    layers: tuple[str, ...]
    bundle: str
    size: int
    sha256: str
    created: str
    omitted: tuple[int, ...] = ()
    format: int = FORMAT
    image_id: str | None = None

    @property
    def source_id(self) -> str:
        """The ID the source engine gives this version (what ``docker image inspect`` says)."""
        return self.image_id or self.version

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = list(self.layers)
        data["omitted"] = list(self.omitted)
        if self.image_id is None:
            del data["image_id"]
        return data


@dataclass(frozen=True)
class HeldLayers:
    """What a peer's engine holds of the layers the source asked about: its image store,
    the chain IDs it holds, and (containerd store) the blob digest each was loaded from,
    as far as the peer recorded it."""

    store: str
    chains: set[str]
    blobs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PeerImage:
    """What a peer holds for one reference: the image ID its engine runs under it, and
    the version of a complete bundle waiting in its inbox (``None``: nothing)."""

    running: str | None
    inbox: str | None


@dataclass(frozen=True)
class Inventory:
    """What a peer reports it has, per reference the source asked about, and the bytes
    free in its inbox (``None``: the peer did not say)."""

    images: dict[str, PeerImage]
    inbox_free: int | None = None
    partials: dict[str, tuple[int, str]] = field(default_factory=dict)  # name: (size, sha256)


@dataclass
class Result:
    """The outcome of one peer x image in a cycle: one row of ``sync --json``."""

    peer: str
    image: str
    version: str | None
    action: Action
    bytes_sent: int = 0
    seconds: float = 0.0
    error: str | None = None
    transfer: str | None = None  # "full" or "thin" when a bundle was sent
    engine: str | None = None  # Docker's version, or "containerd 1.7.24", "podman 4.3.1"
    store: str | None = None  # the peer's image store: classic, containerd or podman
    published: str | None = None  # the peer's [receiver] publish: where the version is now
    publish_error: str | None = None  # why it is not there (the load stands all the same)

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = str(self.action)
        data["seconds"] = round(self.seconds, 3)
        return data


class ProgressSink(Protocol):
    """Told as bundles move (a terminal's progress bars, metrics); called from the
    threads that serve the peers."""

    def started(self, peer: str, image: str, total: int) -> None: ...

    def advanced(self, peer: str, image: str, done: int) -> None: ...

    def finished(self, result: Result) -> None: ...


@dataclass
class ApplyOutcome:
    """The outcome of one marker applied on a peer: one row of ``apply --json``."""

    image: str
    version: str | None
    action: Action
    seconds: float = 0.0
    error: str | None = None
    missing_layers: bool = False  # a thin bundle whose left-out layers the engine lacks
    published: str | None = None  # [receiver] publish: the name the version is at there
    publish_error: str | None = None  # why it is not (the load stands all the same)

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["action"] = str(self.action)
        data["seconds"] = round(self.seconds, 3)
        return data


@dataclass
class Report:
    """What ``sync`` returns: every peer x image, in a stable order."""

    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.action is not Action.FAILED for r in self.results)


@dataclass
class Planned:
    """What a cycle would do for one peer x image."""

    peer: str
    image: str
    version: str | None
    action: str  # "would-send", "would-apply" (already in the inbox), "unchanged", "failed"
    bytes: int = 0  # estimated bytes on the wire (before compression)
    transfer: str | None = None  # "thin" or "full"
    error: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DryRun:
    """What ``sync --dry-run`` found: the exports a cycle would make first, and what it
    would do for each peer x image."""

    exports: list[str] = field(default_factory=list)  # images a cycle would export first
    results: list[Planned] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.action != "failed" for r in self.results)

    def to_json_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "dry_run": True, "exports": self.exports,
                "results": [r.to_json_dict() for r in self.results]}  # fmt: skip


@dataclass(frozen=True)
class StatusRow:
    """One peer x image of ``imgsync status``: what the peer ran at its last sync."""

    peer: str
    image: str
    version: str | None  # what the peer ran at its last successful sync of the image
    exported: str | None  # the version the source exported last (None: never)
    reached: bool  # some sync ever succeeded with this peer (any image)
    last_success: float | None = None
    bytes_sent: int | None = None  # of the last sync that moved bytes
    seconds: float | None = None
    error: str | None = None  # the last sync's error, when it failed
    engine: str | None = None  # what the peer's inventory said of its engine, last time
    store: str | None = None

    @property
    def current(self) -> bool:
        return self.exported is not None and self.version == self.exported
