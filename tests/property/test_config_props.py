"""The config loader: whatever the file holds, the answer is a Config whose values are all
safe to use, or a ConfigError that names the key — never another exception."""

from __future__ import annotations

import copy
import posixpath
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, event, example, given
from hypothesis import strategies as st

from imgsync import config as cfg
from imgsync.errors import ConfigError, ExitCode
from imgsync.reference import normalize

from .strategies import (
    cheap_hostile_text,
    hostile_toml_text,
    injected,
    nested,
    normalized_references,
    toml_dumps,
    toml_scalars,
    toml_text,
    toml_value,
    toml_values,
)

SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
SAFE_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:\[\]-]*")

BASE: dict[str, Any] = {
    "source": {"images": ["acme/web:1.4", "acme/worker"], "export_dir": "/var/lib/imgsync/export"},
    "ssh": {
        "user": "imgsync",
        "identity_file": "/etc/imgsync/id_ed25519",
        "known_hosts": "/etc/imgsync/known_hosts",
    },
    "peers": [
        {
            "name": "edge-1",
            "host": "192.0.2.10",
            "port": 22,
            "inbox": "/var/lib/imgsync/inbox",
            "apply_command": "imgsync --config /etc/imgsync/imgsync.toml apply",
        },
        {"name": "edge-2", "host": "edge-2.example", "user": "deploy", "connect_timeout": 3},
    ],
    "receiver": {"inbox": "/var/lib/imgsync/inbox", "docker_host": "unix:///var/run/docker.sock"},
    "schedule": {"interval": "5m"},
    "state": {"path": "/var/lib/imgsync/state.db"},
}

# The schema's own keys, so that generated documents often get past "unknown key".
SECTION_KEYS = {
    "source": ["docker_host", "images", "export_dir", "max_parallel_peers", "keep"],
    "ssh": ["user", "identity_file", "known_hosts", "connect_timeout", "io_timeout"],
    "receiver": ["inbox", "docker_host", "keep", "prune"],
    "schedule": ["interval", "cron", "jitter", "misfire_grace", "events", "debounce"],
    "state": ["path"],
}
PEER_KEYS = ["name", "host", "port", "inbox", "apply_command", "user", "identity_file"]
plausible = st.one_of(
    toml_scalars,
    toml_values,
    st.sampled_from(
        ["/var/lib/x", "edge-1", "192.0.2.1", "5m", "1h30m", "*/5 * * * *", "imgsync apply"]
    ),
    st.sampled_from([1, 22, 0, -1, 65536, 86401, 0.5, True]),
    st.lists(st.one_of(normalized_references, cheap_hostile_text), max_size=2),
)


def keyed(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.one_of(st.sampled_from(keys), toml_text), plausible, max_size=3)


schema_shaped = st.fixed_dictionaries(
    {},
    optional={
        **{section: keyed(keys) for section, keys in SECTION_KEYS.items()},
        "peers": st.lists(keyed(PEER_KEYS), max_size=2),
    },
)
documents = st.one_of(
    schema_shaped,
    st.dictionaries(toml_text, toml_values, max_size=6),
)

# Where a hostile value goes, and how the error must name it.
FIELDS: dict[tuple[str | int, ...], str] = {
    ("source", "images", 0): "source.images[0]",
    ("source", "export_dir"): "source.export_dir",
    ("source", "docker_host"): "source.docker_host",
    ("peers", 0, "name"): "peers[0]",
    ("peers", 0, "host"): "peers[0]",
    ("peers", 0, "inbox"): "peers[0]",
    ("peers", 0, "apply_command"): "peers[0]",
    ("peers", 0, "user"): "peers[0]",
    ("peers", 0, "identity_file"): "peers[0]",
    ("receiver", "inbox"): "receiver.inbox",
    ("ssh", "user"): "ssh.user",
    ("ssh", "known_hosts"): "ssh.known_hosts",
    ("state", "path"): "state.path",
    ("schedule", "interval"): "schedule.interval",
    ("schedule", "cron"): "schedule.cron",
}
near_valid: dict[str, st.SearchStrategy[str]] = {
    "images": injected(normalized_references),
    "name": injected(st.just("edge-1")),
    "host": injected(st.just("192.0.2.10")),
    "apply_command": injected(st.just("imgsync --config /etc/imgsync/imgsync.toml apply")),
    "cron": injected(st.just("*/5 * * * *")),
    "interval": injected(st.just("1h30m")),
}
path_like = st.one_of(
    injected(st.just("/var/lib/imgsync/inbox")),
    hostile_toml_text.map(lambda s: "/" + s),
)


