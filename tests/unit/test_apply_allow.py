"""A peer loads only what it allows (``[receiver] allow``), and only a marker under its own
name: anything else is refused, reported, and removed with its bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgsync.bundle import marker
from imgsync.bundle.bundledir import BundleDir, marker_name
from imgsync.config import ReceiverConfig
from imgsync.errors import EngineError
from imgsync.model import Action, Marker
from imgsync.receiver.apply import _apply_one


class Reached:
    """An engine that says it was reached: the marker got past the checks."""

    def __getattr__(self, name: str) -> Any:
        def reached(*args: Any) -> Any:
            raise EngineError("engine reached")

        return reached


def planted(inbox: Path, reference: str, file_name: str) -> Path:
    current = Marker(reference, "sha256:" + "1" * 64, (), "x_1.0123456789ab.tar", 1, "0" * 64, "t")
    (inbox / current.bundle).write_bytes(b"x")
    path = inbox / file_name
    path.write_bytes(marker.dumps(current))
    return path


def apply_one(inbox: Path, path: Path, allow: list[str] | None) -> Any:
    receiver = ReceiverConfig(inbox=str(inbox), allow=allow)
    engine: Any = Reached()
    return _apply_one(engine, BundleDir(inbox), path, [], receiver, {})


def test_an_image_outside_the_allow_list_is_refused_reported_and_removed(tmp_path: Path) -> None:
    path = planted(tmp_path, "docker.io/evil/miner:1", marker_name("docker.io/evil/miner:1"))
    outcome = apply_one(tmp_path, path, ["acme/*"])
    assert outcome.action is Action.FAILED
    assert "not allowed by [receiver] allow" in str(outcome.error)
    assert list(tmp_path.iterdir()) == []


def test_an_image_the_allow_list_names_gets_to_the_engine(tmp_path: Path) -> None:
    path = planted(tmp_path, "docker.io/acme/web:1", marker_name("docker.io/acme/web:1"))
    assert apply_one(tmp_path, path, ["acme/*"]).error == "engine reached"


def test_a_marker_under_another_images_name_is_refused_and_removed(tmp_path: Path) -> None:
    path = planted(tmp_path, "docker.io/acme/web:1", marker_name("docker.io/acme/db:1"))
    outcome = apply_one(tmp_path, path, None)
    assert "whose marker name differs" in str(outcome.error)
    assert list(tmp_path.iterdir()) == []
