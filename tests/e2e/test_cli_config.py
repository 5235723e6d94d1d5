"""Config mistakes stop the installed CLI with exit 2 and a message that points at them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from .helpers import run

IMGSYNC = str(Path(sys.executable).with_name("imgsync"))


@pytest.fixture(autouse=True)
def _installed() -> None:
    assert shutil.which(IMGSYNC), f"the imgsync console script is not installed at {IMGSYNC}"


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    done = run([IMGSYNC, "--config", str(tmp_path / "absent.toml"), "sync"])
    assert done.returncode == 2
    assert str(tmp_path / "absent.toml") in done.stderr and "not found" in done.stderr


def test_invalid_toml_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[source]\nimages = ["a:1"]\nexport_dir = \n')
    done = run([IMGSYNC, "--config", str(path), "sync"])
    assert done.returncode == 2
    assert str(path) in done.stderr and "line 3" in done.stderr


def test_an_unknown_key_is_reported_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[source]\nimages = ["a:1"]\nexprot_dir = "/x"\n[[peers]]\nname="e"\nhost="h"\n'
    )
    done = run([IMGSYNC, "--config", str(path), "sync"])
    assert done.returncode == 2
    assert "source.exprot_dir: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_config_falls_back_to_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.toml"
    path.write_text("[receiver]\nbogus = 1\n")
    done = run(["env", f"IMGSYNC_CONFIG={path}", IMGSYNC, "apply"])
    assert done.returncode == 2 and "receiver.bogus: unknown key" in done.stderr


def test_an_unknown_command_line_option_is_a_usage_error(tmp_path: Path) -> None:
    done = run([IMGSYNC, "sync", "--frobnicate"])
    assert done.returncode == 2 and "--frobnicate" in done.stderr
