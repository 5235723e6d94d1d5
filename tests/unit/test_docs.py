"""The docs stay in step with the code.

- docs/config.md documents exactly the schema's keys (``imgsync.config.Config``, walked
  through its nested models), each in its section's table, with the schema's default and
  a type that matches (paths, durations, rates, lists, choices, ranges);
- every ```toml block in README.md and docs/*.md is a valid config (sections are optional,
  so a partial config is still one); a block marked ``<!-- fragment -->`` is skipped, one
  marked ``<!-- invalid -->`` must be refused with the errors the next block shows;
- the messages docs/troubleshooting.md quotes are still the ones imgsync prints.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from imgsync import config as cfg
from imgsync.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG_DOC = REPO / "docs" / "config.md"
TROUBLESHOOTING_DOC = REPO / "docs" / "troubleshooting.md"
TOML_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Sections whose unset keys take the same key of another section (cfg.peer_settings).
INHERITS = {"peers[]": "ssh"}
ROOT = "(top level)"  # keys directly in Config that are not sections: "## Top-level keys"


# --- the schema --------------------------------------------------------------------------


def nested_models(annotation: Any) -> list[tuple[type[BaseModel], str]]:
    """The models inside ``annotation`` (through Annotated, Optional/Union, list, dict),
    each with the path suffix that reaches it: ``""``, ``"[]"`` or ``".<name>"``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return nested_models(args[0])
    if origin in (typing.Union, types.UnionType):
        return [found for arg in args for found in nested_models(arg)]
    if origin in (list, tuple, set, frozenset):
        return [(m, "[]" + suffix) for arg in args for m, suffix in nested_models(arg)]
    if origin is dict:
        return [(m, ".<name>" + suffix) for m, suffix in nested_models(args[1])]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    return []


def schema_sections(
    model: type[BaseModel] = cfg.Config, path: str = ""
) -> dict[str, dict[str, FieldInfo]]:
    """Section path (``source``, ``peers[]``, ``groups.<name>``) → its keys. A field that
    holds a model is a section of its own, not a key."""
    sections: dict[str, dict[str, FieldInfo]] = {}
    keys: dict[str, FieldInfo] = {}
    for name, field in model.model_fields.items():
        inner = nested_models(field.annotation)
        if not inner:
            keys[name] = field
        for sub, suffix in inner:
            sections.update(
                schema_sections(sub, f"{path}.{name}{suffix}" if path else name + suffix)
            )
    if keys or path:
        sections[path or ROOT] = keys
    return sections


SCHEMA = schema_sections()
KEY_PATHS = sorted(
    f"{section}.{key}" if section != ROOT else key
    for section, keys in SCHEMA.items()
    for key in keys
)


def test_the_walk_finds_the_nested_models() -> None:
    """Guards the walk itself: Optional, list and dict annotations are all unwrapped."""
    assert {"source", "ssh", "peers[]", "receiver", "groups.<name>", "metrics"} <= set(SCHEMA)
    for path in ("source.images", "peers[].max_rate", "groups.<name>.images", "metrics.listen"):
        assert path in KEY_PATHS


# --- docs/config.md ----------------------------------------------------------------------

FENCE = re.compile(r"^\s*(```+|~~~+)")
HEADING = re.compile(r"^##\s+`(\[\[?)([A-Za-z0-9_.]+)(\]\]?)`")
ROW = re.compile(r"^\|\s*`([A-Za-z0-9_]+)`\s*\|")
CODE = re.compile(r"`([^`]+)`")


def prose_lines(text: str) -> list[tuple[int, str, bool]]:
    """(line number, line, inside a code fence) for every line."""
    result, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * 3
            result.append((number, line, True))
        elif fence is not None:
            result.append((number, line, True))
            if line.strip().startswith(fence):
                fence = None
        else:
            result.append((number, line, False))
    return result


def section_path(opening: str, dotted: str) -> str:
    """``[source]`` → ``source``, ``[[peers]]`` → ``peers[]``, ``[groups.NAME]`` →
    ``groups.<name>`` (an all-caps part stands for a name the user picks)."""
    parts = ["<name>" if part.isupper() else part for part in dotted.split(".")]
    return ".".join(parts) + ("[]" if opening == "[[" else "")


@dataclass
class DocSection:
    heading_line: int
    rows: dict[str, list[str]]  # key → its table cells: key, type, default, what it does
    text: str


