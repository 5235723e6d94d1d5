"""``imgsync check``: for every peer, in parallel, the checklist a sync depends on — each
item ``ok`` or ``FAIL`` with a one-line detail, and for a failure the line that fixes it
(the words are in :mod:`imgsync.render.checklist`).

A peer with the agent: ``sshd`` (TCP and an SSH banner), ``host key`` (known, unchanged),
``key auth``, ``imgsync`` (a bare ``apply --inventory`` answers: its version), ``docker``
(reachable by imgsync there: version, image store), ``inbox`` (writable, free space). An
agentless peer: the first three, then ``docker`` (its ``docker_command`` over SSH). The
items after a failure are ``skipped``: they cannot be told.

``check`` changes nothing: a ``trust_unknown_hosts`` peer is checked against a scratch copy
of its known_hosts, and the peer only runs an inventory.
:func:`imgsync.receiver.peerfacts.peer_facts` is the peer's half: what a bare inventory adds
about the peer itself.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from imgsync import config as cfg
from imgsync import protocol
from imgsync.adapters import credentials
from imgsync.adapters.transport import SshSession, ssh_banner
from imgsync.errors import AuthError, ConnectError, HostKeyError, TransportError
from imgsync.render.checklist import (
    AGENTLESS_ITEMS,
    FAIL,
    IMGSYNC_FIX,
    ITEMS,
    OK,
    SKIPPED,
    Item,
    PeerCheck,
    auth_item,
    clean,
    docker_fix,
    failed_inventory,
    host_key_item,
    identity_item,
    inbox_fix,
    sshd_fix,
)
from imgsync.render.results import human_bytes
from imgsync.source import agentless


def run(config: cfg.Config, config_path: Path) -> list[PeerCheck]:
    cfg.require_source(config, config_path)
    peers = [cfg.peer_settings(config, p) for p in config.peers]
    with ThreadPoolExecutor(max_workers=min(32, len(peers))) as pool:
        return list(pool.map(check_peer, peers))


def check_peer(peer: cfg.PeerSettings) -> PeerCheck:
    names = AGENTLESS_ITEMS if peer.mode == "agentless" else ITEMS
    items = list(_items(peer))
    items += [Item(name, SKIPPED) for name in names[len(items) :]]
    return PeerCheck(peer.name, f"{peer.user}@{peer.host}:{peer.port}", tuple(items))


def _items(peer: cfg.PeerSettings) -> Iterator[Item]:
    """The items in order, up to the first failure that leaves the rest untellable."""
    reached = _reach(peer)
    yield reached
    if reached.status != OK:
        return
    try:
        key = credentials.load_identity(peer)
    except AuthError as err:
        yield Item("host key", SKIPPED, "not checked: connecting needs a usable identity file")
        yield identity_item(peer, _plain(peer, err))
        return
    with _scratch_trust(peer) as probing:
        before = _read(probing.known_hosts)
        ssh = SshSession(probing)
        try:
            ssh.connect()
        except HostKeyError as err:
            yield host_key_item(peer, _plain(peer, err))
            return
        except AuthError as err:
            yield Item("host key", OK, f"{peer.host}:{peer.port} matches {peer.known_hosts}")
            yield auth_item(peer, _plain(peer, err), f"{key.get_name()} {key.get_base64()}")
            return
        except TransportError as err:
            failed = f"the SSH handshake failed: {_plain(peer, err)}"
            yield Item("host key", FAIL, failed, fix=sshd_fix(peer))
            return
        try:
            if _read(probing.known_hosts) != before:
                trust = "not recorded yet: the first sync trusts it (trust_unknown_hosts = true)"
            else:
                trust = f"{peer.host}:{peer.port} matches {peer.known_hosts}"
            yield Item("host key", OK, trust)
            yield Item("key auth", OK, f"{peer.identity_file} accepted for user {peer.user}")
            if peer.mode == "agentless":
                yield _docker_cli_item(peer, ssh)
            else:
                yield from _agent_items(peer, ssh)
        finally:
            ssh.close()


def _reach(peer: cfg.PeerSettings) -> Item:
    """TCP to host:port, and an SSH banner back."""
    where = f"{peer.host}:{peer.port}"
    try:
        banner = ssh_banner(peer.host, peer.port, peer.connect_timeout)
    except ConnectError as err:
        detail = str(err)
    else:
        if banner.startswith(b"SSH-"):
            return Item("sshd", OK, f"{where} answers: {clean(banner.splitlines()[0])}")
        said = "closed the connection" if not banner else "answered"
        detail = f"{where} {said} without an SSH banner"
    return Item("sshd", FAIL, detail, fix=sshd_fix(peer))


def _agent_items(peer: cfg.PeerSettings, ssh: SshSession) -> Iterator[Item]:
    """imgsync, its Docker and its inbox, from one bare inventory."""
    argv = [*peer.apply_argv, "--inventory", "--json"]
    try:
        answer = ssh.run(argv, timeout=peer.io_timeout)
    except TransportError as err:
        yield Item("imgsync", FAIL, _plain(peer, err), fix=IMGSYNC_FIX)
        return
    try:
        protocol.load_inventory(answer.stdout)
        facts = protocol.load_facts(answer.stdout)
    except protocol.ProtocolError as err:
        why = clean(answer.last_error_line().encode())
        yield from failed_inventory(peer, argv, answer.exit_status, why, str(err))
        return
    version = facts.imgsync_version or "unknown (an older imgsync)"
    yield Item("imgsync", OK, f"imgsync {version} answers ({shlex.join(peer.apply_argv)})")
    yield from _engine_items(facts)
    free = "free space unknown"
    if facts.inbox_free is not None:
        free = f"{human_bytes(facts.inbox_free)} free"
    if facts.inbox_writable is False:
        detail = f"{peer.inbox} is not writable by {peer.user} ({free})"
        yield Item("inbox", FAIL, detail, fix=inbox_fix(peer))
        return
    writable = "writable" if facts.inbox_writable else "(writable: not reported)"
    yield Item("inbox", OK, f"{peer.inbox} {writable}, {free}")


def _engine_items(facts: protocol.PeerFacts) -> Iterator[Item]:
    """The peer's engine as its inventory describes it, and each problem it found (with
    its fix, in the peer's words)."""
    kind = facts.engine_kind or "docker"
    if facts.engine_version is None:
        yield Item(kind, OK, "reachable (its version is not reported by this imgsync)")
    elif kind == "docker":
        yield Item(kind, OK, f"Docker {facts.engine_version}, {facts.store} image store")
    else:
        yield Item(kind, OK, ", ".join((facts.engine_version, *facts.engine_notes)))
    for problem in facts.engine_problems:
        what, _, fix = problem.partition(": ")
        yield Item(kind, FAIL, what, fix=fix or None)


