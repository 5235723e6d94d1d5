"""Self-tests of the lab's own parts (nodes, relays, the cluster)."""

from __future__ import annotations

import os

import pytest


def needs(reason: str | None) -> None:
    """Go on when ``reason`` is None; else skip, or with CI set fail: CI builds every part,
    so there a missing one is a failure, never a silent skip."""
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
