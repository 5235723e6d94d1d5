"""Links that drop: retried with backoff, resumed where they broke; encrypted keys
unlocked from systemd credentials."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from lab import Lab, build_image

from .helpers import actions, build, by_peer_image, sync_json

pytestmark = pytest.mark.lab


def test_a_dropped_link_is_retried_and_the_upload_resumes_where_it_broke(lab: Lab) -> None:
    image = "resume/big:1"
    image_id = build_image(lab.source.client(), image, [("big.bin", 80 * 1024 * 1024)], seed=8100)
    lab.write_configs([image], ssh_overrides={"retries": 3, "retry_wait": 1})
    p1 = lab.peer("p1")
    p1.relay.rate_limit = 20e6  # 4 s for the bundle: time to cut the link in the middle
    sync = subprocess.Popen(
        lab.imgsync_argv("-v", "sync", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = list(p1.inbox.glob(".part-*.tar"))
            if parts and parts[0].stat().st_size > 30 * 1024 * 1024:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the upload to p1 never got going")
        p1.relay.rate_limit = None
        assert p1.relay.drop_all() >= 1
        p1.relay.reset()
        stdout, stderr = sync.communicate(timeout=120)
    finally:
        p1.relay.rate_limit = None
        if sync.poll() is None:
            sync.kill()
    assert sync.returncode == 0, stderr
    report = json.loads(stdout)
    assert actions(report)[("p1", image)] == "loaded"
    assert p1.docker.image_id(image) == image_id
    bundle_size = next(Path(lab.export_dir).glob("resume_big*.tar")).stat().st_size
    assert p1.relay.bytes_up < bundle_size - 30 * 1024 * 1024, "the retry started over"
    assert "resuming upload" in stderr
    assert not list(p1.inbox.glob(".part-*"))


def test_a_peer_that_stays_down_fails_after_its_retries_and_says_so(lab: Lab) -> None:
    image = "retry-down/web:1"
    build(lab, image, seed=8110)
    lab.write_configs(
        [image], ssh_overrides={"retries": 2, "retry_wait": 0.5, "connect_timeout": 2}
    )
    p2 = lab.peer("p2")
    p2.sshd.stop()
    try:
        started = time.monotonic()
        code, report = sync_json(lab)
        elapsed = time.monotonic() - started
    finally:
        p2.sshd.start()
    assert code == 1
    assert actions(report) == {("p1", image): "loaded", ("p2", image): "failed"}
    assert "after 3 attempts" in by_peer_image(report)[("p2", image)]["error"]
    assert p2.relay.connections_total >= 3
    assert elapsed < 3 * 2 + (0.5 + 1.0) * 1.25 + 20  # 3 connects, 2 waits, start-up


def test_an_encrypted_key_is_unlocked_from_systemd_credentials(lab: Lab, tmp_path: Path) -> None:
    image = "passphrase/web:1"
    image_id = build(lab, image, seed=8120)
    key = tmp_path / "id_ed25519"
    key.write_bytes(lab.client_key.read_bytes())
    key.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-N", "correct horse", "-P", "", "-f", str(key)], check=True
    )
    lab.write_configs(
        [image], ssh_overrides={"identity_file": str(key), "passphrase_credential": "key-pass"}
    )
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "key-pass").write_text("correct horse\n")

    without = lab.run_imgsync("sync", "--json")
    assert without.returncode == 1
    assert "CREDENTIALS_DIRECTORY" in json.loads(without.stdout)["results"][0]["error"]

    env = {**__import__("os").environ, "CREDENTIALS_DIRECTORY": str(credentials)}
    done = lab.run_imgsync("sync", "--json", env=env)
    assert done.returncode == 0, done.stdout
    assert all(p.docker.image_id(image) == image_id for p in lab.peers)
