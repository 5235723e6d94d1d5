"""One peer's cycle (imgsync.source.peer) through a fake peer link: what is asked, sent and applied,
when it is retried, where an upload resumes, when a thin bundle is followed by the full
one, and how the peer's verdict becomes the result. The lab proves the real links."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from imgsync.adapters.signals import Cancelled
from imgsync.bundle import payload, saveformat
from imgsync.bundle.payload import Payload
from imgsync.config import Config, PeerSettings, peer_settings
from imgsync.errors import ConnectError, HostKeyError, StorageError, TransportError
from imgsync.model import (
    Action,
    ApplyOutcome,
    HeldLayers,
    Inventory,
    Marker,
    PeerImage,
    Result,
    chain_ids,
)
from imgsync.source import peer as peer_mod
from imgsync.source.exports import Exports
from imgsync.source.link import Advance
from imgsync.source.live import LiveExport

from .tarballs import Image, layer_tar, legacy

BASE = layer_tar({"bin/sh": b"s" * 5000})
WEB = Image("acme/web:1", [BASE, layer_tar({"app/web": b"w" * 3000})])
DB = Image("acme/db:1", [BASE, layer_tar({"app/db": b"d" * 3000})])
REFS = {"docker.io/acme/web:1": WEB, "docker.io/acme/db:1": DB}


def exported(export_dir: Path, image: Image, reference: str) -> Marker:
    path = legacy(export_dir / (reference.split("/")[-1].replace(":", "-") + ".tar"), [image])
    data = path.read_bytes()
    return Marker(
        reference, image.config_digest, image.diff_ids, path.name, len(data),
        hashlib.sha256(data).hexdigest(), "now",
    )  # fmt: skip


@dataclass
class Sent:
    name: str
    offset: int
    omitted: tuple[int, ...]
    data: bytes


@dataclass
class FakeLink:
    """A peer that holds ``running`` (reference: version), ``held`` layers (chain IDs) on a
    ``store``, ``partials`` in its inbox, and answers apply with ``verdicts`` (reference:
    outcome fields; default: loaded as sent). Everything asked is recorded."""

    running: dict[str, str] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    store: str | None = "classic"
    partials: dict[str, tuple[int, str]] = field(default_factory=dict)
    verdicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_send: dict[str, Exception] = field(default_factory=dict)
    engine_version: str | None = "20.10"
    streams: bool = False
    calls: list[str] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    closed: bool = False

    def inventory(self, images: Sequence[str]) -> Inventory:
        self.calls.append("inventory")
        return Inventory(
            {i: PeerImage(self.running.get(i), None) for i in images}, partials=self.partials
        )

    def recognise(self, markers: Mapping[str, Marker], inventory: Inventory) -> Inventory:
        return inventory

    def held_layers(self, chains: Sequence[str]) -> HeldLayers:
        self.calls.append("layers")
        return HeldLayers(self.store or "classic", self.held & set(chains))

    def send_bundle(
        self, bundle: Payload, sent: Marker, offset: int, advance: Advance | None
    ) -> int:
        self.calls.append(f"send {sent.reference}")
        if sent.reference in self.fail_send:
            raise self.fail_send[sent.reference]
        if bundle.size is None:  # still being exported: the size and digest come at the end
            assert self.streams, "a link that cannot stream was given a live bundle"
            self.calls.append("streaming")
            data = b"".join(bundle.chunks(offset))
        else:
            data = b"".join(bundle.chunks(offset))
            assert hashlib.sha256(b"".join(bundle.chunks(0))).hexdigest() == sent.sha256
        self.sent.append(Sent(bundle.name, offset, sent.omitted, data))
        return len(data)

    def send_marker(self, sent: Marker) -> int:
        self.calls.append(f"marker {sent.reference}")
        self.markers.append(sent)
        return 100

    def apply(self, markers: Sequence[Marker]) -> list[ApplyOutcome]:
        self.calls.append("apply " + ",".join(m.reference for m in markers))
        outcomes = []
        for m in markers:
            queue = self.verdicts.get(m.reference) or [{}]
            verdict = {"version": m.version, "action": Action.LOADED, **queue.pop(0)}
            outcomes.append(ApplyOutcome(m.reference, **verdict))
        return outcomes

    def close(self) -> None:
        self.closed = True


def settings(retries: int = 2) -> PeerSettings:
    config = Config.model_validate(
        {"peers": [{"name": "edge", "host": "192.0.2.1", "retries": retries, "retry_wait": 1}]}
    )
    return peer_settings(config, config.peers[0])


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded (the retry backoff)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None and timeout >= 0.5:  # a backoff, not a poll
            self.waits.append(timeout)
            return False
        return super().wait(timeout)


@pytest.fixture
def markers(tmp_path: Path) -> dict[str, Marker]:
    return {ref: exported(tmp_path, image, ref) for ref, image in REFS.items()}


def run(
    links: list[FakeLink | Exception],
    markers: dict[str, Marker],
    export_dir: Path,
    retries: int = 2,
    stop: threading.Event | None = None,
) -> dict[str, Result]:
    """Sync one peer; each attempt takes the next of ``links`` (an exception: the connect
    fails with it)."""
    queue = list(links)

    def connect(peer: PeerSettings, where: Path, stop: threading.Event) -> Any:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    exports = peer_mod.Exports.ready(markers, {})
    results = peer_mod.sync_peer(
        settings(retries), list(markers), exports, export_dir, stop or threading.Event(),
        connect=connect,
    )  # fmt: skip
    return {r.image: r for r in results}


def test_a_peer_that_runs_every_version_gets_nothing_sent(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    link = FakeLink(running={ref: m.version for ref, m in markers.items()})
    results = run([link], markers, tmp_path)
    assert {r.action for r in results.values()} == {Action.UNCHANGED}
    assert link.calls == ["inventory"] and link.closed


def test_a_new_peer_gets_full_bundles_then_markers_then_one_apply(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    link = FakeLink()
    results = run([link], markers, tmp_path)
    web, db = "docker.io/acme/web:1", "docker.io/acme/db:1"
    assert link.calls == [
        "inventory", "layers", f"send {web}", f"marker {web}", f"send {db}", f"marker {db}",
        f"apply {web},{db}",
    ]  # fmt: skip
    assert results[web].action is Action.LOADED and results[web].transfer == "full"
    assert link.sent[0].data == (tmp_path / markers[web].bundle).read_bytes()
    # the base both images share travels once: the second bundle leaves it out
    assert results[db].transfer == "thin" and link.sent[1].omitted == (0,)
    assert results[db].engine == "20.10" and results[db].store == "classic"


def test_an_upload_resumes_at_the_bytes_the_peer_holds_when_they_are_ours(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web = markers["docker.io/acme/web:1"]
    data = (tmp_path / web.bundle).read_bytes()
    held = hashlib.sha256(data[:4096]).hexdigest()
    link = FakeLink(partials={web.bundle: (4096, held)})
    run([link], {web.reference: web}, tmp_path)
    assert link.sent[0].offset == 4096 and link.sent[0].data == data[4096:]


def test_an_upload_starts_over_when_the_bytes_the_peer_holds_are_not_ours(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web = markers["docker.io/acme/web:1"]
    link = FakeLink(partials={web.bundle: (4096, "0" * 64)})
    run([link], {web.reference: web}, tmp_path)
    assert link.sent[0].offset == 0


def test_a_thin_bundle_the_peer_cannot_use_is_followed_by_the_full_one(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web = markers["docker.io/acme/web:1"]
    missing = {"action": Action.FAILED, "version": None, "missing_layers": True, "error": "x"}
    link = FakeLink(held={chain_ids(web.layers)[0]}, verdicts={web.reference: [missing]})
    results = run([link], {web.reference: web}, tmp_path)
    assert [s.omitted for s in link.sent] == [(0,), ()]
    assert link.calls.count(f"apply {web.reference}") == 2
    assert results[web.reference].action is Action.LOADED
    assert results[web.reference].transfer == "full"


def test_a_load_the_peer_rolled_back_fails_the_image_with_the_peers_reason(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web, db = "docker.io/acme/web:1", "docker.io/acme/db:1"
    refused = {"action": Action.FAILED, "version": None, "error": "previous image kept"}
    link = FakeLink(verdicts={web: [refused], db: [{"version": "sha256:" + "e" * 64}]})
    results = run([link], markers, tmp_path)
    assert results[web].action is Action.FAILED
    assert results[web].error == "peer edge: previous image kept"
    assert results[db].action is Action.FAILED
    assert results[db].error is not None and "expected " + markers[db].version in results[db].error


def test_an_upload_refused_for_one_image_fails_it_alone(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web, db = "docker.io/acme/web:1", "docker.io/acme/db:1"
    link = FakeLink(fail_send={web: StorageError("inbox full")})
    results = run([link], markers, tmp_path)
    assert results[web].action is Action.FAILED and results[web].error == "peer edge: inbox full"
    assert results[db].action is Action.LOADED
    assert f"apply {db}" in link.calls


def test_a_failing_link_is_retried_with_growing_waits_and_a_fresh_connection(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    stop = RecordingStop()
    down = ConnectError("peer edge: 192.0.2.1:22 did not answer")
    link = FakeLink()
    results = run([down, down, link], markers, tmp_path, retries=2, stop=stop)
    assert {r.action for r in results.values()} == {Action.LOADED}
    assert len(stop.waits) == 2
    assert 0.75 <= stop.waits[0] <= 1.25 and 1.5 <= stop.waits[1] <= 2.5  # 1 s, then 2 s


def test_a_peer_that_stays_down_fails_every_image_after_its_retries(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    stop = RecordingStop()
    down = ConnectError("peer edge: 192.0.2.1:22 did not answer")
    results = run([down, down], markers, tmp_path, retries=1, stop=stop)
    assert len(stop.waits) == 1
    for result in results.values():
        assert result.action is Action.FAILED
        assert result.error == "peer edge: 192.0.2.1:22 did not answer (after 2 attempts)"


def test_a_changed_host_key_is_not_retried(tmp_path: Path, markers: dict[str, Marker]) -> None:
    stop = RecordingStop()
    results = run([HostKeyError("host key CHANGED")], markers, tmp_path, stop=stop)
    assert stop.waits == []
    assert {r.error for r in results.values()} == {"host key CHANGED"}


class DropsOnApply(FakeLink):
    def apply(self, markers: Sequence[Marker]) -> list[ApplyOutcome]:
        raise TransportError("peer edge: the session was lost")


def test_a_session_lost_after_the_upload_resumes_with_apply_only(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web = markers["docker.io/acme/web:1"]
    first = DropsOnApply()
    # the second session finds the bundle in the inbox: the plan applies it, sends nothing
    second = FakeLink()
    second.inventory = lambda images: Inventory(  # type: ignore[method-assign]
        {web.reference: PeerImage(None, web.version)}
    )
    results = run([first, second], {web.reference: web}, tmp_path, stop=RecordingStop())
    assert first.closed and second.calls == ["apply docker.io/acme/web:1"]
    assert results[web.reference].action is Action.LOADED
    assert results[web.reference].bytes_sent == len(first.sent[0].data) + 100


def test_the_inventory_is_asked_while_the_source_still_exports(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    asked = threading.Event()

    class Asking(FakeLink):
        def inventory(self, images: Sequence[str]) -> Inventory:
            asked.set()
            return super().inventory(images)

    link, exports = Asking(), peer_mod.Exports()
    thread, results = sync_in_thread(link, exports, list(markers), tmp_path)
    try:
        assert asked.wait(5), "the inventory waited for the export"
        assert not [c for c in link.calls if c != "inventory"]
    finally:
        exports.finish(markers, {})
        thread.join(5)
    assert {r.action for r in results} == {Action.LOADED}


def test_an_image_the_source_could_not_export_fails_on_the_peer_alone(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web, db = "docker.io/acme/web:1", "docker.io/acme/db:1"
    link = FakeLink()
    exports = peer_mod.Exports.ready({web: markers[web]}, {db: "source: docker save failed"})
    results = {
        r.image: r
        for r in peer_mod.sync_peer(
            settings(), [web, db], exports, tmp_path, threading.Event(), connect=lambda *_: link
        )
    }
    assert results[db].action is Action.FAILED and results[db].error == "source: docker save failed"
    assert results[web].action is Action.LOADED


class Streaming(FakeLink):
    """Tells when a send begins (``began``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.began = threading.Event()

    def send_bundle(
        self, bundle: Payload, sent: Marker, offset: int, advance: Advance | None
    ) -> int:
        self.began.set()
        return super().send_bundle(bundle, sent, offset, advance)


def live_export(tmp_path: Path, final: Marker) -> tuple[LiveExport, Path, bytes]:
    """A LiveExport of ``final`` (the bytes are in the export dir already), its temp path
    (empty yet) and the bytes the save will write."""
    data = (tmp_path / final.bundle).read_bytes()
    (tmp_path / final.bundle).unlink()
    temp = tmp_path / (".tmp-x-" + final.bundle)
    plan = replace(final, sha256="", size=len(data) * 2, created="")
    return LiveExport(plan, temp), temp, data


def streaming_sync(
    tmp_path: Path, web: Marker, streams: bool
) -> tuple[Streaming, LiveExport, Exports, tuple[Path, bytes]]:
    """A link (``streams`` or not), and ``web`` announced as an export still being written."""
    live, temp, data = live_export(tmp_path, web)
    exports = Exports()
    exports.announce({web.reference: live.provisional}, {web.reference: live}, {})
    return Streaming(streams=streams), live, exports, (temp, data)


def sync_in_thread(
    link: FakeLink, exports: Exports, images: list[str], export_dir: Path
) -> tuple[threading.Thread, list[Result]]:
    results: list[Result] = []

    def sync() -> None:
        results.extend(
            peer_mod.sync_peer(
                settings(),
                images,
                exports,
                export_dir,
                threading.Event(),
                connect=lambda *_: link,
            )
        )

    thread = threading.Thread(target=sync, daemon=True)
    thread.start()
    return thread, results


def test_a_bundle_is_streamed_while_it_is_exported_and_its_marker_follows_the_export(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web = markers["docker.io/acme/web:1"]
    link, live, exports, (temp, data) = streaming_sync(tmp_path, web, streams=True)
    thread, results = sync_in_thread(link, exports, [web.reference], tmp_path)
    try:
        with temp.open("wb") as out:  # the save, in two halves
            out.write(data[:1000])
            out.flush()
            live.advance(1000)
            assert link.began.wait(5), "the upload waited for the export"
            assert "streaming" in link.calls and not link.markers
            out.write(data[1000:])
        temp.rename(tmp_path / web.bundle)
        live.finish(web)
    finally:
        exports.finish({web.reference: web}, {})
        thread.join(5)
    assert link.sent[0].data == data
    assert link.markers == [web]  # the final one: size and sha256 of the export
    assert results[0].action is Action.LOADED


def test_a_link_that_cannot_stream_gets_the_bundle_once_it_is_exported(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web = markers["docker.io/acme/web:1"]
    link, live, exports, (temp, data) = streaming_sync(tmp_path, web, streams=False)
    thread, results = sync_in_thread(link, exports, [web.reference], tmp_path)
    try:
        temp.write_bytes(data[:1000])
        live.advance(1000)
        assert not link.began.wait(0.5)
        temp.write_bytes(data)
        temp.rename(tmp_path / web.bundle)
        live.finish(web)
        assert link.began.wait(5)
    finally:
        exports.finish({web.reference: web}, {})
        thread.join(5)
    assert "streaming" not in link.calls and link.sent[0].data == data
    assert results[0].action is Action.LOADED


def test_an_export_that_fails_while_streamed_fails_that_image_alone(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web, db = markers["docker.io/acme/web:1"], markers["docker.io/acme/db:1"]
    live, temp, data = live_export(tmp_path, web)
    exports = Exports()
    provisional = {web.reference: live.provisional, db.reference: db}
    exports.announce(provisional, {web.reference: live}, {})
    link = Streaming(streams=True)
    thread, results = sync_in_thread(link, exports, [web.reference, db.reference], tmp_path)
    try:
        temp.write_bytes(data[:1000])
        live.advance(1000)
        assert link.began.wait(5)
        live.fail("source: image acme/web:1 changed while it was being saved")
    finally:
        exports.finish({db.reference: db}, {web.reference: "source: changed"})
        thread.join(5)
    by_image = {r.image: r for r in results}
    assert by_image[web.reference].action is Action.FAILED
    assert by_image[web.reference].error == (
        "source: image acme/web:1 changed while it was being saved"
    )
    assert by_image[db.reference].action is Action.LOADED


def test_a_connected_link_is_closed_when_the_source_export_fails_before_the_selection(
    tmp_path: Path,
) -> None:
    link, exports = FakeLink(), peer_mod.Exports()
    exports.abandon("cannot reach Docker at unix:///run/docker.sock")
    with pytest.raises(Cancelled, match="cannot reach Docker"):
        peer_mod.sync_peer(
            settings(), None, exports, tmp_path, threading.Event(), connect=lambda *_: link
        )
    assert link.closed and link.calls == []


def test_an_update_is_streamed_thin_while_it_is_exported_and_is_the_thin_cut_of_the_export(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    web = markers["docker.io/acme/web:1"]
    link, live, exports, (temp, data) = streaming_sync(tmp_path, web, streams=True)
    link.held = {chain_ids(web.layers)[0]}  # the peer holds the base layer
    thread, results = sync_in_thread(link, exports, [web.reference], tmp_path)
    try:
        with temp.open("wb") as out:  # the save: each member told once written

            def landed(member: saveformat.Member) -> None:
                out.flush()
                live.member(member)

            archive = saveformat.scan(io.BytesIO(data), sink=out.write, on_member=landed)
            assert link.began.wait(5), "the thin upload waited for the export"
        temp.rename(tmp_path / web.bundle)
        live.finish(web, archive.data_end)
    finally:
        exports.finish({web.reference: web}, {})
        thread.join(5)
    cut = payload.thin(web.bundle, tmp_path / web.bundle, (0,))
    assert [(s.omitted, s.data) for s in link.sent] == [((0,), b"".join(cut.chunks()))]
    sent = link.markers[0]
    assert (sent.size, sent.sha256, sent.omitted) == (cut.size, payload.sha256_of(cut), (0,))
    assert (results[0].transfer, results[0].action) == ("thin", Action.LOADED)


def test_a_bug_in_one_peer_fails_that_peers_images_and_nothing_else(
    tmp_path: Path, markers: dict[str, Marker]
) -> None:
    results = run([TypeError("a bug")], markers, tmp_path)  # raised by the connect
    assert {r.action for r in results.values()} == {Action.FAILED}
    assert all("internal error (TypeError('a bug'))" in str(r.error) for r in results.values())
