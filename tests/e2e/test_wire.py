"""On the wire: zstd where it pays (and raw where it does not), and a rate cap that
keeps a sync off a site's only uplink."""

from __future__ import annotations

import io
import tarfile
import time

import pytest

from lab import Lab, build_image

from .helpers import sync_json

pytestmark = pytest.mark.lab
MB = 1024 * 1024


def build_text_image(lab: Lab, ref: str, size: int, seed: int) -> str:
    """An image whose one layer is highly compressible text (logs, configs, source)."""
    text = b"".join(f"{seed} line {i}: the quick brown fox\n".encode() for i in range(size // 40))
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY text.log /text.log\n"),
                           ("text.log", text)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = lab.source.client().images.build(
        fileobj=context, custom_context=True, tag=ref, rm=True, pull=False
    )
    return str(image.id)


def test_zstd_shrinks_what_compresses_and_leaves_random_data_raw(lab: Lab) -> None:
    text, noise = "wire-text/app:1", "wire-noise/app:1"
    ids = {text: build_text_image(lab, text, 8 * MB, seed=9100)}
    ids[noise] = build_image(lab.source.client(), noise, [("noise.bin", 8 * MB)], seed=9101)
    sent = {}  # bytes up through each peer's relay, per image (one sync each)
    for ref in (text, noise):
        lab.write_configs([ref], peer_overrides={"p1": {"compression": "zstd"}})
        lab.reset_counters()
        code, report = sync_json(lab)
        assert code == 0, report
        sent.update({(p.name, ref): p.relay.bytes_up for p in lab.peers})
    assert sent[("p1", text)] < 0.2 * sent[("p2", text)], sent
    assert sent[("p1", noise)] <= 1.01 * sent[("p2", noise)], sent
    for peer in lab.peers:
        assert {ref: peer.docker.image_id(ref) for ref in ids} == ids


def test_max_rate_caps_the_upload(lab: Lab) -> None:
    image = "wire-rate/app:1"
    build_image(lab.source.client(), image, [("data.bin", 6 * MB)], seed=9110)
    lab.write_configs([image], peer_overrides={"p1": {"max_rate": "2MB/s"}})
    lab.reset_counters()
    started = time.monotonic()
    code, report = sync_json(lab, "--peer", "p1")
    elapsed = time.monotonic() - started
    assert code == 0, report
    sent = lab.peer("p1").relay.bytes_up  # counted on the wire, not by imgsync
    assert sent > 6 * MB
    assert elapsed >= sent / 2e6 * 0.95, (elapsed, sent)  # never faster than the cap
