"""Docker image references, checked against the distribution reference grammar.

imgsync distributes *tagged* references: a tarball saved by tag carries the tag, so
``docker load`` on the peer puts the image back under the same name. A reference without
a tag means ``:latest``, as for ``docker``. Digest references are refused: a load cannot
re-create a digest, so the peer could never be checked against it.
"""

from __future__ import annotations

import hashlib
import re
from fnmatch import fnmatchcase

from imgsync.errors import InvalidReference as InvalidReference  # raised here; re-exported

# From github.com/distribution/reference (regexp.go), written out.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_NAME_MAX = 255


def normalize(reference: str) -> str:
    """Return ``reference`` with an explicit tag, or raise :class:`InvalidReference`."""
    if not isinstance(reference, str):
        raise InvalidReference("an image reference must be a string")
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        raise InvalidReference(
            f"{reference!r} is not a valid image reference "
            "(expected [registry/]name[:tag], lowercase name)"
        )
    name, tag, digest = match["name"], match["tag"], match["digest"]
    first, slash, _rest = name.partition("/")
    is_domain = slash and ("." in first or ":" in first or first == "localhost")
    if slash and not is_domain and not re.fullmatch(_PATH_COMPONENT, first):
        raise InvalidReference(f"{reference!r}: repository name must be lowercase")
    if len(name) > _NAME_MAX:
        raise InvalidReference(f"{reference!r}: repository name longer than {_NAME_MAX}")
    if digest is not None:
        raise InvalidReference(
            f"{reference!r}: digest references cannot be distributed; name a tag instead"
        )
    return f"{name}:{tag or 'latest'}"


def file_stem(reference: str) -> str:
    """A file-name-safe, collision-free stem for a reference's files in a bundle folder."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", reference)[:80]
    digest = hashlib.sha256(reference.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


def familiar(reference: str) -> str:
    """The short form Docker shows in ``RepoTags`` (``docker.io/library/x:1`` → ``x:1``)."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/"):
        if reference.startswith(prefix):
            return reference[len(prefix) :]
    return reference


def qualified(reference: str) -> str:
    """The full name containerd and kubelet use (``x:1`` → ``docker.io/library/x:1``,
    ``acme/x:1`` → ``docker.io/acme/x:1``); a name with a registry stays as it is."""
    first, slash, _rest = reference.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return reference
    return f"docker.io/{reference}" if slash else f"docker.io/library/{reference}"


def is_pattern(selector: str) -> bool:
    """Is ``selector`` a glob (``*``, ``?``, ``[``) rather than one reference?"""
    return any(c in selector for c in "*?[")


def match(selector: str, image: str) -> bool:
    """Does ``selector`` (a reference, or a glob matched against the normalized and the
    familiar form) name ``image``?"""
    if is_pattern(selector):
        return fnmatchcase(image, selector) or fnmatchcase(familiar(image), selector)
    return selector == image
