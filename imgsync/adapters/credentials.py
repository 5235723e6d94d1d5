"""The source's private key: refused when others can read it (as OpenSSH does), and
unlocked, when it is encrypted, with a passphrase from systemd's credentials
(``LoadCredential=NAME:/path`` puts it in ``$CREDENTIALS_DIRECTORY/NAME``)."""

from __future__ import annotations

import os
import pwd
import shlex
import stat
from pathlib import Path

import paramiko

from imgsync.config import PeerSettings
from imgsync.errors import AuthError

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


def load_identity(peer: PeerSettings) -> paramiko.PKey:
    path = peer.identity_file
    try:
        found = os.stat(path)
    except FileNotFoundError:
        raise AuthError(f"peer {peer.name}: identity file {path} does not exist") from None
    except OSError as err:
        raise AuthError(f"peer {peer.name}: cannot read identity file {path}: {err}") from None
    mode = found.st_mode
    if found.st_uid != os.geteuid():  # as OpenSSH: a key is its user's own
        user = _user_name(os.geteuid())
        raise AuthError(
            f"peer {peer.name}: identity file {path} belongs to uid {found.st_uid}, not to "
            f"{user}, whom imgsync runs as; run: chown {user} {shlex.quote(path)}"
        )
    if mode & 0o077:
        raise AuthError(
            f"peer {peer.name}: identity file {path} is readable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {shlex.quote(path)}"
        )
    passphrase = _passphrase(peer)
    try:
        secret = passphrase.encode() if passphrase is not None else None
        # paramiko wants bytes here (its type stubs say str)
        return paramiko.PKey.from_path(path, password=secret)  # type: ignore[arg-type]
    except (paramiko.PasswordRequiredException, TypeError):  # TypeError: cryptography's
        raise AuthError(
            f"peer {peer.name}: identity file {path} is encrypted; set "
            "ssh.passphrase_credential and give the passphrase with systemd's LoadCredential="
        ) from None
    except (OSError, paramiko.SSHException, ValueError) as err:
        raise AuthError(f"peer {peer.name}: cannot load identity file {path}: {err}") from None


def _passphrase(peer: PeerSettings) -> str | None:
    name = peer.passphrase_credential
    if name is None:
        return None
    folder = os.environ.get(CREDENTIALS_ENV)
    if not folder:
        raise AuthError(
            f"peer {peer.name}: ssh.passphrase_credential is {name!r} but "
            f"${CREDENTIALS_ENV} is not set (LoadCredential={name}:… in the unit)"
        )
    try:
        return (Path(folder) / name).read_text().rstrip("\r\n")
    except OSError as err:
        raise AuthError(
            f"peer {peer.name}: cannot read credential {name} in {folder}: {err.strerror}"
        ) from None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
