"""The rules of single config values — absolute paths, image references and selectors,
labels, peer and group names, hosts, commands, cron lines, listen addresses, credential
names, rates and durations — each an ``Annotated`` type that checks its value as the config
loads (:mod:`imgsync.config` builds the schema from them)."""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import Annotated

from pydantic import AfterValidator, Field, StrictFloat, StrictStr

from imgsync import reference

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?")
PEER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
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
    if not PEER_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid peer name (letters, digits, '.', '_', '-'; at most 63)"
        )
    return value


def _group_name(value: str) -> str:
    if not PEER_NAME.fullmatch(value):
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


def _namespace(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*", value) or len(value) > 76:
        raise ValueError(f"{value!r} is not a containerd namespace (like 'k8s.io')")
    return value


ENGINE_KEYS = {"docker": {"docker_host"}, "containerd": {"address", "namespace", "ctr", "pin"},
               "podman": {"address"}}  # fmt: skip


def engine_keys(engine: str, given: set[str]) -> None:
    """``[receiver]`` keys that belong to another engine than ``engine`` are an error."""
    others = set().union(*ENGINE_KEYS.values()) - ENGINE_KEYS[engine]
    wrong = sorted(given & others)
    if wrong:
        raise ValueError(f"{', '.join(wrong)} cannot be used with engine = {engine!r}")


PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")  # distribution's grammar
REPOSITORY_PATH = re.compile(rf"{PATH_COMPONENT.pattern}(?:/{PATH_COMPONENT.pattern})*")
_PUBLISH = re.compile(
    r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})(?P<prefix>/.+)?"
)


def _publish(value: str) -> str:
    """``host:port`` or ``host:port/prefix``: a registry on the peer's site to push to."""
    if "://" in value:
        raise ValueError(f"{value!r}: give the registry as host:port, without a scheme")
    match = _PUBLISH.fullmatch(value)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{value!r} is not a registry address: give host:port or host:port/prefix")
    prefix = (match["prefix"] or "").removeprefix("/")
    if prefix and not REPOSITORY_PATH.fullmatch(prefix):
        raise ValueError(
            f"{value!r}: the prefix {prefix!r} is not a repository path (lowercase components "
            "such as 'mirror' or 'site/images', no tag)"
        )
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
    """``"90s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` → seconds."""
    match = _DURATION.fullmatch(value.strip())
    if not value.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration (like '30s', '5m', '1h30m', '500ms')")
    hours, minutes, seconds, millis = (int(g or 0) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds + millis / 1000
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
Credential = Annotated[StrictStr, AfterValidator(_credential)]
Rate = Annotated[StrictStr, AfterValidator(_rate)]
PeerName = Annotated[StrictStr, AfterValidator(_peer_name)]
Host = Annotated[StrictStr, AfterValidator(_host)]
Command = Annotated[StrictStr, AfterValidator(_command)]
GroupName = Annotated[StrictStr, AfterValidator(_group_name)]
GroupKey = Annotated[str, AfterValidator(_group_name)]
Listen = Annotated[StrictStr, AfterValidator(_listen)]
Duration = Annotated[StrictStr, AfterValidator(_duration)]
Cron = Annotated[StrictStr, AfterValidator(_cron)]
Namespace = Annotated[StrictStr, AfterValidator(_namespace)]
Publish = Annotated[StrictStr, AfterValidator(_publish)]
