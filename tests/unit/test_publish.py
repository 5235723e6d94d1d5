"""``[receiver] publish``: the tag scheme, the decisions of a publish (push only what the
registry lacks, check the push, remember it, a registry that is down), the config key, and
what the apply outcome carries to the source — against a fake engine and a fake registry."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import cast

import pytest

from imgsync import protocol
from imgsync.engines.base import ReceivingEngine
from imgsync.errors import RegistryError
from imgsync.model import Action, ApplyOutcome
from imgsync.receiver import published
from imgsync.receiver.publish import Publisher, PublishError, target
from imgsync.render.results import apply_lines

from .test_config import problems

V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
SITE = "registry.site:5000"


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("acme/web:1", f"{SITE}/acme/web:1"),
        ("docker.io/acme/web:1", f"{SITE}/acme/web:1"),
        ("x:1", f"{SITE}/library/x:1"),
        ("docker.io/library/x:1", f"{SITE}/library/x:1"),
        ("ghcr.io/acme/x:2", f"{SITE}/ghcr.io/acme/x:2"),
    ],
)
def test_an_image_is_published_under_its_path_without_the_docker_hub(image: str, name: str) -> None:
    assert target(SITE, image) == name


def test_a_prefix_puts_every_name_under_it() -> None:
    assert target(f"{SITE}/mirror", "acme/web:1") == f"{SITE}/mirror/acme/web:1"
    assert target(f"{SITE}/mirror", "ghcr.io/a/x:1") == f"{SITE}/mirror/ghcr.io/a/x:1"


def test_a_registry_host_with_a_port_cannot_be_a_path_and_is_not_published() -> None:
    with pytest.raises(PublishError, match=r"registry.local:5000 cannot be a repository path"):
        target(SITE, "registry.local:5000/base/x:1")


class FakeEngine:
    """Runs one image per reference (by ID); records each push."""

    def __init__(self, running: dict[str, str]) -> None:
        self.running = running
        self.pushes: list[tuple[str, str]] = []

    def image_id(self, reference: str) -> str | None:
        return self.running.get(reference)

    def push(self, image_id: str, name: str) -> None:
        self.pushes.append((image_id, name))


class FakeRegistry:
    """Config digests by name; a push through the engine lands here (or lands ``wrong``)."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.held, self.asked = engine, dict[str, str](), list[str]()
        self.down = False
        self.wrong: str | None = None

    def lookup(self, name: str) -> set[str]:
        self.asked.append(name)
        if self.down:
            raise RegistryError(f"registry {SITE} cannot be reached: refused", True)
        for image_id, pushed in self.engine.pushes:
            self.held[pushed] = self.wrong or image_id
        return {self.held[name]} if name in self.held else set()


def publisher(tmp_path: Path, engine: FakeEngine, site: FakeRegistry) -> Publisher:
    return Publisher(cast(ReceivingEngine, engine), tmp_path, SITE, site.lookup)


def test_a_version_is_pushed_checked_and_recorded_then_never_pushed_again(tmp_path: Path) -> None:
    engine = FakeEngine({"acme/web:1": V1})
    site = FakeRegistry(engine)
    assert publisher(tmp_path, engine, site).publish("acme/web:1", V1) == (
        f"{SITE}/acme/web:1",
        None,
    )
    assert engine.pushes == [(V1, f"{SITE}/acme/web:1")]
    assert published.read(tmp_path) == {f"{SITE}/acme/web:1": V1}
    mode = stat.S_IMODE(os.stat(tmp_path / published.NAME).st_mode)
    assert mode == 0o600
    site.asked.clear()
    again = publisher(tmp_path, engine, site).publish("acme/web:1", V1)  # the next cycle
    assert again == (f"{SITE}/acme/web:1", None)
    assert len(engine.pushes) == 1 and site.asked == []  # nothing pushed, nothing asked


def test_a_new_version_under_the_same_name_is_pushed(tmp_path: Path) -> None:
    engine = FakeEngine({"acme/web:1": V1})
    site = FakeRegistry(engine)
    publisher(tmp_path, engine, site).publish("acme/web:1", V1)
    engine.running["acme/web:1"] = V2
    assert publisher(tmp_path, engine, site).publish("acme/web:1", V2)[1] is None
    assert engine.pushes[-1] == (V2, f"{SITE}/acme/web:1")


