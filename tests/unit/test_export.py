"""The export on the source, with an engine that hands over a prepared tarball: the peers
streaming it are told the export is complete before older bundles are removed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imgsync import export
from imgsync.bundledir import BundleDir
from imgsync.engine import ImageInfo
from imgsync.live import LiveExport
from imgsync.model import Marker

from .tarballs import Image, layer_tar, legacy

REF = "acme/web:1"


class SavingEngine:
    def __init__(self, image: Image, tarball: bytes) -> None:
        self.image, self.tarball = image, tarball

    def inspect(self, reference: str) -> ImageInfo:
        return ImageInfo(self.image.config_digest, self.image.diff_ids, len(self.tarball))

    def save(self, reference: str) -> Iterator[bytes]:
        yield self.tarball


def engine_for(tmp_path: Path, content: bytes) -> SavingEngine:
    image = Image(REF, [layer_tar({"app/data": content})])
    return SavingEngine(image, legacy(tmp_path / f"{len(content)}.tar", [image]).read_bytes())


class Watching(LiveExport):
    """Notes which bundles the export dir holds when the export says it is complete."""

    def __init__(self, provisional: Marker, path: Path, bundles: BundleDir) -> None:
        super().__init__(provisional, path)
        self.bundles = bundles
        self.held_at_finish: list[str] = []

    def finish(self, final: Marker) -> None:
        self.held_at_finish = sorted(p.name for p in self.bundles.bundle_paths(REF))
        super().finish(final)


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
