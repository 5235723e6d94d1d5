"""Ask a containerd's CRI plugin what kubelet would see: ``ImageService/ListImages`` of the
CRI v1 API over the node's socket (gRPC, as kubelet and crictl call it; crictl has no
Debian package). The request is empty; the answer is decoded from the protobuf wire format
by hand, only the fields read here: ``Image.id`` (1), ``repo_tags`` (2), ``pinned`` (8)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

LIST_IMAGES = "/runtime.v1.ImageService/ListImages"


@dataclass(frozen=True)
class CriImage:
    id: str  # the config digest
    repo_tags: tuple[str, ...]
    pinned: bool


def list_images(socket: Path) -> list[CriImage]:
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(LIST_IMAGES)
        answer = call(b"", timeout=10)
    return [_image(raw) for number, raw in _fields(answer) if number == 1]


def _image(data: bytes) -> CriImage:
    image_id, tags, pinned = "", [], False
    for number, value in _fields(data):
        if number == 1:
            image_id = bytes(value).decode()
        elif number == 2:
            tags.append(bytes(value).decode())
        elif number == 8:
            pinned = bool(value)
    return CriImage(image_id, tuple(tags), pinned)


def _fields(data: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) of one message: varints as ints, length-delimited as bytes."""
    found: list[tuple[int, bytes | int]] = []
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            found.append((number, value))
        elif wire == 2:
            size, at = _varint(data, at)
            found.append((number, data[at : at + size]))
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire} at {at}")
    return found


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
