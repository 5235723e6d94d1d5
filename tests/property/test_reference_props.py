"""Image references: whatever text comes in, what comes out is a plain reference or an
``InvalidReference`` — never a shell word, an option, or a path outside its folder."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from imgsync.reference import InvalidReference, file_stem, normalize

from .strategies import SHELL_META, hostile_text, injected, normalized_references, valid_references

SAFE_REFERENCE = re.compile(r"[A-Za-z0-9._:/@\[\]-]+")
SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9._-]+")


@given(hostile_text)
@example("app:1;touch /tmp/x")
@example("app:1;id")
@example("app:$(id)")
@example("app:1|id")
@example("app&id")
@example("-rf")
@example("app:1\n")
@example("app\x00:1")
@example("localhost/app:1 --help")
def test_any_text_is_refused_or_becomes_a_plain_reference(text: str) -> None:
    """normalize() raises InvalidReference (a ValueError) or returns only reference
    characters — no shell metacharacter, no whitespace, no leading '-' — and is idempotent."""
    try:
        result = normalize(text)
    except InvalidReference as err:
        assert isinstance(err, ValueError) and str(err)
        return
    assert SAFE_REFERENCE.fullmatch(result), result
    assert not set(result) & set(SHELL_META.replace("[", "").replace("]", ""))
    assert not result.startswith("-")
    assert normalize(result) == result


@given(injected(normalized_references))
def test_a_valid_reference_with_an_injection_spliced_in_is_never_accepted_as_given(
    text: str,
) -> None:
    """A reference with shell syntax spliced into it is refused, or (when the splice happens
    to be reference characters) accepted as a plain reference: the shell syntax never
    survives."""
    try:
        result = normalize(text)
    except InvalidReference:
        return
    assert SAFE_REFERENCE.fullmatch(result)
    assert not result.startswith("-")


@given(valid_references)
def test_every_reference_of_the_grammar_is_accepted_and_keeps_its_name(
    parts: tuple[str, str, str | None],
) -> None:
    """A reference built from Docker's grammar (domain?/path:tag?) is accepted; the name is
    kept as written and the tag defaults to 'latest'."""
    text, name, tag = parts
    assert normalize(text) == f"{name}:{tag or 'latest'}"


@given(normalized_references)
def test_the_file_stem_of_a_reference_is_a_safe_file_name(ref: str) -> None:
    """file_stem() is a plain file name: reference-safe characters only, no '/', not '.'
    or '..', not hidden and not an option, at most 100 characters."""
    stem = file_stem(ref)
    assert SAFE_FILE_NAME.fullmatch(stem), stem
    assert "/" not in stem and stem not in (".", "..")
    assert not stem.startswith((".", "-"))
    assert len(stem) <= 100


@given(st.lists(normalized_references, min_size=2, max_size=4, unique=True))
@example(["acme/web:1", "acme_web:1", "acme-web:1", "acme.web:1"])
@example(["a/b:c", "a_b:c"])
@example(["x" * 90 + ":1", "x" * 90 + ":2"])
def test_distinct_references_have_distinct_file_stems(refs: list[str]) -> None:
    """Different references never share a file stem (so never a marker or a bundle)."""
    stems = [file_stem(ref) for ref in refs]
    assert len(set(stems)) == len(refs), dict(zip(refs, stems, strict=True))


@pytest.mark.parametrize("bad", ["app:1;id", "$(id)", "`id`", "-v", "app:1 x", "app\n:1"])
def test_a_hostile_reference_is_a_value_error(bad: str) -> None:
    """The known shapes of injection are all refused (the seeds the properties start from)."""
    with pytest.raises(ValueError):
        normalize(bad)


@given(st.text(alphabet=SHELL_META, min_size=1))
def test_shell_metacharacters_alone_are_never_a_reference(text: str) -> None:
    """Nothing but shell metacharacters is never an image reference."""
    with pytest.raises(InvalidReference):
        normalize(text)
