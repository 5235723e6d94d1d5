"""serve lets through exactly the apply requests a sync makes, and nothing else."""

from __future__ import annotations

import pytest

from imgsync.actions.serve import Refused, apply_args


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
    ],
)
def test_everything_else_is_refused(request_line: str | None) -> None:
    with pytest.raises(Refused, match="refused"):
        apply_args(request_line)
