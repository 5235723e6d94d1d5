"""What the source and a peer say to each other over SSH, as JSON on stdout.

The source runs the peer's ``apply_command`` with ``--inventory`` (what do you have?)
and plain (apply what landed), both with ``--json``. This module writes and reads those
documents; a peer's answer is checked field by field before the source believes it.
The inventory also carries ``inbox_free``, the bytes free in the peer's inbox (``null``
from a peer that does not say), so the source sends nothing that cannot fit.
Every inventory names the peer's ``imgsync_version``; a bare one (no ``--image``: what
``imgsync check`` asks) also its ``engine`` (``version``, ``store``) and whether imgsync
can write in the inbox (``inbox_writable``). Older peers say none of these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imgsync import __version__
from imgsync.errors import ProtocolError as ProtocolError  # re-exported: the old home
from imgsync.model import (
    SHA256_HEX_RE,
    VERSION_RE,
    Action,
    ApplyOutcome,
    HeldLayers,
    Inventory,
    PeerImage,
    StatusRow,
)
from imgsync.text import printable as printable  # re-exported
from imgsync.text import printable_text as printable_text  # re-exported

FORMAT = 1
SESSION_PROTOCOL = 2  # the framed session (apply --session); 1: one command per step


def session_hello() -> dict[str, Any]:
    """What the peer's session says first."""
    return {"op": "hello", "protocol": SESSION_PROTOCOL, "imgsync_version": __version__}


def check_hello(peer: str, hello: Mapping[str, Any]) -> str:
    """The peer's imgsync version from its hello; raise :class:`ProtocolError` naming the
    side to upgrade when the two speak different session protocols."""
    version = printable(hello.get("imgsync_version")) or "unknown"
    spoken = hello.get("protocol")
    if hello.get("op") != "hello" or type(spoken) is not int:
        raise ProtocolError(f"peer {peer} did not start a session (it said {str(hello)[:80]!r})")
    if spoken < SESSION_PROTOCOL:
        raise ProtocolError(
            f"peer {peer} runs imgsync {version}, which speaks session protocol {spoken}; "
            f"this source speaks {SESSION_PROTOCOL}: upgrade imgsync on {peer} to "
            f"{__version__} or later"
        )
    if spoken > SESSION_PROTOCOL:
        raise ProtocolError(
            f"peer {peer} runs imgsync {version}, which speaks session protocol {spoken}; "
            f"this source (imgsync {__version__}) speaks {SESSION_PROTOCOL}: upgrade imgsync "
            "on the source"
        )
    return version


def dump_inventory(inventory: Inventory, facts: Mapping[str, Any] | None = None) -> str:
    images = {
        ref: {"running": item.running, "inbox": item.inbox}
        for ref, item in inventory.images.items()
    }
    partials = {
        name: {"size": size, "sha256": sha} for name, (size, sha) in inventory.partials.items()
    }
    return json.dumps(
        {
            "format": FORMAT,
            "images": images,
            "inbox_free": inventory.inbox_free,
            "partials": partials,
            "imgsync_version": __version__,
            **(facts or {}),
        }
    )


@dataclass(frozen=True)
class PeerFacts:
    """What an inventory says about the peer itself (``None``: it did not say)."""

    imgsync_version: str | None = None
    engine_version: str | None = None  # Docker's version; "containerd 1.7.24", "podman 4.3.1"
    store: str | None = None
    inbox_writable: bool | None = None
    inbox_free: int | None = None
    engine_kind: str | None = None  # docker, containerd, podman (None: an older peer)
    engine_problems: tuple[str, ...] = ()  # what the peer found wrong with its engine
    engine_notes: tuple[str, ...] = ()  # what else it says of it (CRI, pinning)


def load_facts(raw: bytes) -> PeerFacts:
    """The peer's own facts in an inventory, each one dropped when it is malformed."""
    data = _object(raw)
    engine: dict[str, Any] = data.get("engine") or {}
    if not isinstance(engine, dict):
        engine = {}
    free, writable = data.get("inbox_free"), data.get("inbox_writable")
    kind, version = printable(engine.get("kind")), printable(engine.get("version"))
    if kind not in (None, "docker") and version is not None:
        version = f"{kind} {version}"
    return PeerFacts(
        imgsync_version=printable(data.get("imgsync_version")),
        engine_version=version,
        store=printable(engine.get("store")),
        inbox_writable=writable if isinstance(writable, bool) else None,
        inbox_free=free if type(free) is int and free >= 0 else None,
        engine_kind=kind,
        engine_problems=_lines(engine.get("problems")),
        engine_notes=_lines(engine.get("notes")),
    )


def _lines(value: Any) -> tuple[str, ...]:
    """A short list of printable lines (a peer's problems, notes); anything else: none."""
    return tuple(
        printable_text(str(v), 300) for v in (value if isinstance(value, list) else ())[:8]
    )


def load_inventory(raw: bytes) -> Inventory:
    data = _object(raw)
    images = data.get("images")
    if not isinstance(images, dict):
        raise ProtocolError("inventory has no 'images' object")
    parsed = {}
    for ref, item in images.items():
        if not isinstance(item, dict):
            raise ProtocolError(f"inventory entry for {ref!r} is not an object")
        parsed[str(ref)] = PeerImage(
            running=_version(item.get("running")), inbox=_version(item.get("inbox"))
        )
    free = data.get("inbox_free")
    if free is not None and (type(free) is not int or free < 0):
        raise ProtocolError(f"inventory has inbox_free {free!r}, not a byte count")
    return Inventory(parsed, inbox_free=free, partials=_partials(data.get("partials") or {}))


