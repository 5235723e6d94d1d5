"""A compressible image for the benchmark: busybox + layers of text-like bytes.

The lab's images (lab/images.py) are random bytes: no compression can help, which is the
point there. Real layers (binaries, text, package indexes) compress; this image stands for
them. Each MiB of a layer is 4 KiB blocks of lowercase "text" (letters, spaces and
newlines with English-like frequencies, from the lab's deterministic AES-CTR stream); every
other block repeats one of the 8 blocks before it, as repeated lines do. zstd -1 makes it
about 4.5x smaller, zstd -3 about 3.7x, gzip -1 about 3x (the build records the zstd
figures it measures). Deterministic for a seed, like the lab's images.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from typing import IO

import docker

from lab.images import BUSYBOX, CHUNK, MTIME, _add_bytes, _ChunkReader, layer_path, random_chunks

BLOCK = 4096
REPEAT_BACK = 8  # a repeated block is a copy of one of this many blocks before it
# 256 byte values -> characters, as often as they occur in English-ish text (space first)
_FREQUENCIES = [
    (" ", 56), ("e", 40), ("t", 28), ("a", 24), ("o", 22), ("i", 18), ("n", 18), ("s", 14),
    ("r", 12), ("h", 8), ("l", 6), ("d", 4), ("\n", 2), ("c", 1), ("u", 1), ("m", 1), ("f", 1),
]  # fmt: skip
TEXT_TABLE = b"".join(char.encode() * count for char, count in _FREQUENCIES)
assert len(TEXT_TABLE) == 256


def text_chunks(seed: int, name: str, size: int) -> Iterator[bytes]:
    """``size`` deterministic, compressible bytes for (seed, name), in chunks of 1 MiB."""
    for raw in random_chunks(seed, name, size):
        text = raw.translate(TEXT_TABLE)
        blocks: list[bytes] = []
        for index in range(0, (len(raw) + BLOCK - 1) // BLOCK):
            if index % 2 == 0 or index < REPEAT_BACK:
                blocks.append(text[index * BLOCK : (index + 1) * BLOCK])
            else:
                back = raw[index * BLOCK] % REPEAT_BACK + 1
                blocks.append(blocks[index - back])
        yield b"".join(blocks)[: len(raw)]


def zstd_ratio(seed: int, size: int = 32 * CHUNK) -> dict[str, float]:
    """How much smaller zstd makes a sample of these layers: {"zstd -1": 4.5, ...}."""
    import zstandard

    sample = b"".join(text_chunks(seed, "sample", size))
    return {
        f"zstd -{level}": len(sample) / len(zstandard.ZstdCompressor(level=level).compress(sample))
        for level in (1, 3)
    }


def _write_context(out: IO[bytes], layers: list[tuple[str, int]], seed: int) -> None:
    """The build context (Dockerfile, busybox, one text file per layer), as lab/images.py
    writes it for random layers."""
    lines = ["FROM scratch", 'COPY ["rootfs/", "/"]']
    for index, (name, _size) in enumerate(layers):
        lines.append(f"COPY {json.dumps([f'layer{index}', layer_path(name)])}")
    lines.append('CMD ["/bin/busybox", "sh"]')
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "Dockerfile", ("\n".join(lines) + "\n").encode())
        for directory in ("rootfs", "rootfs/bin"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        _add_bytes(tar, "rootfs/bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
        for index, (name, size) in enumerate(layers):
            info = tarfile.TarInfo(f"layer{index}")
            info.size, info.mode, info.mtime = size, 0o644, MTIME
            reader = io.BufferedReader(_ChunkReader(text_chunks(seed, name, size)), CHUNK)
            tar.addfile(info, reader)


def build_text_image(
    client: docker.DockerClient, ref: str, layers: list[tuple[str, int]], seed: int
) -> str:
    """Build ``ref``: busybox, then one compressible layer per (name, size). Its image ID."""
    with tempfile.TemporaryFile(prefix="bench-context-") as context:
        _write_context(context, layers, seed)
        context.seek(0)
        image, _logs = client.images.build(
            fileobj=context,
            custom_context=True,
            tag=ref,
            rm=True,
            forcerm=True,
            pull=False,
            timeout=600,
        )
    if image.id is None:
        raise RuntimeError(f"build of {ref} returned no image id")
    return str(image.id)
