"""The cipher an SSH connection uses, read from its first bytes on the wire.

Both ends send their version line and then SSH_MSG_KEXINIT in the clear (RFC 4253 7.1):
the algorithms each offers, in order of preference. The client -> server cipher is the
first of the client's list that the server also offers; its MAC likewise, unless the
cipher is an AEAD one (GCM, ChaCha20-Poly1305), which has its own. So what a tool really
used is known without asking the tool, the same way for OpenSSH and paramiko.
"""

from __future__ import annotations

KEXINIT = 20
ENCRYPTION_C2S, MAC_C2S = 2, 4  # name-list indexes after the cookie
AEAD = ("chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def kexinit_lists(head: bytes) -> list[list[str]] | None:
    """The 10 name-lists of the KEXINIT that follows the version line, or None."""
    pos = 0
    while True:  # the server may send other lines before its version line
        end = head.find(b"\n", pos)
        if end < 0:
            return None
        line, pos = head[pos:end], end + 1
        if line.startswith(b"SSH-"):
            break
    if len(head) < pos + 5:
        return None
    length = int.from_bytes(head[pos : pos + 4], "big")
    padding = head[pos + 4]
    payload = head[pos + 5 : pos + 4 + length - padding]
    if len(payload) < 17 or payload[0] != KEXINIT:
        return None
    lists: list[list[str]] = []
    at = 17  # message number + 16 bytes of cookie
    for _ in range(10):
        if at + 4 > len(payload):
            return None
        size = int.from_bytes(payload[at : at + 4], "big")
        text = payload[at + 4 : at + 4 + size]
        if len(text) < size:
            return None
        lists.append(text.decode("ascii", "replace").split(",") if size else [])
        at += 4 + size
    return lists


def _first_common(client: list[str], server: list[str]) -> str | None:
    return next((name for name in client if name in server), None)


def upload_cipher(client_head: bytes, server_head: bytes) -> str | None:
    """``aes128-gcm@openssh.com`` or ``aes128-ctr + hmac-sha2-256``: what carries the
    client -> server direction of this connection; None if the heads are not SSH."""
    client, server = kexinit_lists(client_head), kexinit_lists(server_head)
    if client is None or server is None:
        return None
    cipher = _first_common(client[ENCRYPTION_C2S], server[ENCRYPTION_C2S])
    if cipher is None:
        return None
    if cipher in AEAD:
        return cipher
    mac = _first_common(client[MAC_C2S], server[MAC_C2S])
    return f"{cipher} + {mac}"


def ciphers(heads: list[tuple[bytes, bytes]]) -> list[str]:
    """The distinct upload ciphers of these connections, in order of first use."""
    seen: list[str] = []
    for up, down in heads:
        name = upload_cipher(up, down)
        if name is not None and name not in seen:
            seen.append(name)
    return seen


def openssh_options(cipher: str) -> list[str]:
    """``-c CIPHER`` (and ``-m MAC`` for a cipher that is not AEAD) for ssh and scp, so
    OpenSSH uses exactly what :func:`upload_cipher` named."""
    name, _, mac = cipher.partition(" + ")
    return ["-c", name, *(["-m", mac] if mac else [])]
