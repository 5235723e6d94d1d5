"""Which engine events make the daemon start a cycle."""

from __future__ import annotations

import pytest

from imgsync.source.watcher import is_relevant


@pytest.mark.parametrize(
    ("action", "name", "selectors", "by_label", "relevant"),
    [
        ("tag", "acme/web:1", ("acme/web:1",), False, True),
        ("tag", "acme/web:2", ("acme/web:1",), False, False),
        ("tag", "acme/api:prod", ("acme/*:prod",), False, True),
        ("pull", "registry:5000/acme/api:prod", ("registry:5000/acme/*:prod",), False, True),
        ("tag", "other/x:1", ("acme/*:prod",), True, True),  # a label may select it
        ("load", "sha256:abc", (), False, True),
        ("import", "sha256:abc", (), False, True),
        ("save", "acme/web:1", ("acme/web:1",), False, False),  # our own export
        ("delete", "acme/web:1", ("acme/web:1",), False, False),
    ],
)
def test_events_that_can_change_a_selected_image_start_a_cycle(
    action: str, name: str, selectors: tuple[str, ...], by_label: bool, relevant: bool
) -> None:
    assert is_relevant(action, name, selectors, by_label) is relevant
