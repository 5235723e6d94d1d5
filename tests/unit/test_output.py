"""``sync --json`` names every peer's engine and image store beside the result rows."""

from __future__ import annotations

import json

from imgsync.model import Action, Report, Result
from imgsync.render.results import sync_json, sync_lines

V1 = "sha256:" + "1" * 64


def test_each_peer_is_listed_once_with_its_engine_and_store() -> None:
    report = Report(
        [
            Result("p1", "acme/web:1", V1, Action.LOADED, engine="26.1.4", store="containerd"),
            Result("p1", "acme/db:1", V1, Action.UNCHANGED, engine="26.1.4", store="containerd"),
            Result("p2", "acme/web:1", V1, Action.UNCHANGED, engine="20.10.24", store="classic"),
        ]
    )
    document = json.loads(sync_json(report))
    assert document["ok"] is True
    assert document["peers"] == {
        "p1": {"engine": "26.1.4", "store": "containerd"},
        "p2": {"engine": "20.10.24", "store": "classic"},
    }
    assert [(r["peer"], r["image"], r["store"]) for r in document["results"]] == [
        ("p1", "acme/web:1", "containerd"),
        ("p1", "acme/db:1", "containerd"),
        ("p2", "acme/web:1", "classic"),
    ]


def test_a_peer_not_reached_has_a_null_engine_and_store() -> None:
    report = Report([Result("p3", "acme/web:1", None, Action.FAILED, error="unreachable")])
    document = json.loads(sync_json(report))
    assert document["ok"] is False
    assert document["peers"] == {"p3": {"engine": None, "store": None}}


def test_a_peer_is_known_by_any_row_that_says_what_it_runs() -> None:
    report = Report(
        [
            Result("p1", "acme/web:1", None, Action.FAILED, error="source: no such image"),
            Result("p1", "acme/db:1", V1, Action.LOADED, engine="27.0.3", store="classic"),
            Result("p1", "acme/api:1", None, Action.FAILED, error="source: no such image"),
        ]
    )
    assert json.loads(sync_json(report))["peers"] == {
        "p1": {"engine": "27.0.3", "store": "classic"}
    }


def test_no_results_no_peers() -> None:
    assert json.loads(sync_json(Report())) == {"ok": True, "peers": {}, "results": []}


def test_the_summary_line_names_restored_images_only_when_there_were_some() -> None:
    quiet = Report([Result("p1", "acme/web:1", V1, Action.LOADED)])
    assert sync_lines(quiet)[-1].startswith("ok: 1 loaded, 0 unchanged, 0 failed across 1 peer(s)")
    moved = Report([Result("p1", "acme/web:1", V1, Action.RESTORED)])
    assert sync_lines(moved)[-1].startswith("ok: 0 loaded, 1 restored, 0 unchanged, 0 failed")
