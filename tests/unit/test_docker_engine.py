"""The Docker adapter's own bookkeeping (its API calls are proven on real dockerds in the
lab)."""

from __future__ import annotations

from typing import Any

from imgsync.engines.docker import Engine


class CountingApi:
    def __init__(self, driver_status: list[list[str]]) -> None:
        self.driver_status, self.asked = driver_status, 0

    def info(self) -> dict[str, Any]:
        self.asked += 1
        return {"DriverStatus": self.driver_status}


def engine(api: CountingApi) -> Engine:
    made = Engine.__new__(Engine)
    made.name, made._store = "unix:///test.sock", None
    made._client = type("Client", (), {"api": api})()
    return made


def test_the_image_store_is_asked_of_the_engine_once_however_often_apply_needs_it() -> None:
    api = CountingApi([["driver-type", "io.containerd.snapshotter.v1"]])
    docker = engine(api)
    assert [docker.store(), docker.ids_are_versions(), docker.store()] == [
        "containerd", False, "containerd"
    ]  # fmt: skip
    assert api.asked == 1


def test_the_classic_store_has_versions_for_ids() -> None:
    assert engine(CountingApi([["Backing Filesystem", "extfs"]])).ids_are_versions()