def doc_sections(text: str) -> dict[str, DocSection]:
    sections: dict[str, DocSection] = {}
    current: DocSection | None = None
    for number, line, in_code in prose_lines(text):
        if not in_code and line.startswith("## "):
            current = None
            match = HEADING.match(line)
            if match:
                path = section_path(match.group(1), match.group(2))
            elif line.strip() == "## Top-level keys":
                path = ROOT
            else:
                continue
            assert path not in sections, f"docs/config.md:{number}: second heading for {path}"
            current = sections[path] = DocSection(number, {}, "")
            continue
        if current is None:
            continue
        current.text += line + "\n"
        row = None if in_code else ROW.match(line)
        if row:
            key = row.group(1)
            assert key not in current.rows, f"docs/config.md:{number}: {key} listed twice"
            current.rows[key] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return sections


DOC = doc_sections(CONFIG_DOC.read_text())


def heading(section: str) -> str:
    if section == ROOT:
        return "## Top-level keys"
    name = section.removesuffix("[]").replace("<name>", "NAME")
    return f"[[{name}]]" if section.endswith("[]") else f"[{name}]"


def test_every_schema_section_has_a_heading_and_no_heading_is_stale() -> None:
    missing = [heading(s) for s in SCHEMA if s not in DOC]
    stale = [heading(s) for s in DOC if s not in SCHEMA]
    assert not missing, f"docs/config.md has no '## `...`' heading for {missing}"
    assert not stale, f"docs/config.md documents sections the schema does not have: {stale}"


def split_path(path: str) -> tuple[str, str]:
    section, _, key = path.rpartition(".")
    return section or ROOT, key


@pytest.mark.parametrize("path", KEY_PATHS)
def test_every_key_is_documented_in_its_section(path: str) -> None:
    section, key = split_path(path)
    documented = DOC.get(section)
    assert documented is not None, f"docs/config.md has no section {heading(section)}"
    assert key in documented.rows, (
        f"{path} is not in the table under {heading(section)} in docs/config.md "
        f"(line {documented.heading_line}); add a row '| `{key}` | type | default | ... |'"
    )


@pytest.mark.parametrize("section", sorted(DOC))
def test_every_documented_key_exists_in_the_schema(section: str) -> None:
    unknown = sorted(set(DOC[section].rows) - set(SCHEMA.get(section, {})))
    assert not unknown, (
        f"docs/config.md lists {unknown} under {heading(section)}, which the schema does not "
        "have (renamed or removed?)"
    )


@pytest.mark.parametrize("section", sorted(DOC))
def test_every_section_shows_an_example(section: str) -> None:
    if section == ROOT:
        pytest.skip("top-level keys are shown in the other sections' examples")
    top = section.split(".")[0].removesuffix("[]")
    examples = [block for block in toml_blocks(DOC[section].text) if block.marker is None]
    assert any(top in tomllib.loads(block.body) for block in examples), (
        f"docs/config.md: {heading(section)} has no ```toml example using it"
    )


def toml_value(value: Any) -> str:
    """A default as it is written in TOML (and in the doc's default column)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise AssertionError(f"no TOML spelling for the default {value!r}")


def cells(path: str) -> tuple[str, str, str, FieldInfo]:
    section, key = split_path(path)
    row = DOC.get(section, DocSection(0, {}, "")).rows.get(key)
    if row is None:
        pytest.skip(f"{path} is not documented (reported by the test above)")
    assert len(row) == 4 and all(row), f"docs/config.md: the row of {path} needs 4 cells: {row}"
    return section, row[1], row[2], SCHEMA[section][key]


@pytest.mark.parametrize("path", KEY_PATHS)
def test_the_documented_default_is_the_schema_default(path: str) -> None:
    section, _type, default, field = cells(path)
    key = split_path(path)[1]
    parent = INHERITS.get(section)
    inherited = parent is not None and key in SCHEMA[parent]
    if field.is_required():
        assert "required" in default, f"{path} is required; the doc says {default!r}"
        return
    value = field.get_default(call_default_factory=True)
    if inherited:
        assert value is None, f"{path} overrides [{parent}] but has its own default {value!r}"
        assert default.startswith(f"from `[{parent}]`"), (
            f"{path} falls back to {parent}.{key}: its default should read 'from `[{parent}]`'"
        )
    elif value is None:
        assert default.strip("*").lower().startswith("unset"), (
            f"{path} has no default; the doc says {default!r} (write 'unset ...')"
        )
    else:
        spans = CODE.findall(default)
        assert spans and spans[0] == toml_value(value), (
            f"{path} defaults to {toml_value(value)}; docs/config.md says {default!r}"
        )


def constraints(annotation: Any, metadata: list[Any]) -> tuple[set[str], dict[str, Any]]:
    """Validator names, base types, list/choice markers and bounds in a field's type."""
    found: set[str] = set()
    bounds: dict[str, Any] = {}

    def visit_meta(items: typing.Iterable[Any]) -> None:
        for meta in items:
            if isinstance(meta, FieldInfo):
                visit_meta(meta.metadata)
            elif isinstance(meta, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le)):
                name = type(meta).__name__.lower()
                bounds[name] = getattr(meta, name)
            elif callable(getattr(meta, "func", None)):
                found.add(meta.func.__name__)

    def visit(tp: Any) -> None:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            visit(args[0])
            visit_meta(args[1:])
        elif origin in (typing.Union, types.UnionType):
            for arg in args:
                if arg is not type(None):
                    visit(arg)
        elif origin in (list, tuple):
            found.add("list")
            for arg in args:
                visit(arg)
        elif origin is typing.Literal:
            found.update(f"choice:{json.dumps(arg)}" for arg in args)
        elif isinstance(tp, type):
            found.add(tp.__name__)

    visit(annotation)
    visit_meta(metadata)
    return found, bounds


