"""A peer key locked to `imgsync serve`: the sync works through it unchanged, and
nothing else does — no shell, no docker, no SFTP, no file outside the inbox."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsync.errors import ExitCode
from lab import Lab

from .helpers import actions, build, run, sync_json

pytestmark = pytest.mark.lab


@pytest.fixture
def serve_key(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    """A key that p1 accepts only as `imgsync --config <p1's config> serve`."""
    key = tmp_path / "serve_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    command = shlex.join([*lab.imgsync_cmd, "--config", str(lab.peer("p1").config_path), "serve"])
    line = f'command="{command}",restrict {key.with_suffix(".pub").read_text().strip()}\n'
    original = lab.authorized_keys.read_text()
    lab.authorized_keys.write_text(original + line)
    try:
        yield key
    finally:
        lab.authorized_keys.write_text(original)


def ssh_as(lab: Lab, key: Path, *command: str) -> subprocess.CompletedProcess[str]:
    argv = lab.ssh_argv(lab.peer("p1"), *command)
    argv[argv.index(str(lab.client_key))] = str(key)
    return run(argv, timeout=60)


def test_a_full_sync_works_through_the_forced_command(lab: Lab, serve_key: Path) -> None:
    image = "serve/web:1"
    image_id = build(lab, image, seed=8000)
    lab.write_configs([image], peer_overrides={"p1": {"identity_file": str(serve_key)}})
    code, report = sync_json(lab, "--peer", "p1")
    assert code == 0, report
    assert actions(report) == {("p1", image): "loaded"}
    assert lab.peer("p1").docker.image_id(image) == image_id
    code, report = sync_json(lab, "--peer", "p1")
    assert code == 0 and actions(report) == {("p1", image): "unchanged"}


@pytest.mark.parametrize(
    "command",
    [
        ["sh"],
        ["sh", "-c", "id"],
        ["docker", "ps"],
        ["imgsync", "apply", "--watch"],
        ["imgsync", "apply", "--session", "--watch"],
        ["imgsync", "apply", "--session", "--config", "/etc/passwd"],
        ["imgsync", "--config", "/etc/passwd", "apply", "--inventory", "--json", "&&", "id"],
        ["imgsync", "apply", "--receive", "../../etc/cron.d/x.tar", "--size", "1"],
    ],
)
def test_anything_else_is_refused(lab: Lab, serve_key: Path, command: list[str]) -> None:
    done = ssh_as(lab, serve_key, shlex.join(command))
    assert done.returncode != 0
    assert "refused" in done.stderr
    assert "uid=" not in done.stdout


def test_an_interactive_login_is_refused(lab: Lab, serve_key: Path) -> None:
    done = ssh_as(lab, serve_key)
    assert done.returncode != 0 and "refused" in done.stderr


def test_sftp_cannot_read_outside_the_inbox(lab: Lab, serve_key: Path, tmp_path: Path) -> None:
    target = tmp_path / "shadow"
    argv = lab.ssh_argv(lab.peer("p1"))
    options = argv[1 : argv.index(f"root@{lab.peer('p1').address}")]
    options = [str(serve_key) if o == str(lab.client_key) else o for o in options]
    options = [o.replace("-p", "-P") if o == "-p" else o for o in options]
    sftp = subprocess.run(
        ["sftp", *options, "-b", "-", f"root@{lab.peer('p1').address}"],
        input=f"get /etc/shadow {target}\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert sftp.returncode != 0
    assert not target.exists()
    # the SFTP subsystem request reached serve, which said no (its exit code: REFUSED)
    subsystem = lab.ssh_argv(lab.peer("p1"))
    subsystem[subsystem.index(str(lab.client_key))] = str(serve_key)
    done = run([*subsystem[:-1], "-s", subsystem[-1], "sftp"])
    assert done.returncode == ExitCode.REFUSED
