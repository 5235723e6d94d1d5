"""Hostile strings in config are rejected or treated as data: nothing is ever executed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import Lab

from .helpers import actions, build, sync_json

pytestmark = pytest.mark.lab


def test_an_image_reference_with_shell_syntax_is_rejected_before_anything_runs(
    lab: Lab, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    lab.write_configs([f"app:1;touch {canary}"])
    done = lab.run_imgsync("sync")
    assert done.returncode == 2
    assert "source.images[0]" in done.stderr and "not a valid image reference" in done.stderr
    assert not canary.exists()


def test_an_inbox_path_with_command_substitution_is_just_a_folder_name(
    lab: Lab, tmp_path: Path
) -> None:
    canary = tmp_path / "pwned"
    image = "hostile/web:1"
    image_id = build(lab, image, seed=50)
    inbox = str(lab.peer("p1").inbox.parent / f"inbox$(touch {canary})`touch {canary}`")
    lab.write_configs([image], peer_overrides={"p1": {"inbox": inbox}})
    code, report = sync_json(lab)
    assert code == 0, report
    assert actions(report)[("p1", image)] == "loaded"
    assert lab.peer("p1").docker.image_id(image) == image_id
    assert any(Path(inbox).glob("*.marker.json")), "the bundle landed in the literal folder"
    assert not canary.exists()
