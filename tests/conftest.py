"""Shared fixtures: ``lab`` -- a started imgsync test lab (real dockerd + sshd, as root)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the lab package lives at the repo root, next to imgsync/
    sys.path.insert(0, str(REPO))

from lab import Lab, unavailable_reason  # noqa: E402
from lab.chroot import docker26_unavailable  # noqa: E402


def require_lab() -> None:
    """Skip (or, with CI set, fail) when this machine cannot run the lab."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"lab prerequisites missing on CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker26() -> None:
    """Use in a test (or fixture) that starts a Docker 26 node: see :func:`require_docker26`."""
    require_docker26()


def require_docker26() -> None:
    """Skip (or, with CI set, fail) when the Docker 26 root (scripts/docker26-root) is not
    built: CI builds it, so there a missing one is a failure."""
    require_lab()
    reason = docker26_unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Docker 26 engine missing on CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A started Lab with 2 peers, shared by the whole session and always torn down."""
    require_lab()
    the_lab = Lab(tmp_path_factory.mktemp("lab"), peers=2)
    try:
        the_lab.start()
        yield the_lab
    finally:
        the_lab.stop()
