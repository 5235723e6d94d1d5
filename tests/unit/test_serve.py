"""serve lets through exactly the apply requests a sync makes, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imgsync.actions.serve import Refused, apply_args
from imgsync.errors import ExitCode, ImgsyncError, InvalidReference, ProtocolError


@pytest.mark.parametrize(
    "request_line",
    [
        "imgsync apply --inventory --clean-temp --json --image a:1",
        "/opt/imgsync/bin/imgsync --config /x.toml apply --json --image a:1 --image b:2",
        "imgsync --config=/x.toml -v apply --receive a-1.0123.tar --size 10 --offset 4",
        "imgsync apply --size=10 --receive=a.marker.json",
        "imgsync --config /etc/imgsync/imgsync.toml apply --session",
    ],
)
def test_the_requests_a_sync_makes_pass_with_their_apply_arguments(request_line: str) -> None:
    passed = apply_args(request_line)
    assert passed == request_line.split(" apply ", 1)[1].split()


@pytest.mark.parametrize(
    "request_line",
    [
        None,
        "",
        "   ",
        "\t\n",
        "sh",
        "bash -c 'imgsync apply'",
        "docker ps",
        "internal-sftp",
        "/usr/lib/openssh/sftp-server",
        "imgsync sync",
        "imgsync daemon",
        "imgsync apply --watch",
        "imgsync apply --session --watch",
        "imgsync apply --session=yes",
        "imgsync session",
        "imgsync apply --poll 1",
        "imgsync apply --json extra-word",
        "imgsync apply --image",
        "imgsync --config /x apply --json ; id",
        "imgsync --frob apply --json",
        "evil/imgsync-not apply",
        "imgsync apply 'unclosed",
        "imgsync apply --receive ../etc/passwd --size 1",
        "imgsync apply --receive=sub/dir.tar --size 1",
        "imgsync apply --receive .part-x.tar --size 1",
    ],
)
def test_everything_else_is_refused(request_line: str | None) -> None:
    with pytest.raises(Refused, match="refused"):
        apply_args(request_line)


def test_a_blank_request_is_refused_by_the_cli_with_exit_4_and_no_traceback() -> None:
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": "   "}
    argv = [sys.executable, "-m", "imgsync", "--config", "/nonexistent.toml", "serve"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (ExitCode.REFUSED, "")
    assert "refused" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("error", [Refused("x"), InvalidReference("x"), ProtocolError("x")])
def test_every_error_a_request_can_raise_is_in_the_tree(error: Exception) -> None:
    assert isinstance(error, ImgsyncError)  # main() prints it on one line, with its exit code
