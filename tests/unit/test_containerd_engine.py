"""The containerd adapter against a stand-in ``ctr`` (a script that answers with the
listings of test_ctrcatalog and logs how it was called): what it runs, how often it reads
the namespace, and how it names and pins what it loads. The lab proves it against real
containerd 1.6 and 1.7 (tests/e2e/test_kubernetes_peers.py)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from imgsync.engines.containerd import PIN, ContainerdEngine
from imgsync.errors import EngineError

from .test_ctrcatalog import CONFIG, CONTENT, IMAGES, L0, L1

CONFIG_JSON = {"architecture": "amd64", "os": "linux", "rootfs": {"diff_ids": [L0, L1]}}
SCRIPT = """
import json, sys
args = sys.argv[1:]
with open(LOG, "a") as log:
    log.write(json.dumps(args) + "\\n")
words = [a for a in args if not a.startswith("-")][2:]  # past --address X --namespace Y
if words[:2] == ["images", "ls"]:
    print(IMAGES)
elif words[:2] == ["content", "ls"]:
    print(CONTENT)
elif words[:2] == ["content", "get"]:
    print(json.dumps(CONFIG_JSON))
elif words[:2] == ["images", "import"]:
    if "--help" in args:
        print("--local  import content by using the local client")
    else:
        sys.stdin.buffer.read()
        print(IMPORTED)
elif words[:1] == ["version"]:
    print("Server:\\n  Version:  1.7.24~ds1")
elif words[:2] == ["plugins", "ls"]:
    print("io.containerd.grpc.v1   cri   linux/amd64   ok")
"""


TARGET = "sha256:" + "4c" * 32
DONE = f"unpacking docker.io/acme/web:1 ({TARGET})...done"


def fake_ctr(tmp_path: Path, imported: str = DONE) -> Path:
    script = tmp_path / "ctr.py"
    values = {"LOG": str(tmp_path / "calls.log"), "IMAGES": IMAGES, "CONTENT": CONTENT,
              "CONFIG_JSON": CONFIG_JSON, "IMPORTED": imported}  # fmt: skip
    script.write_text("".join(f"{k} = {v!r}\n" for k, v in values.items()) + SCRIPT)
    return script


def engine(tmp_path: Path, **kw: str) -> ContainerdEngine:
    return ContainerdEngine(
        "/run/ctd.sock", "k8s.io", [sys.executable, str(fake_ctr(tmp_path, **kw))]
    )


def calls(tmp_path: Path) -> list[list[str]]:
    lines = (tmp_path / "calls.log").read_text().splitlines()
    return [[a for a in json.loads(line) if not a.startswith("-")][2:] for line in lines]


def test_an_inventory_of_many_images_reads_the_namespace_once(tmp_path: Path) -> None:
    ctd = engine(tmp_path)
    found = [ctd.image_id(ref) for ref in ("acme/web:1", "acme/multi:1", "acme/none:1")]
    assert found == [CONFIG, CONFIG, None]
    ctd.layer_blobs()
    assert [c[:2] for c in calls(tmp_path)] == [["images", "ls"], ["content", "ls"]]


def test_a_change_makes_the_next_question_read_the_namespace_again(tmp_path: Path) -> None:
    ctd = engine(tmp_path)
    ctd.image_id("acme/web:1")
    ctd.tag(CONFIG, "acme/web:2")
    ctd.image_id("acme/web:2")
    listed = [c[:2] for c in calls(tmp_path) if c[1:2] == ["ls"]]
    assert len(listed) == 4  # before the tag, and after it


def test_an_id_is_the_config_digest_with_the_configs_layers(tmp_path: Path) -> None:
    info = engine(tmp_path).inspect("acme/web:1")
    assert (info.id, info.diff_ids) == (CONFIG, (L0, L1))


def test_a_load_imports_one_platform_locally_and_pins_the_qualified_name(tmp_path: Path) -> None:
    engine(tmp_path).load(io.BytesIO(b"tar"), "acme/web:1 (bundle)", "acme/web:1")
    raw = [json.loads(line) for line in (tmp_path / "calls.log").read_text().splitlines()]
    the_import = next(a for a in raw if "import" in a and "--help" not in a)
    assert "--local" in the_import and "--all-platforms" not in the_import
    assert the_import[-1] == "-"  # the verified file comes on stdin
    assert ["images", "label", "docker.io/acme/web:1", PIN] in calls(tmp_path)


def test_a_bundle_named_otherwise_is_tagged_under_the_qualified_name(tmp_path: Path) -> None:
    ctd = engine(tmp_path, imported=f"unpacking acme/web:1 ({TARGET})...done")
    ctd.load(io.BytesIO(b"tar"), "acme/web:1 (bundle)", "acme/web:1")
    made = calls(tmp_path)
    assert ["images", "tag", "acme/web:1", "docker.io/acme/web:1"] in made
    assert ["images", "rm", "acme/web:1"] in made  # the annotation's own spelling goes


def test_an_import_that_names_no_image_is_an_error_naming_the_bundle(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"acme/web:1 \(bundle\).*imported no image"):
        engine(tmp_path, imported="").load(io.BytesIO(b"tar"), "acme/web:1 (bundle)", "acme/web:1")


def test_an_image_another_name_points_at_is_kept(tmp_path: Path) -> None:
    assert engine(tmp_path).remove_image(CONFIG) is False
    assert not [c for c in calls(tmp_path) if c[:2] == ["images", "rm"]]


def test_a_missing_ctr_is_an_error_naming_the_engine_and_the_command(tmp_path: Path) -> None:
    ctd = ContainerdEngine("/run/ctd.sock", "k8s.io", [str(tmp_path / "no-ctr")])
    with pytest.raises(EngineError, match=r"containerd at /run/ctd.sock .*cannot run .*no-ctr"):
        ctd.image_id("acme/web:1")


def test_a_listing_too_long_to_read_is_an_error_not_a_shorter_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing cut short would hide images, which would then be sent every cycle."""
    monkeypatch.setattr("imgsync.engines.containerd.LISTING_MAX", 200)
    with pytest.raises(EngineError, match=r"ctr images ls on containerd at .*more than 200 bytes"):
        engine(tmp_path).image_id("acme/web:1")


def test_a_name_an_import_reports_that_looks_like_a_flag_is_never_passed_to_ctr(
    tmp_path: Path,
) -> None:
    hostile = engine(tmp_path, imported=f"unpacking --address=/evil.sock ({TARGET})...done")
    with pytest.raises(EngineError, match="imported no image"):
        hostile.load(io.BytesIO(b"tar"), "acme/web:1 (bundle)", "acme/web:1")
    assert not [c for c in calls(tmp_path) if c[:2] == ["images", "tag"]]
