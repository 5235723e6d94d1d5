"""The config file: one TOML schema for every role, validated before anything runs.

A source has ``[source]`` and ``[[peers]]``; a peer has ``[receiver]``; a relay has all
three. Unknown keys, wrong types and missing required keys are all reported at once, each
with its key path (``peers[1] (edge-2).port: …``); TOML syntax errors with their line.
The result is frozen: nothing changes a config after it is loaded.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from imgsync import reference
from imgsync.configpath import DEFAULT_PATH as DEFAULT_PATH  # re-exported
from imgsync.configpath import ENV_VAR as ENV_VAR
from imgsync.configpath import resolve_path as resolve_path
from imgsync.errors import ConfigError

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_PEER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:\[\]-]{0,252}")


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, got {value!r}")
    if "\x00" in value or "\n" in value:
        raise ValueError("must not contain NUL or newline characters")
    return posixpath.normpath(value)


def _image_ref(value: str) -> str:
    return reference.normalize(value)


_GLOB = re.compile(r"[a-z0-9._/:*?\[\]-]{1,255}")


def _image_selector(value: str) -> str:
    """An exact reference (normalized), or a glob over ``repo:tag`` names."""
    if not any(c in value for c in "*?["):
        return reference.normalize(value)
    if not _GLOB.fullmatch(value) or value.startswith("-"):
        raise ValueError(
            f"{value!r} is not a valid image reference or pattern "
            "(lowercase repo:tag with * ? [ ] wildcards)"
        )
    return value


def _label(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}(=[^\x00-\x1f]{0,256})?", value):
        raise ValueError(f"{value!r} is not a label selector (key or key=value)")
    return value


def _peer_name(value: str) -> str:
    if not _PEER_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid peer name (letters, digits, '.', '_', '-'; at most 63)"
        )
    return value


def _group_name(value: str) -> str:
    if not _PEER_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid group name (letters, digits, '.', '_', '-'; at most 63)"
        )
    return value


def _host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid host name or address")
    return value


def _command(value: str) -> str:
    if any(c in value for c in "\x00\n\r"):
        raise ValueError("must be one line without NUL characters")
    try:
        argv = shlex.split(value)
    except ValueError as err:
        raise ValueError(f"cannot be split into words: {err}") from None
    if not argv:
        raise ValueError("must not be empty")
    return value


def _cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"{value!r} is not a cron expression (5 fields: min hour day month dow)")
    from apscheduler.triggers.cron import CronTrigger  # only a config with a cron needs it

    try:
        CronTrigger.from_crontab(value)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a valid cron expression: {err}") from None
    return value


def _listen(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return value


def _credential(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", value):
        raise ValueError(f"{value!r} is not a systemd credential name")
    return value


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(k|M|G)?(B|bit)/s")
_RATE_UNITS = {None: 1, "k": 1e3, "M": 1e6, "G": 1e9}


def parse_rate(value: str) -> float:
    """``"20MB/s"``, ``"100Mbit/s"``, ``"500kB/s"`` → bytes per second."""
    match = _RATE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a rate (like '20MB/s' or '100Mbit/s')")
    number, prefix, unit = match.groups()
    rate = float(number) * _RATE_UNITS[prefix] / (8 if unit == "bit" else 1)
    if rate < 1000:
        raise ValueError(f"{value!r} is below 1 kB/s")
    return rate


def _rate(value: str) -> str:
    parse_rate(value)
    return value


def parse_duration(value: str) -> float:
    """``"90s"``, ``"5m"``, ``"1h30m"`` → seconds."""
    match = _DURATION.fullmatch(value.strip())
    if not value.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration (like '30s', '5m', '1h30m')")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError("must be longer than zero")
    return float(total)


def _duration(value: str) -> str:
    parse_duration(value)
    return value


AbsPath = Annotated[StrictStr, AfterValidator(_absolute)]
ImageRef = Annotated[StrictStr, AfterValidator(_image_ref)]
ImageSelector = Annotated[StrictStr, AfterValidator(_image_selector)]
Label = Annotated[StrictStr, AfterValidator(_label)]
Seconds = Annotated[StrictFloat, Field(gt=0, le=86400)]  # strict: ints pass, strings do not


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Section):
    docker_host: StrictStr | None = None
    images: list[ImageSelector] = []  # exact references or globs over repo:tag
    labels: list[Label] = []  # and every tagged image carrying all of these labels
    pull: StrictBool = False  # docker pull each exact reference before a cycle
    export_dir: AbsPath = "/var/lib/imgsync/export"
    max_parallel_peers: Annotated[StrictInt, Field(ge=1, le=256)] = 4
    keep: Annotated[StrictInt, Field(ge=1, le=100)] = 1

    @model_validator(mode="after")
    def _something_selected(self) -> SourceConfig:
        if not self.images and not self.labels:
            raise ValueError("name images (references or patterns) or labels to distribute")
        return self


class SshConfig(_Section):
    user: StrictStr = "imgsync"
    identity_file: AbsPath = "/etc/imgsync/id_ed25519"
    known_hosts: AbsPath = "/etc/imgsync/known_hosts"
    connect_timeout: Seconds = 10
    io_timeout: Seconds = 60
    apply_timeout: Seconds = 1800
    retries: Annotated[StrictInt, Field(ge=0, le=20)] = 2
    retry_wait: Seconds = 2
    passphrase_credential: Annotated[StrictStr, AfterValidator(_credential)] | None = None
    compression: Literal["none", "zstd"] = "none"
    compression_level: Annotated[StrictInt, Field(ge=1, le=19)] = 3
    max_rate: Annotated[StrictStr, AfterValidator(_rate)] | None = None


class PeerConfig(_Section):
    name: Annotated[StrictStr, AfterValidator(_peer_name)]
    host: Annotated[StrictStr, AfterValidator(_host)]
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 22
    inbox: AbsPath = "/var/lib/imgsync/inbox"
    apply_command: Annotated[StrictStr, AfterValidator(_command)] = "imgsync apply"
    user: StrictStr | None = None
    identity_file: AbsPath | None = None
    known_hosts: AbsPath | None = None
    connect_timeout: Seconds | None = None
    io_timeout: Seconds | None = None
    apply_timeout: Seconds | None = None
    retries: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    retry_wait: Seconds | None = None
    passphrase_credential: Annotated[StrictStr, AfterValidator(_credential)] | None = None
    compression: Literal["none", "zstd"] | None = None
    compression_level: Annotated[StrictInt, Field(ge=1, le=19)] | None = None
    max_rate: Annotated[StrictStr, AfterValidator(_rate)] | None = None
    trust_unknown_hosts: StrictBool = False
    mode: Literal["agent", "agentless"] = "agent"  # agentless: only sshd and docker there
    docker_command: Annotated[StrictStr, AfterValidator(_command)] = "docker"  # agentless
    images: list[ImageSelector] | None = None  # only these of the source's images
    groups: list[Annotated[StrictStr, AfterValidator(_group_name)]] = []


class GroupConfig(_Section):
    images: list[ImageSelector]


class MetricsConfig(_Section):
    listen: Annotated[StrictStr, AfterValidator(_listen)] | None = None  # "127.0.0.1:9477"
    textfile: AbsPath | None = None  # node-exporter textfile collector


class ReceiverConfig(_Section):
    inbox: AbsPath = "/var/lib/imgsync/inbox"
    docker_host: StrictStr | None = None
    keep: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    prune: StrictBool = False
    allow: list[ImageSelector] | None = None  # only these images are loaded (None: any)


class ScheduleConfig(_Section):
    interval: Annotated[StrictStr, AfterValidator(_duration)] | None = None
    cron: Annotated[StrictStr, AfterValidator(_cron)] | None = None
    jitter: Annotated[StrictStr, AfterValidator(_duration)] | None = None
    misfire_grace: Annotated[StrictStr, AfterValidator(_duration)] = "5m"
    events: StrictBool = True
    debounce: Annotated[StrictStr, AfterValidator(_duration)] = "2s"

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if self.interval is not None and self.cron is not None:
            raise ValueError("set either 'interval' or 'cron', not both")
        return self


class StateConfig(_Section):
    path: AbsPath = "/var/lib/imgsync/state.db"


class Config(_Section):
    source: SourceConfig | None = None
    ssh: SshConfig = SshConfig()
    peers: list[PeerConfig] = []
    receiver: ReceiverConfig | None = None
    schedule: ScheduleConfig = ScheduleConfig(interval="5m")
    state: StateConfig = StateConfig()
    groups: dict[Annotated[str, AfterValidator(_group_name)], GroupConfig] = {}
    metrics: MetricsConfig = MetricsConfig()

    @model_validator(mode="after")
    def _unique_peer_names(self) -> Config:
        seen: set[str] = set()
        for peer in self.peers:
            if peer.name in seen:
                raise ValueError(f"peer name {peer.name!r} is used twice")
            seen.add(peer.name)
            unknown = [g for g in peer.groups if g not in self.groups]
            if unknown:
                raise ValueError(f"peer {peer.name!r} names unknown groups {unknown}")
        return self


class PeerSettings(BaseModel):
    """One peer with the ``[ssh]`` defaults filled in: what the transport needs."""

    model_config = ConfigDict(frozen=True)

    name: str
    host: str
    port: int
    inbox: str
    apply_argv: tuple[str, ...]
    user: str
    identity_file: str
    known_hosts: str
    connect_timeout: float
    io_timeout: float
    apply_timeout: float
    retries: int
    retry_wait: float
    passphrase_credential: str | None
    compression: str
    compression_level: int
    max_rate: str | None
    trust_unknown_hosts: bool
    mode: str
    docker_argv: tuple[str, ...]
    images: tuple[str, ...] | None  # selectors: only these of the source's images

    @property
    def max_rate_bytes(self) -> float | None:
        return parse_rate(self.max_rate) if self.max_rate else None


def peer_settings(config: Config, peer: PeerConfig) -> PeerSettings:
    """The peer's own keys, each falling back to the same key in ``[ssh]``."""
    inherited = {
        name: getattr(peer, name) if getattr(peer, name) is not None else getattr(config.ssh, name)
        for name in SshConfig.model_fields
    }
    return PeerSettings(
        name=peer.name,
        host=peer.host,
        port=peer.port,
        inbox=peer.inbox,
        apply_argv=tuple(shlex.split(peer.apply_command)),
        trust_unknown_hosts=peer.trust_unknown_hosts,
        mode=peer.mode,
        docker_argv=tuple(shlex.split(peer.docker_command)),
        images=_peer_images(config, peer),
        **inherited,
    )


