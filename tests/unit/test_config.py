"""The config file is validated whole before anything runs, and every error names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsync import config as cfg
from imgsync.errors import ConfigError, ExitCode

VALID = """
[source]
images = ["acme/web:1.4", "acme/worker"]
export_dir = "/var/lib/imgsync/export"

[ssh]
user = "imgsync"
identity_file = "/etc/imgsync/id_ed25519"
known_hosts = "/etc/imgsync/known_hosts"

[[peers]]
name = "edge-1"
host = "192.0.2.10"
port = 22
inbox = "/var/lib/imgsync/inbox"
apply_command = "imgsync --config /etc/imgsync/imgsync.toml apply"

[[peers]]
name = "edge-2"
host = "edge-2.example"
user = "deploy"
connect_timeout = 3

[receiver]
inbox = "/var/lib/imgsync/inbox"
docker_host = "unix:///var/run/docker.sock"

[schedule]
interval = "5m"

[state]
path = "/var/lib/imgsync/state.db"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imgsync.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        cfg.load(write(tmp_path, text))
    assert caught.value.exit_code == ExitCode.CONFIG
    return caught.value.problems


def test_the_documented_example_loads_and_fills_defaults(tmp_path: Path) -> None:
    config = cfg.load(write(tmp_path, VALID))
    assert config.source is not None
    assert config.source.images == ["acme/web:1.4", "acme/worker:latest"]
    second = cfg.peer_settings(config, config.peers[1])
    assert (second.user, second.port, second.connect_timeout) == ("deploy", 22, 3.0)
    assert second.identity_file == "/etc/imgsync/id_ed25519"
    first = cfg.peer_settings(config, config.peers[0])
    assert first.apply_argv == ("imgsync", "--config", "/etc/imgsync/imgsync.toml", "apply")


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "config" / "imgsync.example.toml"
    config = cfg.load(example)
    assert config.source is not None and config.peers and config.receiver is not None


def test_every_error_is_reported_at_once_with_its_key_path(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        colour = "blue"
        [source]
        images = ["app:1;touch /tmp/x"]
        export_dir = "relative/dir"
        [[peers]]
        name = "edge-1"
        host = "h"
        port = "22"
        [[peers]]
        host = "h2"
        [schedule]
        interval = "soon"
        """,
    )
    assert "colour: unknown key" in found
    assert any(p.startswith("source.images[0]: 'app:1;touch /tmp/x'") for p in found)
    assert any(p.startswith("source.export_dir: must be an absolute path") for p in found)
    assert any(p.startswith("peers[0] (edge-1).port:") for p in found)
    assert "peers[1].name: required key is missing" in found
    assert any(p.startswith("schedule.interval:") for p in found)
    assert len(found) == 6


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[source]\nimages = = ["a:1"]\n')
    with pytest.raises(ConfigError) as caught:
        cfg.load(path)
    message = str(caught.value)
    assert str(path) in message and "invalid TOML" in message and "line 2" in message


def test_a_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"file not found.*--config"):
        cfg.load(tmp_path / "nope.toml")


def test_peer_names_are_unique(tmp_path: Path) -> None:
    text = VALID.replace('name = "edge-2"', 'name = "edge-1"')
    assert any("used twice" in p for p in problems(tmp_path, text))


def test_interval_and_cron_are_exclusive(tmp_path: Path) -> None:
    text = VALID.replace('interval = "5m"', 'interval = "5m"\ncron = "*/5 * * * *"')
    assert any("either 'interval' or 'cron'" in p for p in problems(tmp_path, text))


@pytest.mark.parametrize(
    "command", ['""', '"imgsync \'unclosed"', '"imgsync apply\\nid"', '"imgsync\\u0000apply"']
)
def test_apply_command_must_be_one_line_of_words_without_nul(tmp_path: Path, command: str) -> None:
    text = VALID.replace(
        'apply_command = "imgsync --config /etc/imgsync/imgsync.toml apply"',
        f"apply_command = {command}",
    )
    assert any(p.startswith("peers[0] (edge-1).apply_command:") for p in problems(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1s500ms", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert cfg.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5mm", "ms", "0ms", "1.5s", "5 m", "500ms1s"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        cfg.parse_duration(text)


def test_config_path_falls_back_to_env_then_etc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cfg.ENV_VAR, raising=False)
    assert cfg.resolve_path(None) == Path("/etc/imgsync/imgsync.toml")
    monkeypatch.setenv(cfg.ENV_VAR, "/srv/x.toml")
    assert cfg.resolve_path(None) == Path("/srv/x.toml")
    assert cfg.resolve_path("/a.toml") == Path("/a.toml")


def test_sync_needs_a_source_and_peers(tmp_path: Path) -> None:
    path = write(tmp_path, '[receiver]\ninbox = "/srv/inbox"\n')
    config = cfg.load(path)
    with pytest.raises(ConfigError, match=r"source: this command needs a \[source\] section"):
        cfg.require_source(config, path)