# What a type cell must say for each kind of value (validator or type name → words).
TYPE_WORDS = {
    "list": "list",
    "bool": "boolean",
    "_absolute": "absolute path",
    "_duration": "duration",
    "_rate": "rate",
    "_image_selector": "image reference",
    "_cron": "cron",
    "_listen": "host:port",
    "_credential": "credential",
    "_command": "command",
    "_peer_name": "name",
}


@pytest.mark.parametrize("path", KEY_PATHS)
def test_the_documented_type_matches_the_schema(path: str) -> None:
    _section, type_cell, _default, field = cells(path)
    kinds, bounds = constraints(field.annotation, field.metadata)
    for kind, words in TYPE_WORDS.items():
        if kind in kinds:
            assert words in type_cell, f"{path}: the type should say {words!r}: {type_cell!r}"
    for kind in sorted(k for k in kinds if k.startswith("choice:")):
        choice = kind.removeprefix("choice:")
        assert f"`{choice}`" in type_cell, f"{path}: the type should list `{choice}`"
    if "ge" in bounds and "le" in bounds:
        span = f"{bounds['ge']}\u2013{bounds['le']}"  # an en dash: "1\u2013256" reads 1-256
        assert span in type_cell, f"{path}: the type should give the range {span}: {type_cell!r}"
    if bounds.get("gt") == 0 and bounds.get("le") == 86400:
        assert "seconds" in type_cell, f"{path}: the type should say 'seconds': {type_cell!r}"


def test_keys_that_fall_back_to_another_section_do_so() -> None:
    """What INHERITS claims is what cfg.peer_settings does: an unset peer key takes [ssh]'s."""
    config = cfg.Config.model_validate(
        {
            "ssh": {"user": "u", "retries": 7, "max_rate": "1MB/s", "compression": "zstd"},
            "peers": [{"name": "p", "host": "h"}],
        }
    )
    settings = cfg.peer_settings(config, config.peers[0])
    assert (settings.user, settings.retries) == ("u", 7)
    assert (settings.max_rate, settings.compression) == ("1MB/s", "zstd")


# --- TOML blocks in the README and docs/ -------------------------------------------------

MARKER = re.compile(r"^<!--\s*(fragment|invalid)\s*-->$")


@dataclass
class Block:
    lang: str
    line: int
    body: str
    marker: str | None  # "fragment", "invalid" or None
    after: str  # the body of the next fenced block, whatever its language


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        match = FENCE.match(lines[number])
        if not match:
            number += 1
            continue
        fence = match.group(1)
        lang = lines[number].strip()[len(fence) :].strip().split(" ")[0]
        previous = next((ln.strip() for ln in reversed(lines[:number]) if ln.strip()), "")
        marker = MARKER.match(previous)
        end = number + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = "\n".join(lines[number + 1 : end]) + "\n"
        found.append(Block(lang, number + 1, body, marker.group(1) if marker else None, ""))
        number = end + 1
    for block, following in itertools.pairwise(found):
        block.after = following.body
    return found


