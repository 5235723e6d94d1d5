"""Read a manifest from a site registry (``[receiver] publish``): which config digests the
image under a name has there, the check that a push put the version there.

Over HTTP(S) with the Docker Registry v2 API (``GET /v2/NAME/manifests/TAG``), asking for
Docker's and OCI's manifest and index media types; every answer bounded in size and time.
Like Docker for a registry on loopback or in ``insecure-registries``, HTTPS is tried first
and plain HTTP only when the registry does not speak TLS at all; a certificate that does not
verify (system CAs, plus ``/etc/docker/certs.d/HOST:PORT/ca.crt`` as Docker reads it) is an
error, never a reason to fall back. Reading needs no credentials: the registry must allow
anonymous pulls (a site mirror does). ``urllib`` and ``ssl`` errors stop here:
callers see :class:`~imgsync.errors.RegistryError`.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from imgsync.errors import RegistryError
from imgsync.model import VERSION_RE

TIMEOUT = 10.0  # seconds per request
MAX_MANIFEST = 4 * 1024 * 1024  # the registry's own limit for a manifest
MAX_CHILDREN = 16  # manifests of an index looked into
CERTS_D = Path("/etc/docker/certs.d")
INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
ACCEPT = ", ".join(MANIFESTS + INDEXES)


def config_digests(target: str, timeout: float = TIMEOUT) -> set[str]:
    """The config digests of the image the registry holds as ``target``
    (``host:port/path:tag``): one for a manifest, one per manifest of an index; empty when
    it holds nothing under that name. RegistryError when it cannot be read."""
    host, _, rest = target.partition("/")
    name, _, tag = rest.rpartition(":")
    reader = _Reader(host, timeout)
    document = reader.manifest(name, tag)
    if document is None:
        return set()
    found = _config_of(document)
    if found is not None:
        return {found}
    digests = set()
    for child in _children(document, target):
        child_doc = reader.manifest(name, child)
        config = _config_of(child_doc) if child_doc is not None else None
        if config is not None:
            digests.add(config)
    return digests


class _Reader:
    def __init__(self, host: str, timeout: float) -> None:
        self.host, self.timeout = host, timeout
        self.scheme: str | None = None  # https, or http once the registry spoke no TLS

    def manifest(self, name: str, reference: str) -> dict[str, Any] | None:
        """The manifest ``name:reference`` (a tag or digest) as JSON; None: not there."""
        path = f"/v2/{name}/manifests/{reference}"
        request = urllib.request.Request(f"https://{self.host}{path}", headers={"Accept": ACCEPT})
        if self.scheme != "http":
            try:
                return self._get(request, _tls_context(self.host))
            except _NoTls:
                self.scheme = "http"
        request.full_url = f"http://{self.host}{path}"
        return self._get(request, None)

    def _get(
        self, request: urllib.request.Request, tls: ssl.SSLContext | None
    ) -> dict[str, Any] | None:
        where = f"registry {self.host}"
        try:
            # only https:// and http:// URLs are ever built here
            with urllib.request.urlopen(request, timeout=self.timeout, context=tls) as answer:  # noqa: S310
                raw = answer.read(MAX_MANIFEST + 1)
        except urllib.error.HTTPError as err:
            _http_error(err, where, request.full_url)
            return None
        except (urllib.error.URLError, OSError) as err:
            _tls_or_unreachable(getattr(err, "reason", err), where, self.host)
        if len(raw) > MAX_MANIFEST:
            raise RegistryError(f"{where}: manifest larger than {MAX_MANIFEST} bytes")
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            raise RegistryError(f"{where}: {request.full_url} is not JSON") from None
        if not isinstance(document, dict):
            raise RegistryError(f"{where}: {request.full_url} is not a manifest")
        return document


class _NoTls(Exception):
    """The registry answered the TLS handshake with something else: it speaks plain HTTP."""


def _tls_or_unreachable(reason: object, where: str, host: str) -> None:
    """Raise what a failed request means: a certificate that does not verify, a registry
    that speaks no TLS (:class:`_NoTls`: try plain HTTP), or one that cannot be reached."""
    if isinstance(reason, ssl.SSLCertVerificationError):
        raise RegistryError(
            f"{where}: its certificate does not verify ({reason.verify_message}); put its CA "
            f"in {CERTS_D / host / 'ca.crt'}"
        ) from None
    if isinstance(reason, ssl.SSLError):
        raise _NoTls(str(reason)) from None
    raise RegistryError(f"{where} cannot be reached: {reason}", True) from None


def _http_error(err: urllib.error.HTTPError, where: str, url: str) -> None:
    """A 404 is no manifest under that name (return); anything else an error (raise)."""
    with err:
        if err.code == 404:
            return
        if err.code in (401, 403):
            raise RegistryError(
                f"{where} refuses to let imgsync read {url} (HTTP {err.code}): publish "
                "needs a registry that allows anonymous pulls"
            ) from None
        raise RegistryError(f"{where}: HTTP {err.code} for {url}") from None


def _tls_context(host: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca = CERTS_D / host / "ca.crt"
    if ca.is_file():
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as err:
            raise RegistryError(f"registry {host}: cannot use {ca}: {err}") from None
    return context


def _config_of(document: dict[str, Any]) -> str | None:
    config = document.get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    return digest if isinstance(digest, str) and VERSION_RE.fullmatch(digest) else None


def _children(document: dict[str, Any], target: str) -> list[str]:
    manifests = document.get("manifests")
    if document.get("mediaType") not in INDEXES and not isinstance(manifests, list):
        raise RegistryError(f"{target} on its registry is neither a manifest nor an index")
    found = [m.get("digest") for m in (manifests or []) if isinstance(m, dict)]
    return [d for d in found if isinstance(d, str) and VERSION_RE.fullmatch(d)][:MAX_CHILDREN]
