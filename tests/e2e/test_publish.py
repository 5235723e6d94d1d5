"""``[receiver] publish`` against Debian's docker-registry on loopback: each peer pushes what
it loaded to the site registry, the registry's own manifest names the source's version as
its config, a second sync pushes nothing (counted in the registry's log), and a registry
that is down leaves the image loaded, says so, and gets it at a later cycle."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from lab import Lab
from lab.registry import free_port, registry_on

from .helpers import build, failures, receiver_configs, run, sync_json

pytestmark = pytest.mark.lab

ACCEPT = (
    "application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.oci.image.manifest.v1+json"
)


def manifest_puts(log: Path) -> int:
    """Manifest uploads the registry logged (each push of an image ends with one)."""
    lines = log.read_text(errors="replace").splitlines()
    return sum("PUT /v2/" in line and "/manifests/" in line for line in lines)


def config_digest(address: str, name: str, tag: str) -> str:
    request = urllib.request.Request(
        f"http://{address}/v2/{name}/manifests/{tag}", headers={"Accept": ACCEPT}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 (http:// only)
        manifest = json.loads(answer.read(1 << 22))
    return str(manifest["config"]["digest"])


def test_a_loaded_version_is_published_and_a_second_sync_pushes_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    image = "pub-e2e/app:1"
    version = build(lab, image, seed=15300)
    port = free_port()
    with registry_on(tmp_path / "registry", port) as log:
        address = f"127.0.0.1:{port}"
        lab.write_configs([image])
        receiver_configs(lab, publish=address)
        code, report = sync_json(lab)
        assert code == 0, failures(report)
        assert {r["published"] for r in report["results"]} == {f"{address}/pub-e2e/app:1"}
        assert config_digest(address, "pub-e2e/app", "1") == version
        assert manifest_puts(log) >= 1
        pushed = manifest_puts(log)
        code, report = sync_json(lab)
        assert code == 0, failures(report)
        assert manifest_puts(log) == pushed  # nothing new: nothing pushed
        for peer in lab.peers:  # the push's extra name is not left behind
            assert peer.docker.image_id(f"{address}/pub-e2e/app:1") is None
            assert peer.docker.image_id(image) == version


def test_a_registry_that_is_down_leaves_the_load_the_sync_says_so_and_a_later_cycle_publishes(
    lab: Lab, tmp_path: Path
) -> None:
    image = "pub-e2e/down:1"
    version = build(lab, image, seed=15310)
    port = free_port()  # nothing listens there yet
    address = f"127.0.0.1:{port}"
    lab.write_configs([image])
    receiver_configs(lab, publish=address)
    code, report = sync_json(lab)
    assert code == 0, failures(report)  # the load stands
    for result in report["results"]:  # and the source's report says why it is not published
        assert address in result["publish_error"] and result["published"] is None, result
    assert all(p.docker.image_id(image) == version for p in lab.peers)
    peer = lab.peers[0]
    done = run(lab.imgsync_argv("apply", "--json", "--image", image, config=peer.config_path))
    [outcome] = json.loads(done.stdout)["results"]
    assert outcome["action"] == "unchanged" and outcome["published"] is None, outcome
    assert address in outcome["publish_error"] and "cannot be reached" in outcome["publish_error"]
    with registry_on(tmp_path / "registry", port) as log:
        code, report = sync_json(lab)  # nothing to send: the session publishes
        assert code == 0, failures(report)
        assert {r["action"] for r in report["results"]} == {"unchanged"}
        assert config_digest(address, "pub-e2e/down", "1") == version
        assert manifest_puts(log) >= 1
