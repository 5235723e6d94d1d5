"""Markers on disk and on the wire: strict JSON, a size limit, a format number.

A marker is refused whole (:class:`MarkerError`) when anything about it is off: too
big, not JSON, unknown or missing keys, wrong types, an unknown format, a bundle name
that is not a plain file name in the same folder. Nothing is ever half-read.
"""

from __future__ import annotations

import json
import re
from typing import Any

from imgsync import reference
from imgsync.errors import MarkerError
from imgsync.model import SHA256_HEX_RE, VERSION_RE, Marker

MAX_BYTES = 64 * 1024
SUFFIX = ".marker.json"
BUNDLE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.tar")
_FIELDS = {
    "format": int,
    "reference": str,
    "version": str,
    "layers": list,
    "bundle": str,
    "size": int,
    "sha256": str,
    "created": str,
    "omitted": list,
}
_OPTIONAL = {"image_id": str}


def dumps(marker: Marker) -> bytes:
    return (json.dumps(marker.to_json_dict(), indent=2, sort_keys=True) + "\n").encode()


def loads(raw: bytes, where: str) -> Marker:
    """Parse a marker; ``where`` names it in errors (a path, or ``peer p1: …``)."""
    if len(raw) > MAX_BYTES:
        raise MarkerError(f"marker {where}: {len(raw)} bytes, larger than {MAX_BYTES}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, absurd numbers, nesting
        raise MarkerError(f"marker {where}: not valid JSON ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise MarkerError(f"marker {where}: not a JSON object")
    return _validate(data, where)


def _validate(data: dict[str, Any], where: str) -> Marker:
    """Every rule, in the order a reader meets them; the first broken one is the error."""
    _check_shape(data, where)
    ref = _check_names(data, where)
    _check_layers(data, where)
    return Marker(
        reference=ref,
        version=data["version"],
        layers=tuple(data["layers"]),
        bundle=data["bundle"],
        size=data["size"],
        sha256=data["sha256"],
        created=data["created"],
        omitted=tuple(data["omitted"]),
        format=data["format"],
        image_id=data.get("image_id"),
    )


def _check_shape(data: dict[str, Any], where: str) -> None:
    """The format number, the keys and each value's JSON type."""
    fmt = data.get("format")
    if type(fmt) is not int or fmt != Marker.FORMAT:
        raise MarkerError(
            f"marker {where}: format {fmt!r} is not supported (this imgsync reads {Marker.FORMAT})"
        )
    unknown = sorted(set(data) - set(_FIELDS) - set(_OPTIONAL))
    missing = sorted(set(_FIELDS) - set(data))
    if unknown or missing:
        raise MarkerError(f"marker {where}: unknown keys {unknown}, missing keys {missing}")
    for key, kind in (_FIELDS | _OPTIONAL).items():
        if key in data and type(data[key]) is not kind:
            raise MarkerError(f"marker {where}: {key} must be a {kind.__name__}")


def _check_names(data: dict[str, Any], where: str) -> str:
    """The digests, the reference (returned, normalized), the bundle's name and size."""
    image_id = data.get("image_id")
    if image_id is not None and not VERSION_RE.fullmatch(image_id):
        raise MarkerError(f"marker {where}: image_id is not a sha256 image ID")
    try:
        ref = reference.normalize(data["reference"])
    except reference.InvalidReference as err:
        raise MarkerError(f"marker {where}: {err}") from None
    if ref != data["reference"]:
        raise MarkerError(f"marker {where}: reference {data['reference']!r} is not normalized")
    if not VERSION_RE.fullmatch(data["version"]):
        raise MarkerError(f"marker {where}: version is not a sha256 image ID")
    if not SHA256_HEX_RE.fullmatch(data["sha256"]):
        raise MarkerError(f"marker {where}: sha256 is not 64 hex digits")
    if not BUNDLE_NAME_RE.fullmatch(data["bundle"]):
        raise MarkerError(
            f"marker {where}: bundle {data['bundle']!r} is not a plain file name in the inbox"
        )
    if data["size"] < 0:
        raise MarkerError(f"marker {where}: size is negative")
    return ref


def _check_layers(data: dict[str, Any], where: str) -> None:
    """The layers' diff IDs, and the positions a thin bundle leaves out, in order."""
    layers = data["layers"]
    if not all(isinstance(layer, str) and VERSION_RE.fullmatch(layer) for layer in layers):
        raise MarkerError(f"marker {where}: layers must be sha256 diff IDs")
    omitted = data["omitted"]
    if not all(type(i) is int and 0 <= i < len(layers) for i in omitted) or sorted(
        set(omitted)
    ) != list(omitted):
        raise MarkerError(f"marker {where}: omitted must list layer positions in order")