def _docker_cli_item(peer: cfg.PeerSettings, ssh: SshSession) -> Item:
    """An agentless peer's Docker, through its ``docker_command``."""
    argv = [*peer.docker_argv, "version", "--format", "{{.Server.Version}}"]
    fix = f"install Docker on the peer, or set docker_command (now {shlex.join(peer.docker_argv)})"
    try:
        engine, store = agentless.docker_info(ssh, peer)
        if engine is not None:
            detail = f"Docker {engine}, {store} image store ({shlex.join(peer.docker_argv)})"
            return Item("docker", OK, detail)
        answer = ssh.run(argv, timeout=peer.io_timeout)
    except TransportError as err:
        return Item("docker", FAIL, _plain(peer, err), fix=fix)
    version = clean(answer.stdout.strip())
    if answer.exit_status == 0 and version:
        return Item("docker", OK, f"Docker {version} ({shlex.join(peer.docker_argv)})")
    why = clean(answer.last_error_line().encode())
    if answer.exit_status not in (126, 127):  # the command ran, and Docker did not answer
        fix = docker_fix(peer.user, why, "docker_command")
    return Item("docker", FAIL, f"{shlex.join(argv)} exited {answer.exit_status}: {why}", fix=fix)


@contextlib.contextmanager
def _scratch_trust(peer: cfg.PeerSettings) -> Iterator[cfg.PeerSettings]:
    """A ``trust_unknown_hosts`` peer would record an unknown key: check it against a
    scratch copy of its known_hosts, so that ``check`` never writes the real one."""
    if not peer.trust_unknown_hosts:
        yield peer
        return
    with tempfile.TemporaryDirectory(prefix="imgsync-check-") as scratch:
        copy = Path(scratch) / "known_hosts"
        try:
            shutil.copyfile(peer.known_hosts, copy)
        except FileNotFoundError:
            pass
        except OSError:  # unreadable: checked strictly, so the connect says why
            yield peer.model_copy(update={"trust_unknown_hosts": False})
            return
        yield peer.model_copy(update={"known_hosts": str(copy)})


def _read(path: str) -> bytes:
    with contextlib.suppress(OSError):
        return Path(path).read_bytes()
    return b""


def _plain(peer: cfg.PeerSettings, err: Exception) -> str:
    return str(err).removeprefix(f"peer {peer.name}: ")
