"""An image's runtime config compares equal across engines that show it differently, and
differs whenever a container started from it would."""

from __future__ import annotations

import pytest

from imgsync.model import Marker, runtime_config

V1, ID = "sha256:" + "1" * 64, "sha256:" + "e" * 64
CONFIG = {
    "Cmd": ["/app", "--serve"],
    "Env": ["PATH=/bin", "A=1"],
    "Labels": {"team": "web", "tier": "front"},
    "ExposedPorts": {"80/tcp": {}},
    "WorkingDir": "/srv",
}


def test_empty_values_count_as_absent() -> None:
    bare = runtime_config({"Cmd": ["/app"]}, "amd64", "linux")
    shown_empty = {
        "Cmd": ["/app"],
        "Entrypoint": None,
        "Env": [],
        "Labels": {},
        "User": "",
        "Volumes": None,
        "OnBuild": [],
    }
    assert runtime_config(shown_empty, "amd64", "linux") == bare


def test_no_config_at_all_still_names_the_platform() -> None:
    assert runtime_config(None, "arm64", "linux") == (
        ("architecture", '"arm64"'),
        ("os", '"linux"'),
    )
    assert runtime_config(None, None, None) == ()
    assert runtime_config({}, "", "") == ()


def test_the_order_of_keys_and_of_label_entries_does_not_matter() -> None:
    reordered = {key: CONFIG[key] for key in reversed(CONFIG)}
    reordered["Labels"] = {"tier": "front", "team": "web"}
    assert runtime_config(reordered, "amd64", "linux") == runtime_config(CONFIG, "amd64", "linux")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Cmd", ["/app"]),
        ("Cmd", ["--serve", "/app"]),  # the order of a list matters
        ("Env", ["PATH=/bin", "A=2"]),
        ("Labels", {"team": "web", "tier": "back"}),
        ("Labels", {"team": "web"}),
        ("WorkingDir", "/"),
        ("User", "nobody"),
        ("Entrypoint", ["/init"]),
        ("StopSignal", "SIGINT"),
    ],
)
def test_a_change_a_container_would_notice_gives_another_runtime_config(
    key: str, value: object
) -> None:
    changed = {**CONFIG, key: value}
    assert runtime_config(changed, "amd64", "linux") != runtime_config(CONFIG, "amd64", "linux")


def test_architecture_and_os_are_part_of_it() -> None:
    amd64 = runtime_config(CONFIG, "amd64", "linux")
    assert runtime_config(CONFIG, "arm64", "linux") != amd64
    assert runtime_config(CONFIG, "amd64", "windows") != amd64
    assert runtime_config(CONFIG, None, "linux") != amd64


def test_keys_outside_the_runtime_config_are_ignored() -> None:
    noisy = {**CONFIG, "Image": "sha256:" + "9" * 64, "Hostname": "builder", "ArgsEscaped": True}
    assert runtime_config(noisy, "amd64", "linux") == runtime_config(CONFIG, "amd64", "linux")


def marker(image_id: str | None) -> Marker:
    return Marker("acme/web:1", V1, (), "web.tar", 10, "0" * 64, "now", image_id=image_id)


def test_the_source_id_is_the_image_id_when_the_engine_has_its_own() -> None:
    assert marker(ID).source_id == ID
    assert marker(None).source_id == V1  # classic store: the ID is the version


def test_the_json_form_has_an_image_id_only_when_there_is_one() -> None:
    assert "image_id" not in marker(None).to_json_dict()
    assert marker(ID).to_json_dict()["image_id"] == ID