def _peer_images(config: Config, peer: PeerConfig) -> tuple[str, ...] | None:
    """The selectors a peer is limited to: its own ``images`` and its groups' (``None``:
    everything the source distributes)."""
    if peer.images is None and not peer.groups:
        return None
    selectors = list(peer.images or [])
    for group in peer.groups:
        selectors += config.groups[group].images
    return tuple(dict.fromkeys(selectors))


def load(path: Path) -> Config:
    """Read, parse and validate ``path``; raise :class:`ConfigError` listing every problem."""
    where = f"config {path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{where}: file not found (give --config PATH or set {ENV_VAR})"
        ) from None
    except OSError as err:
        raise ConfigError(f"{where}: cannot read: {err.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(where, [f"not UTF-8 text (byte {err.start})"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(where, [f"invalid TOML: {err}"]) from None
    except (ValueError, RecursionError) as err:  # numbers too long, nesting too deep
        raise ConfigError(where, [f"invalid TOML: {type(err).__name__}: {err}"[:300]]) from None
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(where, [_describe(e, data) for e in err.errors()]) from None


def _describe(error: Any, data: dict[str, Any]) -> str:
    path = ""
    node: Any = data
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            name = node.get("name") if isinstance(node, dict) else None
            if isinstance(name, str) and _PEER_NAME.fullmatch(name):  # never echo a bad one
                path += f" ({name})"
        else:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{path or '(top level)'}: {message}"


def require_source(config: Config, path: Path) -> SourceConfig:
    if config.source is None:
        raise ConfigError(f"config {path}", ["source: this command needs a [source] section"])
    if not config.peers:
        raise ConfigError(f"config {path}", ["peers: this command needs at least one [[peers]]"])
    return config.source


def require_receiver(config: Config, path: Path) -> ReceiverConfig:
    if config.receiver is None:
        raise ConfigError(f"config {path}", ["receiver: this command needs a [receiver] section"])
    return config.receiver
