"""The export on the source, with an engine that hands over a prepared tarball: the peers
streaming it are told the export is complete before older bundles are removed, and a thin
bundle streamed while it runs is the one cut from the finished export."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imgsync.bundle import payload
from imgsync.bundle.bundledir import BundleDir
from imgsync.engines.base import ImageInfo
from imgsync.model import Marker
from imgsync.source import export
from imgsync.source.live import LiveExport, LiveThinPayload, thin_streams

from .tarballs import Image, layer_tar, legacy, oci

REF = "acme/web:1"


class SavingEngine:
    def __init__(self, image: Image, tarball: bytes, piece: int = 1 << 20) -> None:
        self.image, self.tarball, self.piece = image, tarball, piece

    def inspect(self, reference: str) -> ImageInfo:
        return ImageInfo(self.image.config_digest, self.image.diff_ids, len(self.tarball))

    def save(self, reference: str) -> Iterator[bytes]:
        for start in range(0, len(self.tarball), self.piece):
            yield self.tarball[start : start + self.piece]


def engine_for(tmp_path: Path, content: bytes) -> SavingEngine:
    image = Image(REF, [layer_tar({"app/data": content})])
    return SavingEngine(image, legacy(tmp_path / f"{len(content)}.tar", [image]).read_bytes())


class Watching(LiveExport):
    """Notes which bundles the export dir holds when the export says it is complete."""

    def __init__(self, provisional: Marker, path: Path, bundles: BundleDir) -> None:
        super().__init__(provisional, path)
        self.bundles = bundles
        self.held_at_finish: list[str] = []

    def finish(self, final: Marker, data_end: int | None = None) -> None:
        self.held_at_finish = sorted(p.name for p in self.bundles.bundle_paths(REF))
        super().finish(final, data_end)


def test_streaming_peers_are_told_the_export_is_complete_before_old_bundles_go(
    tmp_path: Path,
) -> None:
    bundles = BundleDir(tmp_path / "export")
    bundles.create()
    engine: Any = engine_for(tmp_path, b"v1" * 1000)
    old, _ = export.export_image(engine, bundles, REF, keep=1)
    engine = engine_for(tmp_path, b"v2" * 1000)
    found = export.head(engine, bundles, REF)
    plan = export.provisional(found)
    live = Watching(plan, bundles.path / ".tmp-live", bundles)
    new = export.save(engine, bundles, found, keep=1, live=live)
    assert live.held_at_finish == sorted([old.bundle, new.bundle])
    assert [p.name for p in bundles.bundle_paths(REF)] == [new.bundle]


BASE = layer_tar({"bin/sh": b"s" * 5000})


@pytest.mark.parametrize("layout", [legacy, oci])
def test_a_thin_stream_of_a_running_export_is_the_thin_cut_of_the_finished_bundle(
    tmp_path: Path, layout: Callable[[Path, list[Image]], Path]
) -> None:
    image = Image(REF, [BASE, layer_tar({"app/data": b"a" * 3000}), BASE])
    tarball = layout(tmp_path / "v.tar", [image]).read_bytes()
    engine: Any = SavingEngine(image, tarball, piece=700)
    bundles = BundleDir(tmp_path / "export")
    bundles.create()
    found = export.head(engine, bundles, REF)
    live = LiveExport(export.provisional(found), bundles.path / ".tmp-live")
    stop = threading.Event()
    thin = LiveThinPayload(live, (0, 2), stop)  # the base, twice: the peer holds it
    streamed: list[bytes] = []
    reader = threading.Thread(target=lambda: streamed.extend(thin.chunks()))
    reader.start()
    final = export.save(engine, bundles, found, live=live)
    reader.join(5)
    cut = payload.thin(final.bundle, bundles.bundle_path(final), (0, 2))
    assert b"".join(streamed) == b"".join(cut.chunks())
    assert (thin.final.size, thin.final.sha256) == (cut.size, payload.sha256_of(cut))


def test_layers_told_apart_only_by_position_are_not_streamed_thin() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    plan = Marker(REF, "sha256:" + "c" * 64, (a, b, a), "x.tar", 1, "", "")
    assert thin_streams(plan, (0, 2)) and thin_streams(plan, (1,))
    assert not thin_streams(plan, (0,))  # the same layer is sent at position 2