HOSTILE_FOR = {
    field: st.one_of(hostile_toml_text, near_valid.get(str(field[-1]), path_like))
    for field in FIELDS
}
HOSTILE_FOR["source", "images", 0] = st.one_of(hostile_toml_text, near_valid["images"])
one_field_hostile = st.sampled_from(sorted(FIELDS, key=str)).flatmap(
    lambda field: st.tuples(st.just(field), HOSTILE_FOR[field])
)


def replaced(field: tuple[str | int, ...], value: str) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    node: Any = document
    for part in field[:-1]:
        node = node[part]
    node[field[-1]] = value
    if field == ("schedule", "cron"):
        del document["schedule"]["interval"]  # else a valid cron is refused for the pair
    return document


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the generated files (module-scoped: hypothesis reruns the test body)."""
    return tmp_path_factory.mktemp("config")


def load(path: Path) -> cfg.Config | ConfigError:
    """cfg.load, with ConfigError (the one allowed refusal) returned, not raised."""
    try:
        return cfg.load(path)
    except ConfigError as err:
        assert str(err) and "Traceback" not in str(err)
        assert err.exit_code == ExitCode.CONFIG
        return err


def assert_safe(config: cfg.Config) -> None:
    """Every value of a loaded config that reaches a path, a command or a peer is safe."""
    paths = [config.ssh.identity_file, config.ssh.known_hosts, config.state.path]
    if config.source is not None:
        paths.append(config.source.export_dir)
        for image in config.source.images:
            if any(c in image for c in "*?["):  # a glob selector: plain characters only
                assert re.fullmatch(r"[a-z0-9._/:*?\[\]-]{1,255}", image), image
                assert not image.startswith("-"), image
            else:
                assert normalize(image) == image
    if config.receiver is not None:
        paths.append(config.receiver.inbox)
    for peer in config.peers:
        assert SAFE_NAME.fullmatch(peer.name), peer.name
        assert SAFE_HOST.fullmatch(peer.host), peer.host
        paths.append(peer.inbox)
        settings = cfg.peer_settings(config, peer)
        argv = list(settings.apply_argv)
        assert argv == shlex.split(peer.apply_command)
        on_the_wire = shlex.split(shlex.join(argv))
        assert on_the_wire == argv
        for word in argv:
            if ";" in word or "$(" in word or "`" in word:
                assert word in on_the_wire  # one word, quoted: never a command separator
    for path in paths:
        assert path.startswith("/") and posixpath.normpath(path) == path, path
        assert "\x00" not in path and "\n" not in path


def test_the_toml_writer_writes_what_the_loader_reads() -> None:
    """The strategies' TOML writer is faithful (else the properties test nothing)."""
    text = toml_dumps(BASE)
    assert tomllib.loads(text) == BASE
    awkward = {"a b": [1, 1.5, "x\x7f\n", True]}
    assert tomllib.loads(f"v = {toml_value(awkward)}") == {"v": awkward}


@given(documents)
def test_any_toml_document_is_a_config_or_a_config_error(
    scratch: Path, document: dict[str, Any]
) -> None:
    """Any TOML document — schema-shaped or not — loads into a Config whose values are safe,
    or is refused with a non-empty ConfigError; never another exception."""
    text = toml_dumps(document)
    assert tomllib.loads(text) == document
    path = scratch / "doc.toml"
    path.write_text(text, encoding="utf-8")
    found = load(path)
    event(type(found).__name__)
    if isinstance(found, cfg.Config):
        assert_safe(found)


