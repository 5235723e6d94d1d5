"""``imgsync serve``: the forced command of the source's key on a peer.

In the peer's ``authorized_keys``::

    command="imgsync --config /etc/imgsync/imgsync.toml serve",restrict ssh-ed25519 AAAA…

sshd then runs ``serve`` whatever the source asked for, with the request in
``SSH_ORIGINAL_COMMAND``. Only what imgsync's own sync sends is let through: the peer's
``apply`` with the flags the source uses — ``--session`` (one process for the whole cycle,
:mod:`imgsync.receiver.session`), and the single steps older sources and ``check`` run
(inventory, receive a file into the inbox, apply markers). The config is always serve's
own, never one named in the request. A shell, any other program, SFTP, ``apply --watch``
or any unknown flag is refused.
"""

from __future__ import annotations

import posixpath
import shlex

from imgsync.errors import Refused as Refused  # raised here; re-exported

# apply's flags the source sends, with how many values each takes.
_ALLOWED = {
    "--json": 0,
    "--inventory": 0,
    "--clean-temp": 0,
    "--has-layer": 1,
    "--image": 1,
    "--receive": 1,
    "--size": 1,
    "--offset": 1,
    "--compression": 1,
    "--session": 0,
}
_HEAD_FLAGS = {"--config": 1, "-v": 0, "-vv": 0, "--verbose": 0}


def apply_args(original: str | None) -> list[str]:
    """The ``apply`` arguments in an allowed request; raise :class:`Refused` otherwise."""
    if not original:
        raise Refused("refused: this key runs imgsync's sync only (no interactive login)")
    try:
        words = shlex.split(original)
    except ValueError:
        raise Refused(f"refused {original[:80]!r}: not a command line") from None
    if not words:
        raise Refused("refused an empty command: this key runs imgsync's sync only")
    if "apply" not in words or posixpath.basename(words[0]) != "imgsync":
        raise Refused(f"refused {words[0][:80]!r}: this key may only run imgsync apply")
    split = words.index("apply")
    _check(words[1:split], _HEAD_FLAGS, words[0])
    args = words[split + 1 :]
    _check(args, _ALLOWED, "imgsync apply")
    for name in _values(args, "--receive"):
        if "/" in name or name.startswith(".") or "\0" in name:
            raise Refused(f"refused imgsync apply --receive {name[:80]!r}: not a plain file name")
    return args


def _values(args: list[str], flag: str) -> list[str]:
    """The values ``flag`` is given in ``args`` (``--flag V`` or ``--flag=V``)."""
    found = [word.split("=", 1)[1] for word in args if word.startswith(flag + "=")]
    found += [args[i + 1] for i, word in enumerate(args[:-1]) if word == flag]
    return found


def _check(words: list[str], allowed: dict[str, int], program: str) -> None:
    position = 0
    while position < len(words):
        flag = words[position].split("=", 1)[0]
        if flag not in allowed:
            raise Refused(f"refused {program} {words[position][:80]!r}: not allowed by serve")
        if "=" in words[position] and not allowed[flag]:
            raise Refused(f"refused {program} {words[position][:80]!r}: {flag} takes no value")
        takes = allowed[flag] if "=" not in words[position] else 0
        if position + takes >= len(words) + (0 if takes else 1):
            raise Refused(f"refused {program} {flag}: missing its value")
        position += 1 + takes