def test_what_the_registry_holds_already_is_recorded_without_a_push(tmp_path: Path) -> None:
    engine = FakeEngine({"acme/web:1": V1})
    site = FakeRegistry(engine)
    site.held[f"{SITE}/acme/web:1"] = V1  # another peer of the site pushed it
    assert publisher(tmp_path, engine, site).publish("acme/web:1", V1)[1] is None
    assert engine.pushes == []
    assert published.read(tmp_path) == {f"{SITE}/acme/web:1": V1}


def test_a_push_the_registry_does_not_show_as_the_version_fails_unrecorded(
    tmp_path: Path,
) -> None:
    engine = FakeEngine({"acme/web:1": V1})
    site = FakeRegistry(engine)
    site.wrong = V2
    name, error = publisher(tmp_path, engine, site).publish("acme/web:1", V1)
    assert name is None and error is not None
    assert f"names config {V2}, not {V1}" in error
    assert published.read(tmp_path) == {}


def test_a_registry_that_is_down_fails_each_image_once_asked_then_a_later_run_publishes(
    tmp_path: Path,
) -> None:
    engine = FakeEngine({"acme/web:1": V1, "acme/api:1": V2})
    site = FakeRegistry(engine)
    site.down = True
    run = publisher(tmp_path, engine, site)
    first, second = run.publish("acme/web:1", V1), run.publish("acme/api:1", V2)
    assert first[0] is None and first[1] is not None and SITE in first[1]
    assert second == first  # the same cause, without asking again
    assert site.asked == [f"{SITE}/acme/web:1"] and engine.pushes == []
    site.down = False
    later = publisher(tmp_path, engine, site)
    assert later.publish("acme/web:1", V1) == (f"{SITE}/acme/web:1", None)
    assert later.publish("acme/api:1", V2) == (f"{SITE}/acme/api:1", None)
    assert len(engine.pushes) == 2


def test_nothing_is_published_of_a_version_the_engine_does_not_run(tmp_path: Path) -> None:
    engine = FakeEngine({"acme/web:1": V2})
    site = FakeRegistry(engine)
    assert publisher(tmp_path, engine, site).publish("acme/web:1", V1) == (None, None)
    assert publisher(tmp_path, engine, site).publish("acme/gone:1", V1) == (None, None)
    assert engine.pushes == [] and site.asked == []


def test_an_unreadable_record_costs_a_registry_lookup_not_a_push(tmp_path: Path) -> None:
    engine = FakeEngine({"acme/web:1": V1})
    site = FakeRegistry(engine)
    publisher(tmp_path, engine, site).publish("acme/web:1", V1)
    (tmp_path / published.NAME).write_text(json.dumps({"format": 99}))
    assert publisher(tmp_path, engine, site).publish("acme/web:1", V1)[1] is None
    assert len(engine.pushes) == 1 and published.read(tmp_path) == {f"{SITE}/acme/web:1": V1}


def test_the_outcome_carries_the_publish_to_the_source_and_an_older_peer_says_none() -> None:
    outcome = ApplyOutcome("acme/web:1", V1, Action.LOADED, 1.0, publish_error="registry down")
    [back] = protocol.load_apply(protocol.dump_apply([outcome]).encode())
    assert back.action is Action.LOADED and back.publish_error == "registry down"
    older = {"format": 1, "results": [{"image": "acme/web:1", "version": V1, "action": "loaded"}]}
    [old] = protocol.load_apply(json.dumps(older).encode())
    assert old.published is None and old.publish_error is None
    assert apply_lines([outcome])[0].endswith("; publish failed: registry down")


@pytest.mark.parametrize(
    "value",
    ["registry.site", "registry.site:0", "http://r:5000", "r:5000/UP", "r:5000/a:1", "r:5000/"],
)
def test_a_publish_address_that_is_not_host_port_prefix_is_refused_by_name(
    tmp_path: Path, value: str
) -> None:
    found = problems(tmp_path, f'[receiver]\npublish = "{value}"\n')
    assert any("receiver.publish" in p for p in found), found


@pytest.mark.parametrize("engine", ["containerd", "podman"])
def test_publish_is_refused_for_engines_that_do_not_push(tmp_path: Path, engine: str) -> None:
    found = problems(tmp_path, f'[receiver]\nengine = "{engine}"\npublish = "r:5000"\n')
    assert any("publish" in p and f"not supported with engine = '{engine}'" in p for p in found)
