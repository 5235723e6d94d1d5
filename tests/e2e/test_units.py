"""The systemd units in systemd/: every one passes ``systemd-analyze verify``, and the
daemon's unit (and every service) carries the hardening docs/systemd.md describes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS_DIR = REPO / "systemd"
DOCS = REPO / "docs" / "systemd.md"
UNIT_SUFFIXES = (".service", ".timer", ".path", ".socket", ".target")
INSTALLED_BINARY = "/usr/local/bin/imgsync"
IMGSYNC = Path(sys.executable).with_name("imgsync")

# What the repository must ship, and nothing unverified beside it.
EXPECTED_UNITS = {
    "imgsync.service",  # source: the daemon
    "imgsync-sync.service",  # source: one cycle ...
    "imgsync-sync.timer",  # ... per timer tick (the alternative to the daemon)
    "imgsync-apply.service",  # peer: apply --watch
    "imgsync-apply-once.service",  # peer: one apply ...
    "imgsync-apply.path",  # ... per inbox change (the alternative to apply --watch)
}

# Every service runs unprivileged and under the same sandbox.
HARDENING = {
    "User": "imgsync",
    "Group": "imgsync",
    "SupplementaryGroups": "docker",
    "StateDirectory": "imgsync",
    "StateDirectoryMode": "0750",
    "ConfigurationDirectory": "imgsync",
    "UMask": "0027",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictRealtime": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
}

DAEMON = {
    "Type": "notify",
    "ExecStart": f"{INSTALLED_BINARY} --config /etc/imgsync/imgsync.toml daemon",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "Restart": "on-failure",
    "RestartSec": "10s",
    "WatchdogSec": "120",
    "TimeoutStopSec": "20",
}

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """Sections -> key -> every value assigned, in order (unit files repeat keys)."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a KEY=VALUE line: {raw!r}"
        assert current is not None, f"{path.name}: {key} outside of any section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


SNIPPETS = {"imgsync.sysusers.conf", "imgsync.tmpfiles.conf"}


def unit_files() -> list[Path]:
    return sorted(p for p in UNITS_DIR.iterdir() if p.is_file() and p.name not in SNIPPETS)


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= is missing"
    assert len(values) == 1, f"[{section}] {key}= is set {len(values)} times: {values}"
    return values[0]


@pytest.fixture(scope="module")
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        message = "systemd-analyze not found (Debian: apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def installed_units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of systemd/ with ExecStart's binary pointing at the real console script."""
    assert IMGSYNC.is_file() and os.access(IMGSYNC, os.X_OK), f"not installed: {IMGSYNC}"
    copy = tmp_path_factory.mktemp("units")
    for path in unit_files():
        (copy / path.name).write_text(path.read_text().replace(INSTALLED_BINARY, str(IMGSYNC)))
    return copy


# --- systemd-analyze verify ------------------------------------------------------------------


@pytest.mark.parametrize("name", [p.name for p in unit_files()])
def test_systemd_analyze_verify_accepts_the_unit(
    analyze: str, installed_units: Path, name: str
) -> None:
    unit = installed_units / name
    done = subprocess.run(
        # --recursive-errors=no: a problem in a host unit we merely order against
        # (docker.service, network-online.target) must not fail this test; our own units
        # are each verified here. --man=no: no man pages are referenced (and may be absent).
        [analyze, "verify", "--man=no", "--generators=no", "--recursive-errors=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=installed_units,
    )
    ours = sorted(p.name for p in unit_files())
    complaints = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if any(n in line for n in ours) or str(installed_units) in line
    ]
    assert done.returncode == 0, f"systemd-analyze verify {name}: exit {done.returncode}\n" + (
        done.stderr or done.stdout
    )
    assert not complaints, f"systemd-analyze verify {name}:\n" + "\n".join(complaints)