@given(st.binary(max_size=1024))
@example(b"\xff\xfe[source]")
@example(b'[source]\nimages = ["a:1"]\x00')
@example(b"\xef\xbb\xbf[state]\npath = '/x'\n")
def test_any_bytes_as_the_config_file_are_a_config_or_a_config_error(
    scratch: Path, raw: bytes
) -> None:
    """A config file of arbitrary bytes (not TOML, not UTF-8) is a ConfigError (or, rarely,
    a valid config), never a traceback."""
    path = scratch / "raw.toml"
    path.write_bytes(raw)
    found = load(path)
    if isinstance(found, cfg.Config):
        assert_safe(found)


@given(one_field_hostile)
@example((("source", "images", 0), "app:1;touch /tmp/x"))
@example((("source", "images", 0), "*"))  # a glob selector is valid, not a reference
@example((("peers", 0, "name"), "edge-1;reboot"))
@example((("peers", 0, "host"), "-oProxyCommand=touch /tmp/x"))
@example((("peers", 0, "inbox"), "/var/lib/imgsync/inbox$(touch /tmp/x)"))
@example((("peers", 0, "apply_command"), "imgsync apply; touch /tmp/x"))
@example((("peers", 0, "apply_command"), "imgsync apply '$(touch /tmp/x)'"))
@example((("state", "path"), "relative/state.db"))
def test_a_hostile_value_in_one_field_is_refused_by_key_or_stays_data(
    scratch: Path,
    case: tuple[tuple[str | int, ...], str],
) -> None:
    """A valid config with one field replaced by a hostile string is refused with an error
    that names that key, or accepted with every value safe: names and hosts plain, paths
    absolute and normalized, and apply_command split into words that are quoted one by
    one on the wire (a word holding ';' or '$(' stays one word)."""
    field, value = case
    if field == ("peers", 0, "name"):
        assume(value != "edge-2")  # a duplicate name is refused at the top level
    path = scratch / "hostile.toml"
    path.write_text(toml_dumps(replaced(field, value)), encoding="utf-8")
    found = load(path)
    event(f"{'.'.join(map(str, field))}: {type(found).__name__}")
    if isinstance(found, ConfigError):
        label, key = FIELDS[field], str(field[-1])
        assert found.problems, str(found)
        for problem in found.problems:
            assert problem.startswith(label), problem
            if label == "peers[0]":
                assert f".{key}:" in problem, problem
        return
    assert_safe(found)
    if field == ("peers", 0, "apply_command"):
        assert cfg.peer_settings(found, found.peers[0]).apply_argv == tuple(shlex.split(value))


@given(injected(st.just("edge-1")).filter(lambda s: bool(re.search(r"[\x00-\x1f\x7f]", s))))
@example("edge-1\n  - peers[1] (edge-2).host: fine\x1b[2J")
def test_an_error_about_a_hostile_peer_name_holds_no_control_characters(
    scratch: Path, name: str
) -> None:
    """Every problem line of a ConfigError is one line of printable text: a hostile value
    is quoted (repr), never written raw."""
    path = scratch / "name.toml"
    path.write_text(toml_dumps(replaced(("peers", 0, "name"), name)), encoding="utf-8")
    found = load(path)
    assert isinstance(found, ConfigError)
    for problem in found.problems:
        assert not re.search(r"[\x00-\x1f\x7f]", problem), problem


@given(st.integers(1, 20_000), st.sampled_from(["list", "dict"]))
@example(5000, "list")
def test_a_deeply_nested_value_is_a_config_error(scratch: Path, depth: int, kind: str) -> None:
    """However deep a TOML value nests, the file is a Config or a ConfigError."""
    doc = nested(depth, kind).decode().replace('{"a":', "{a = ").replace("1}", "1 }")
    path = scratch / "deep.toml"
    path.write_text(f"[receiver]\ninbox = {doc}\n", encoding="utf-8")
    assert isinstance(load(path), ConfigError)  # not TOML this deep, or not a path


@given(
    st.sampled_from(["port = ", "keep = ", "x = 0x", "x = 0o", "x = 0b"]), st.integers(4301, 20_000)
)
@example("port = ", 5000)
def test_an_integer_too_long_to_convert_is_a_config_error(
    scratch: Path, prefix: str, digits: int
) -> None:
    """A TOML integer of thousands of digits is a ConfigError."""
    path = scratch / "long.toml"
    path.write_text(f"[receiver]\n{prefix}{'1' * digits}\n", encoding="utf-8")
    assert isinstance(load(path), ConfigError)