def toml_blocks(text: str) -> list[Block]:
    return [block for block in blocks(text) if block.lang == "toml"]


ALL_TOML = [
    pytest.param(block, id=f"{doc.relative_to(REPO)}:{block.line}")
    for doc in TOML_DOCS
    for block in toml_blocks(doc.read_text())
]


def test_the_docs_have_toml_blocks_to_check() -> None:
    assert len(ALL_TOML) >= 10, "the block extraction found (almost) nothing"


@pytest.mark.parametrize("block", ALL_TOML)
def test_every_toml_block_is_a_valid_config(block: Block, tmp_path: Path) -> None:
    if block.marker == "fragment":
        pytest.skip("marked <!-- fragment -->")
    if block.marker == "invalid":
        path = tmp_path / "imgsync.toml"
        path.write_text(block.body)
        with pytest.raises(ConfigError) as refused:
            cfg.load(path)
        for problem in refused.value.problems:
            assert problem in block.after, (
                f"the output shown after this invalid example lacks: {problem}"
            )
        return
    cfg.Config.model_validate(tomllib.loads(block.body))


# --- docs/troubleshooting.md -------------------------------------------------------------

# Fixed parts of messages the troubleshooting page quotes. Each must still be in imgsync/
# (a reworded message fails here: update the page) and on the page.
QUOTED = [
    "not enough space in",
    "what was exported before stays",
    "replaced image kept: a container uses it or a tag points at it",
    "cannot reach Docker at",
    "has CHANGED: it offers",
    "nothing was sent (if the peer was reinstalled, verify the new key and replace the",
    "); verify it and",
    "add it (ssh-keyscan), or set trust_unknown_hosts = true for this peer",
    "was not accepted for user",
    "add its public key to the peer's authorized_keys",
    "is readable by group or others",
    "is encrypted; set",
    "refused: this key runs imgsync's sync only (no interactive login)",
    ": this key may only run imgsync apply",
    ": not allowed by serve",
    "the part received is kept to resume",
    "peer attempt failed; retrying",
    "resuming upload",
    "did not answer within",
    "made no progress within the timeout",
    "thin bundle refused; sending the full one",
    "the full bundle is needed",
    "another imgsync cycle is running on this host",
    "try again later or drop --no-wait to wait for it",
    "belongs to uid",
    "whom imgsync runs as; run: chown",
    "it offers none of the SSH algorithms imgsync accepts (docs/config.md)",
    "is not allowed by [receiver] allow on this peer",
    "whose marker name differs",
    "is a symbolic link: refused",
]


@functools.cache
def source_text() -> str:
    return "\n".join(p.read_text() for p in sorted((REPO / "imgsync").rglob("*.py")))


@pytest.mark.parametrize("fragment", QUOTED)
def test_quoted_messages_are_still_what_imgsync_says(fragment: str) -> None:
    assert fragment in source_text(), f"imgsync/ no longer says {fragment!r}: update the page"
    assert fragment in TROUBLESHOOTING_DOC.read_text(), (
        f"docs/troubleshooting.md lacks {fragment!r}"
    )


def test_docs_link_to_each_other() -> None:
    readme = (REPO / "README.md").read_text()
    for target in ("docs/config.md", "docs/troubleshooting.md", "docs/systemd.md"):
        assert f"]({target}" in readme, f"README.md does not link to {target}"


# -- the README's map of the tree ---------------------------------------------------------


def readme_map() -> dict[str, str]:
    """Each module the README's layout names (path → its one-line description)."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Layout\n", 1)[1].split("```\n", 2)[1]
    named: dict[str, str] = {}
    folders: list[str] = []
    for line in block.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name, _, description = line.strip().partition(" ")
        if name.endswith("/"):
            folders[depth:] = [name.rstrip("/")]
        elif name.endswith(".py"):
            path = "/".join([*folders[:depth], name])
            assert path not in named, f"{path} is named twice"
            named[path] = description.strip()
    return named


def test_the_readme_map_names_every_module_once_each_with_a_line() -> None:
    named = readme_map()
    modules = {
        str(path.relative_to(REPO))
        for path in (REPO / "imgsync").rglob("*.py")
        if path.name != "__init__.py" or path.parent.name == "imgsync"
    }
    assert set(named) == modules, {
        "missing from the map": sorted(modules - set(named)),
        "in the map, not in the tree": sorted(set(named) - modules),
    }
    assert all(named.values()), [path for path, line in named.items() if not line]
