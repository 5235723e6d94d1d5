"""The config file: one TOML schema for every role, validated before anything runs.

A source has ``[source]`` and ``[[peers]]``; a peer has ``[receiver]``; a relay has all
three. Unknown keys, wrong types and missing required keys are all reported at once, each
with its key path (``peers[1] (edge-2).port: …``); TOML syntax errors with their line.
The result is frozen: nothing changes a config after it is loaded.
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from imgsync.configpath import DEFAULT_PATH as DEFAULT_PATH  # re-exported
from imgsync.configpath import ENV_VAR as ENV_VAR
from imgsync.configpath import resolve_path as resolve_path
from imgsync.configtypes import (
    PEER_NAME,
    AbsPath,
    Command,
    Credential,
    Cron,
    Duration,
    GroupKey,
    GroupName,
    Host,
    ImageSelector,
    Label,
    Listen,
    Namespace,
    PeerName,
    Publish,
    Rate,
    Seconds,
    engine_keys,
)
from imgsync.configtypes import parse_duration as parse_duration  # re-exported
from imgsync.configtypes import parse_rate as parse_rate
from imgsync.errors import ConfigError


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
    passphrase_credential: Credential | None = None
    compression: Literal["none", "zstd"] = "none"
    compression_level: Annotated[StrictInt, Field(ge=1, le=19)] = 3
    max_rate: Rate | None = None


class PeerConfig(_Section):
    name: PeerName
    host: Host
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 22
    inbox: AbsPath = "/var/lib/imgsync/inbox"
    apply_command: Command = "imgsync apply"
    user: StrictStr | None = None
    identity_file: AbsPath | None = None
    known_hosts: AbsPath | None = None
    connect_timeout: Seconds | None = None
    io_timeout: Seconds | None = None
    apply_timeout: Seconds | None = None
    retries: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    retry_wait: Seconds | None = None
    passphrase_credential: Credential | None = None
    compression: Literal["none", "zstd"] | None = None
    compression_level: Annotated[StrictInt, Field(ge=1, le=19)] | None = None
    max_rate: Rate | None = None
    trust_unknown_hosts: StrictBool = False
    mode: Literal["agent", "agentless"] = "agent"  # agentless: only sshd and docker there
    docker_command: Command = "docker"  # agentless
    images: list[ImageSelector] | None = None  # only these of the source's images
    groups: list[GroupName] = []


class GroupConfig(_Section):
    images: list[ImageSelector]


class MetricsConfig(_Section):
    listen: Listen | None = None  # "127.0.0.1:9477"
    textfile: AbsPath | None = None  # node-exporter textfile collector


class ReceiverConfig(_Section):
    inbox: AbsPath = "/var/lib/imgsync/inbox"
    engine: Literal["docker", "containerd", "podman"] = "docker"
    docker_host: StrictStr | None = None
    address: StrictStr | None = None  # containerd's socket; Podman's API (unix://…)
    namespace: Namespace = "k8s.io"  # containerd: where the CRI (kubelet) looks
    ctr: Command = "ctr"  # containerd: the ctr command (k3s: "k3s ctr")
    pin: StrictBool = True  # containerd: pin loaded images against kubelet's image GC
    keep: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    prune: StrictBool = False
    allow: list[ImageSelector] | None = None  # only these images are loaded (None: any)
    publish: Publish | None = None  # push each verified version to this site registry

    @model_validator(mode="after")
    def _keys_of_its_engine(self) -> ReceiverConfig:
        engine_keys(self.engine, self.model_fields_set)
        if self.publish is not None and self.engine != "docker":
            raise ValueError(
                f"publish: not supported with engine = {self.engine!r}; only a Docker peer "
                "publishes to a site registry (see docs/engines.md)"
            )
        return self


class ScheduleConfig(_Section):
    interval: Duration | None = None
    cron: Cron | None = None
    jitter: Duration | None = None
    misfire_grace: Duration = "5m"
    events: StrictBool = True
    debounce: Duration = "2s"
    keep_sessions: StrictBool = True  # the daemon keeps each agent peer's session open

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
    groups: dict[GroupKey, GroupConfig] = {}
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
            if isinstance(name, str) and PEER_NAME.fullmatch(name):  # never echo a bad one
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
