"""A small client for the OCI distribution API: blobs, manifests and tags over one ``httpx.Client``.

Only what promotion needs: push and pull by digest, resolve a tag, list tags. Every byte that comes back is
checked against its digest, because a release must be the exact artefact that was tested. Failures are mapped to
promo's errors in one place (``Registry._error``): network faults, 5xx and 429 become ``RegistryUnavailable`` (a
``TransientError``, so tasks retry them), refused credentials ``AuthError``, 404 ``NotFound``, and any other
refusal a ``PromoError`` carrying the registry's own error code.

Auth follows the distribution token spec: a request goes out anonymously; a ``Basic`` challenge makes the client
send the basic credentials from then on, a ``Bearer`` challenge makes it fetch a token from the realm (with the
basic credentials if it has any) and cache it per scope. ECR is basic auth with a password from
``ecr:GetAuthorizationToken`` (promo.registry.credentials). Credentials live in private attributes and never reach a message or a repr, nor
another host: an upload ``Location`` or a next page on a CDN or object storage is requested without them.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import re
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from promo.errors import AuthError, NotFound, PromoError, RegistryUnavailable
from promo.registry.credentials import CREDENTIALS_FIX, Anonymous, Credentials, EcrCredentials
from promo.registry.names import (
    DIGEST_PATTERN,
    check_digest,
    check_reference,
    check_repository,
    digest_of,
    reference_text,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))


REQUEST_ATTEMPTS = 3
MAX_WAIT = 2.0  # seconds; a longer Retry-After is left to the task's retry


@dataclass(frozen=True)
class Manifest:
    data: bytes = field(repr=False)
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.data)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise PromoError(f"manifest {self.digest} is not a JSON object", "push a valid OCI manifest")
        return parsed


class Registry:
    """One registry host. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        host: str,
        credentials: Credentials | None = None,
        *,
        insecure: bool | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.host = host
        self._credentials = credentials or Anonymous()
        plain_http = is_plain_http(host, insecure)
        self._client = httpx.Client(
            base_url=f"{'http' if plain_http else 'https'}://{host}",
            verify=shared_tls_context(),
            timeout=timeout,
            transport=transport,
            follow_redirects=True,  # blobs are often served from object storage; httpx drops auth off-origin
            headers={"User-Agent": "promo"},
        )
        self._send_basic = False
        self._tokens: dict[str, str] = {}

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Registry({self.host!r}, {self._credentials!r})"

    def close(self) -> None:
        self._client.close()

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self._blob_exists(repository, digest, "pull")

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` unless the registry already has it; returns its digest."""
        digest = digest_of(data)
        if self._blob_exists(repository, digest, "pull,push"):
            return digest
        what = f"blob upload to {repository}"
        for attempt in range(1, REQUEST_ATTEMPTS + 1):
            try:
                self._upload(repository, data, digest, what)
                return digest
            except (RegistryUnavailable, NotFound):
                # The upload may have landed with its answer lost (then its session is gone: NotFound).
                if self._blob_exists(repository, digest, "pull,push"):
                    return digest
                if attempt == REQUEST_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _upload(self, repository: str, data: bytes, digest: str, what: str) -> None:
        started = self._send("POST", _path(repository, "blobs/uploads/"), repository, "pull,push", what=what, retry=False)
        location = started.headers.get("Location")
        if not location:
            raise PromoError(f"registry {self.host} started {what} without a Location", "use an OCI registry")
        upload = started.url.join(location).copy_merge_params({"digest": digest})
        headers = {"Content-Type": "application/octet-stream"}
        self._send("PUT", upload, repository, "pull,push", what=what, content=data, headers=headers, retry=False)

    def pull_blob(self, repository: str, digest: str) -> bytes:
        """The blob's bytes, verified against ``digest``; a corrupted or truncated transfer is fetched again."""
        algorithm = check_digest(digest)
        for attempt in range(1, REQUEST_ATTEMPTS + 1):
            response = self._send("GET", _path(repository, f"blobs/{digest}"), repository, "pull", what=f"blob {digest}")
            actual = digest_of(response.content, algorithm)
            if actual == digest:
                return response.content
            if attempt == REQUEST_ATTEMPTS:
                raise RegistryUnavailable(
                    f"blob {digest} from {self.host}/{repository} arrived corrupted or truncated "
                    f"({len(response.content)} bytes with digest {actual})",
                    "retry the download; if it persists the registry's storage is damaged",
                )
        raise AssertionError("unreachable")

    def push_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """Store a manifest under a tag (or its digest); returns its digest."""
        check_reference(reference)
        what = f"manifest {reference_text(repository, reference)}"
        headers = {"Content-Type": media_type}
        path = _path(repository, f"manifests/{reference}")
        self._send("PUT", path, repository, "pull,push", what=what, content=data, headers=headers)
        return digest_of(data)

    def pull_manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest for a tag or digest, verified against the digest asked for and the one the registry sent."""
        check_reference(reference)
        what = f"manifest {reference_text(repository, reference)}"
        path = _path(repository, f"manifests/{reference}")
        response = self._send("GET", path, repository, "pull", what=what, headers={"Accept": MANIFEST_ACCEPT})
        by_digest = reference if DIGEST_PATTERN.fullmatch(reference) else None
        for expected in (by_digest, response.headers.get("Docker-Content-Digest")):
            if expected and digest_of(response.content, check_digest(expected)) != expected:
                raise RegistryUnavailable(
                    f"{what} from {self.host} does not match its digest {expected}",
                    "retry; if it persists the registry's storage is damaged",
                )
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return Manifest(response.content, media_type, by_digest or digest_of(response.content))

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points at, or None if there is no such manifest."""
        check_reference(reference)
        what = f"manifest {reference_text(repository, reference)}"
        path = _path(repository, f"manifests/{reference}")
        try:
            response = self._send("HEAD", path, repository, "pull", what=what, headers={"Accept": MANIFEST_ACCEPT})
        except NotFound:
            return None
        return response.headers.get("Docker-Content-Digest") or self.pull_manifest(repository, reference).digest

    def check_push_access(self, repository: str) -> None:
        """Prove now that we may push to ``repository``, so bad or pull-only credentials (or a missing ECR
        repository) fail before anything is built: a blob upload is started, which needs the push right, and
        cancelled. A token's ``pull,push`` request alone proves nothing: token services grant what they allow."""
        if isinstance(self._credentials, EcrCredentials):
            self._credentials.require_repository(repository)
        what = f"a test upload to {repository}"
        try:
            started = self._send("POST", _path(repository, "blobs/uploads/"), repository, "pull,push", what=what)
        except AuthError as refused:
            raise AuthError(
                f"{refused.cause}: these credentials may not push to {self.host}/{repository}",
                f"grant them the push right on {repository}, or {CREDENTIALS_FIX}",
            ) from None
        location = started.headers.get("Location")
        if location:
            self._cancel_upload(started.url.join(location), repository)

    def _cancel_upload(self, upload: httpx.URL, repository: str) -> None:
        """Best effort: an upload never completed stores nothing under a name, and registries expire it anyway."""
        try:
            self._send("DELETE", upload, repository, "pull,push", what=f"cancelling a test upload to {repository}")
        except PromoError:
            pass

    def tags(self, repository: str, *, page_size: int | None = None) -> list[str]:
        """Every tag of ``repository`` in lexical order (distribution 2.8 returns them unordered and ignores
        ``n``; others paginate with ``Link``, which is followed); [] if the repository does not exist."""
        url: httpx.URL | str = _path(repository, "tags/list")
        params = {"n": page_size} if page_size else None
        tags: list[str] = []
        while True:
            try:
                response = self._send("GET", url, repository, "pull", what=f"tags of {repository}", params=params)
            except NotFound:
                return sorted(tags)  # distribution answers NAME_UNKNOWN for a repository without any push yet
            tags.extend(self._json(response, f"tags of {repository}").get("tags") or [])
            next_url = response.links.get("next", {}).get("url")
            if not next_url:
                return sorted(tags)
            url, params = response.url.join(next_url), None

    def _blob_exists(self, repository: str, digest: str, actions: str) -> bool:
        check_digest(digest)
        try:
            self._send("HEAD", _path(repository, f"blobs/{digest}"), repository, actions, what=f"blob {digest}")
        except NotFound:
            return False
        return True

    def _send(
        self,
        method: str,
        url: httpx.URL | str,
        repository: str,
        actions: str,
        *,
        what: str,
        headers: dict[str, str] | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request, answering at most one auth challenge; every failure leaves as a PromoError.

        A transient fault (5xx, 429, a reset) is retried here, a few times and briefly, honouring Retry-After: a
        task retry repeats a whole push of many requests, so per-request faults must not each cost one. Requests
        that cannot be repeated blindly (an upload's PUT) pass ``retry=False`` and are recovered by their caller.
        """
        for attempt in range(1, REQUEST_ATTEMPTS + 1):
            try:
                return self._send_once(method, url, repository, actions, what, headers or {}, kwargs)
            except RegistryUnavailable as fault:
                if not retry or attempt == REQUEST_ATTEMPTS:
                    raise
                time.sleep(min(fault.retry_after if fault.retry_after is not None else 0.05 * 2**attempt, MAX_WAIT))
        raise AssertionError("unreachable")

    def _send_once(
        self,
        method: str,
        url: httpx.URL | str,
        repository: str,
        actions: str,
        what: str,
        headers: dict[str, str],
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        scope = f"repository:{repository}:{actions}"
        response = self._attempt(method, url, scope, headers, kwargs)
        if response.status_code == 401 and self._is_ours(response.url) and self._answer_challenge(response, scope):
            response = self._attempt(method, url, scope, headers, kwargs)
        if response.is_success:
            return response
        raise self._error(response, what)

    def _attempt(
        self, method: str, url: httpx.URL | str, scope: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> httpx.Response:
        headers = dict(headers)
        # An upload Location or a next page may be on another host (a CDN, object storage): it gets no credentials.
        authorization = self._authorization(scope) if self._is_ours(url) else None
        if authorization:
            headers["Authorization"] = authorization
        try:
            return self._client.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def _authorization(self, scope: str) -> str | None:
        if scope in self._tokens:
            return f"Bearer {self._tokens[scope]}"
        if self._send_basic and (basic := self._credentials.basic_auth()):
            return _basic_header(*basic)
        return None

    def _is_ours(self, url: httpx.URL | str) -> bool:
        """True for a URL on this registry (same scheme, host and port): the only place our credentials may go."""
        target = httpx.URL(url)
        return target.is_relative_url or _origin(target) == _origin(self._client.base_url)

    def _answer_challenge(self, response: httpx.Response, scope: str) -> bool:
        """Act on a 401's WWW-Authenticate; True when a retry may now succeed."""
        scheme, params = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic" and not self._send_basic and self._credentials.basic_auth() is not None:
            self._send_basic = True
            return True
        if scheme == "bearer" and params.get("realm"):
            self._tokens[scope] = self._fetch_token(params, scope)
            return True
        return False

    def _fetch_token(self, challenge: dict[str, str], scope: str) -> str:
        query = [("service", challenge["service"])] if challenge.get("service") else []
        query += [("scope", s) for s in challenge.get("scope", scope).split()]
        basic = self._credentials.basic_auth()
        headers = {"Authorization": _basic_header(*basic)} if basic else {}
        try:
            response = self._client.get(challenge["realm"], params=query, headers=headers)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if not response.is_success:
            raise self._error(response, f"a token for {scope}")
        body = self._json(response, f"a token for {scope}")
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"the token service of {self.host} answered without a token", CREDENTIALS_FIX)
        return token

    def _unreachable(self, exc: httpx.TransportError) -> RegistryUnavailable:
        return RegistryUnavailable(
            f"cannot reach registry {self.host}: {type(exc).__name__} {exc}".strip(),
            "check that the registry is up and reachable; promo retries this",
        )

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PromoError(f"registry {self.host} answered {what} with something other than JSON", "check the host")
        return body

    def _error(self, response: httpx.Response, what: str) -> PromoError:
        """The one place an HTTP failure becomes a promo error."""
        status = response.status_code
        detail = _registry_error(response) or f"HTTP {status}"
        if status in (401, 403):
            return AuthError(f"registry {self.host} refused access to {what} ({detail})", CREDENTIALS_FIX)
        if status == 404:
            return NotFound(f"{what} not found in registry {self.host} ({detail})", "check the name, or push it first")
        if status == 429 or status >= 500:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
            return RegistryUnavailable(
                f"registry {self.host} failed {what} with HTTP {status} ({detail}{wait})",
                "promo retries this; if it persists, check the registry's health",
                retry_after=retry_after,
            )
        return PromoError(
            f"registry {self.host} rejected {what} with HTTP {status} ({detail})",
            "fix what the registry's error code names, then try again",
        )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _path(repository: str, rest: str) -> str:
    return f"/v2/{check_repository(repository)}/{rest}"


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """Loading the CA bundle costs ~80 ms; a flow opens several clients, so they share one verified context."""
    return httpx.create_ssl_context()


def is_plain_http(host: str, insecure: bool | None = None) -> bool:
    """Plain HTTP where asked for, and by default only for loopback registries (a local sandbox or test)."""
    return _is_loopback(host) if insecure is None else insecure


def _is_loopback(host: str) -> bool:
    name = httpx.URL(f"http://{host}").host
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost"


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


def _registry_error(response: httpx.Response) -> str:
    """``CODE: message`` from an OCI error body, or '' when the body is not one."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None