def _partials(data: Any) -> dict[str, tuple[int, str]]:
    """Partial uploads a peer holds: name → (size, sha256). Checked like the rest."""
    if not isinstance(data, dict):
        raise ProtocolError("inventory 'partials' is not an object")
    found = {}
    for name, item in data.items():
        size = item.get("size") if isinstance(item, dict) else None
        sha = item.get("sha256") if isinstance(item, dict) else None
        if type(size) is not int or size < 0 or not isinstance(sha, str):
            raise ProtocolError(f"inventory partial {name!r} is malformed")
        if not SHA256_HEX_RE.fullmatch(sha):
            raise ProtocolError(f"inventory partial {name!r} has no sha256")
        found[str(name)] = (size, sha)
    return found


def dump_layers(held: HeldLayers) -> str:
    layers = sorted(held.chains)
    return json.dumps(
        {"format": FORMAT, "store": held.store, "layers": layers, "blobs": held.blobs}
    )


def load_layers(raw: bytes) -> HeldLayers:
    """The peer's image store, the chain IDs it holds (of those asked about), and the blob
    each was loaded from where it says (older peers do not: none)."""
    data = _object(raw)
    store, layers, blobs = data.get("store"), data.get("layers"), data.get("blobs") or {}
    if not isinstance(store, str) or not isinstance(layers, list) or not isinstance(blobs, dict):
        raise ProtocolError("layer answer without 'store' and 'layers'")
    chains = {_version(layer) or "" for layer in layers} - {""}
    held_blobs = {
        chain: blob
        for chain, blob in blobs.items()
        if chain in chains and _version(blob) is not None
    }
    return HeldLayers(store[:40], chains, held_blobs)


def dump_apply(outcomes: list[ApplyOutcome]) -> str:
    ok = all(o.action is not Action.FAILED for o in outcomes)
    return json.dumps({"format": FORMAT, "ok": ok, "results": [o.to_json_dict() for o in outcomes]})


def load_apply(raw: bytes) -> list[ApplyOutcome]:
    data = _object(raw)
    results = data.get("results")
    if not isinstance(results, list):
        raise ProtocolError("apply report has no 'results' list")
    outcomes = []
    for item in results:
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise ProtocolError("apply result without an image")
        try:
            action = Action(str(item.get("action")))
        except ValueError:
            raise ProtocolError(f"apply result with action {item.get('action')!r}") from None
        error, publish_error = item.get("error"), item.get("publish_error")
        seconds = item.get("seconds")
        outcomes.append(
            ApplyOutcome(
                image=item["image"],
                version=_version(item.get("version")),
                action=action,
                seconds=_seconds(seconds),
                error=printable_text(str(error)) if error is not None else None,
                missing_layers=item.get("missing_layers") is True,
                published=_name(item.get("published")),
                publish_error=printable_text(str(publish_error)) if publish_error else None,
            )
        )
    return outcomes


def _name(value: Any) -> str | None:
    """A name a peer published an image under (``None``: none, or not a string)."""
    return printable_text(value, 300) if isinstance(value, str) and value else None


def _seconds(value: Any) -> float:
    if type(value) not in (int, float) or not 0 <= value < 1e9:
        return 0.0
    return float(value)


MAX_FLEET_ROWS = 100_000  # leaf x image rows a relay may report


def dump_relay_status(rows: list[StatusRow] | None) -> str:
    """A session's ``status`` reply: the peer's own status rows when it is a relay (a source
    for its site's hosts), or ``relay: false``."""
    if rows is None:
        return json.dumps({"format": FORMAT, "relay": False, "rows": []})
    fields = ("peer", "image", "version", "exported", "reached", "last_success", "error")
    listed = [{f: getattr(r, f) for f in (*fields, "engine", "store")} for r in rows]
    return json.dumps({"format": FORMAT, "relay": True, "rows": listed})


def load_relay_status(raw: bytes, relay: str) -> list[StatusRow] | None:
    """A relay's rows, each peer named ``relay/leaf``; ``None`` when it is no relay. A row
    that is not well formed is refused whole: a relay says what its leaves run, or nothing."""
    data = _object(raw)
    rows = data.get("rows")
    if data.get("relay") is not True:
        return None
    if not isinstance(rows, list) or len(rows) > MAX_FLEET_ROWS:
        raise ProtocolError(f"relay {relay}: its status has no list of rows it may send")
    return [_relay_row(item, relay) for item in rows]


def _relay_row(item: Any, relay: str) -> StatusRow:
    if not isinstance(item, dict):
        raise ProtocolError(f"relay {relay}: a status row is not an object")
    leaf, image = _name(item.get("peer")), _name(item.get("image"))
    version, exported = (
        _version(item.get("version")),
        _version(item.get("exported")),
    )
    when = item.get("last_success")
    if leaf is None or image is None or not isinstance(item.get("reached"), bool):
        raise ProtocolError(f"relay {relay}: a status row without its peer, image or reach")
    return StatusRow(
        f"{relay}/{leaf}", image, version, exported, item["reached"],
        last_success=float(when) if isinstance(when, int | float) else None,
        error=_name(item.get("error")),
        engine=_name(item.get("engine")),
        store=_name(item.get("store")),
    )  # fmt: skip


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, absurd numbers, nesting
        snippet = raw[:200].decode("utf-8", "replace").strip()
        raise ProtocolError(f"answer is not JSON: {snippet!r}") from None
    if not isinstance(data, dict):
        raise ProtocolError("answer is not a JSON object")
    if data.get("format") != FORMAT:
        raise ProtocolError(
            f"answer has format {data.get('format')!r}; this imgsync speaks {FORMAT} "
            "(are both sides the same imgsync version?)"
        )
    return data


def _version(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and VERSION_RE.fullmatch(value):
        return value
    raise ProtocolError(f"{value!r} is not an image version")
