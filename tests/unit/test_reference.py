"""Image references follow Docker's grammar; anything else never reaches a command."""

from __future__ import annotations

import pytest

from imgsync.reference import InvalidReference, familiar, file_stem, normalize


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("busybox", "busybox:latest"),
        ("acme/web:1.4", "acme/web:1.4"),
        ("registry.local:5000/team/app:v2_rc-1", "registry.local:5000/team/app:v2_rc-1"),
        ("localhost/app:1", "localhost/app:1"),
        ("a__b/c-d.e:T", "a__b/c-d.e:T"),
    ],
)
def test_valid_references_get_an_explicit_tag(given: str, normalized: str) -> None:
    assert normalize(given) == normalized


@pytest.mark.parametrize(
    "hostile",
    [
        "app:1;touch /tmp/x",
        "app:$(id)",
        "app`id`",
        "Acme/web:1",
        "-rf",
        "app:1 --help",
        "app:1\n",
        "app:" + "x" * 129,
        "app@sha256:" + "a" * 64,
        "",
        "app:ä",
    ],
)
def test_invalid_references_are_refused(hostile: str) -> None:
    with pytest.raises(InvalidReference):
        normalize(hostile)


def test_file_stems_are_safe_and_distinct() -> None:
    a, b = file_stem("acme/web:1"), file_stem("acme_web:1")
    assert a != b
    assert all(c.isalnum() or c in "._-" for c in a + b)


def test_familiar_names_match_docker_repo_tags() -> None:
    assert familiar("docker.io/library/busybox:1") == "busybox:1"
    assert familiar("docker.io/acme/web:1") == "acme/web:1"
    assert familiar("registry:5000/web:1") == "registry:5000/web:1"