def test_verify_catches_a_broken_unit(analyze: str, installed_units: Path, tmp_path: Path) -> None:
    """The check above is not vacuous: an unknown key and a bad value are reported."""
    broken = tmp_path / "imgsync.service"
    text = (installed_units / "imgsync.service").read_text()
    broken.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=stricter\nBogus=1"))
    done = subprocess.run(
        [analyze, "verify", "--man=no", "--generators=no", "--recursive-errors=no", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    complaints = [line for line in done.stderr.splitlines() if "imgsync.service" in line]
    assert any("Bogus" in line for line in complaints), done.stderr
    assert any("stricter" in line for line in complaints), done.stderr


# --- coverage: every unit is shipped, verified, and points at units that exist ----------------


def test_every_file_in_systemd_is_a_unit_and_every_expected_unit_is_there() -> None:
    names = {p.name for p in unit_files()}
    strays = sorted(n for n in names if not n.endswith(UNIT_SUFFIXES))
    assert not strays, f"not unit files (and so never verified): {strays}"
    assert names == EXPECTED_UNITS, (
        f"missing: {sorted(EXPECTED_UNITS - names)}; unexpected: {sorted(names - EXPECTED_UNITS)}"
        " (update EXPECTED_UNITS and docs/systemd.md)"
    )


def test_timers_and_paths_start_a_unit_that_is_shipped() -> None:
    names = {p.name for p in unit_files()}
    for path in unit_files():
        kind = path.suffix[1:].capitalize()  # [Timer] / [Path]
        if kind not in ("Timer", "Path"):
            continue
        unit = parse_unit(path)
        target = unit[kind].get("Unit", [path.with_suffix(".service").name])[0]
        # systemd-analyze verify does not notice a Unit= that names nothing.
        assert target in names, f"{path.name} starts {target}, which is not in systemd/"


def test_every_service_runs_the_installed_binary_with_the_system_config() -> None:
    for path in unit_files():
        if path.suffix != ".service":
            continue
        exec_start = one(parse_unit(path), "Service", "ExecStart")
        assert exec_start.startswith(f"{INSTALLED_BINARY} --config /etc/imgsync/imgsync.toml "), (
            f"{path.name}: {exec_start}"
        )


def _triggered_by_timer_or_path() -> set[str]:
    triggered: set[str] = set()
    for path in unit_files():
        kind = path.suffix[1:].capitalize()
        if kind in ("Timer", "Path"):
            triggered.add(parse_unit(path)[kind].get("Unit", [path.stem + ".service"])[0])
    return triggered


def test_units_are_enabled_directly_or_started_by_a_timer_or_path() -> None:
    triggered = _triggered_by_timer_or_path()
    assert triggered == {"imgsync-sync.service", "imgsync-apply-once.service"}
    for path in unit_files():
        wanted_by = parse_unit(path).get("Install", {}).get("WantedBy")
        if path.name in triggered:
            # Enabling it too would run it at boot besides its timer/path: keep [Install] out.
            assert wanted_by is None, f"{path.name} is started by a timer/path only"
        else:
            assert wanted_by, f"{path.name} has no [Install] WantedBy="


# --- hardening ---------------------------------------------------------------------------------


def test_the_daemon_unit_has_its_contract_and_every_hardening_directive() -> None:
    unit = parse_unit(UNITS_DIR / "imgsync.service")
    expected = {**DAEMON, **HARDENING}
    actual = {key: one(unit, "Service", key) for key in expected}
    assert actual == expected
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


@pytest.mark.parametrize(
    "name", [p.name for p in unit_files() if p.suffix == ".service" and p.name != "imgsync.service"]
)
def test_the_other_services_have_the_same_hardening(name: str) -> None:
    unit = parse_unit(UNITS_DIR / name)
    actual = {key: one(unit, "Service", key) for key in HARDENING}
    assert actual == HARDENING


def test_the_peer_units_run_apply() -> None:
    watch = parse_unit(UNITS_DIR / "imgsync-apply.service")
    assert one(watch, "Service", "Type") == "simple"
    assert one(watch, "Service", "ExecStart").endswith(" apply --watch")
    once = parse_unit(UNITS_DIR / "imgsync-apply-once.service")
    assert one(once, "Service", "Type") == "oneshot"
    assert one(once, "Service", "ExecStart").endswith(" apply")
    path = parse_unit(UNITS_DIR / "imgsync-apply.path")
    assert one(path, "Path", "PathChanged") == "/var/lib/imgsync/inbox"
    assert one(path, "Path", "Unit") == "imgsync-apply-once.service"


def test_docs_explain_every_unit_and_hardening_directive() -> None:
    text = DOCS.read_text()
    missing = [f"{key}=" for key in HARDENING if f"{key}=" not in text]
    missing += [name for name in EXPECTED_UNITS if name not in text]
    assert not missing, f"docs/systemd.md does not mention: {missing}"


# --- sysusers.d and tmpfiles.d snippets ------------------------------------------------------


def test_the_sysusers_and_tmpfiles_snippets_create_the_user_and_its_folders(
    analyze: str, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    sysusers = subprocess.run(
        ["systemd-sysusers", f"--root={root}", str(UNITS_DIR / "imgsync.sysusers.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert sysusers.returncode == 0, sysusers.stderr
    passwd = (root / "etc/passwd").read_text()
    (entry,) = [line for line in passwd.splitlines() if line.startswith("imgsync:")]
    assert entry.endswith(":/var/lib/imgsync:/usr/sbin/nologin")
    docker = [g for g in (root / "etc/group").read_text().splitlines() if g.startswith("docker:")]
    assert docker and docker[0].endswith(":imgsync")

    tmpfiles = subprocess.run(
        [
            "systemd-tmpfiles",
            f"--root={root}",
            "--create",
            str(UNITS_DIR / "imgsync.tmpfiles.conf"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert tmpfiles.returncode == 0, tmpfiles.stderr
    uid = int(entry.split(":")[2])
    for folder in ("var/lib/imgsync", "var/lib/imgsync/export", "var/lib/imgsync/inbox"):
        info = (root / folder).stat()
        assert (info.st_uid, info.st_mode & 0o777) == (uid, 0o750), folder
