"""GitHub as a forge: releases, pull requests and workflow dispatches over the REST API (v3), with httpx.

GitHub quietly does two things a release flow must not accept, so they are checked first: creating a release for a
tag that already exists releases *that tag's* commit whatever ``target_commitish`` says, and a second run's POST
fails with 422 ``already_exists``. So ``create_release`` looks the release and the tag up, applies the idempotency
rule of ``promo.forges.base``, and treats ``already_exists`` as "look again", never as a failure of its own.

Errors map onto promo's hierarchy: 401 and plain 403 are AuthError, a rate limit (429, or 403 with no requests left)
is waited out as GitHub asks (``Retry-After``, or until ``X-RateLimit-Reset``) up to a minute per request, and beyond
that is ``RateLimited`` naming the reset time, 404 NotFound, 422 a ConflictError (``already_exists``) or an
InputError with GitHub's reasons, 5xx and transport faults TransientError. Tokens go into the Authorization header of
requests to the API only; no message, repr or log line holds one.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import jwt

from promo.errors import AuthError, ConflictError, InputError, NotFound, PromoError, ToolError, TransientError
from promo.forges.base import PullRequest, Release, check_commit, newest_first, same_commit_or_conflict
from promo.gitops.mirror import check_branch_name, check_tag_name
from promo.registry.oci import shared_tls_context
from promo.secrets import secret_block_value

DEFAULT_API_URL = "https://api.github.com"
TIMEOUT_SECONDS = 30.0
DEFAULT_RATE_LIMIT_WAIT_SECONDS = 60.0  # GitHub's advice when a limit names no reset time
MAX_RATE_LIMIT_WAIT_SECONDS = 60.0  # per request, in all; a longer wait fails the request (a task retry may follow)

_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "promo"}
_PAGE_SIZE = 100
_APP_JWT_SECONDS = 540  # GitHub accepts at most 10 minutes
_TOKEN_REFRESH_MARGIN_SECONDS = 300
_OWNER_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")


class RateLimited(TransientError):
    """GitHub's rate limit: worth retrying, after ``retry_after`` seconds and not before."""

    def __init__(self, cause: str, fix: str | None, retry_after: float) -> None:
        super().__init__(cause, fix)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:  # Prefect pickles task errors; keep the wait across that
        return (type(self), (self.cause, self.fix, self.retry_after))


@dataclass(frozen=True)
class RateLimitWait:
    """How a request waits out GitHub's rate limit: as long as GitHub asks, at most ``budget`` seconds in all.
    ``sleep`` and ``clock`` are injectable so tests see the waits without spending them."""

    budget: float = MAX_RATE_LIMIT_WAIT_SECONDS
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time


class _AlreadyExists(ConflictError):
    """422 for something that exists: callers look it up and apply their idempotency rule."""


class TokenProvider(Protocol):
    def token(self) -> str:
        """A token for the Authorization header. Called for every request, so a provider caches what is costly."""
        ...


@dataclass(frozen=True)
class EnvToken:
    """A token from an environment variable: a personal access token, or the ``GITHUB_TOKEN`` of an Actions run
    (and Argo CD's API token, with its own ``needed``)."""

    var: str = "GITHUB_TOKEN"
    needed: str = "a GitHub token that may write the repository's contents and pulls"  # the fix names it

    def token(self) -> str:
        value = os.environ.get(self.var, "").strip()
        if not value:
            raise AuthError(f"${self.var} is not set", f"export {self.needed}")
        return value


@dataclass(frozen=True)
class GivenToken:
    """A token handed over directly (``promo approve --github-token``); its repr never shows it."""

    value: str = field(repr=False)

    def token(self) -> str:
        if not self.value.strip():
            raise AuthError("the GitHub token given is empty", "pass a token, or export GITHUB_TOKEN")
        return self.value.strip()


@dataclass(frozen=True)
class PrefectSecretToken:
    """A token kept in a Prefect ``Secret`` block, for workers that should hold no credentials of their own."""

    block_name: str

    def token(self) -> str:
        value = secret_block_value(self.block_name)
        if value is None:
            raise NotFound(
                f"Prefect Secret block {self.block_name!r} does not exist or still holds `promo setup`'s placeholder",
                "set its value (Secret(value=...).save(name, overwrite=True)) on the Prefect server the flows run on",
            )
        return value


class GitHubAppToken:
    """Installation tokens of a GitHub App: a JWT signed with the app's key (RS256) buys an installation token,
    reused until five minutes before it expires. The installation is looked up from ``repository`` when not given."""

    def __init__(
        self,
        app_id: int | str,
        private_key: str,
        installation_id: int | None = None,
        *,
        repository: str | None = None,
        api_url: str = DEFAULT_API_URL,
        client: httpx.Client | None = None,
    ) -> None:
        if installation_id is None and repository is None:
            raise InputError("a GitHub App token needs an installation", "pass installation_id, or the repository")
        self.app_id = str(app_id)
        self.installation_id = installation_id
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        self._private_key = private_key
        self._client = client or _new_client()
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None  # (token, expiry as a UNIX time)

    def __repr__(self) -> str:
        return f"GitHubAppToken(app_id={self.app_id!r}, installation_id={self.installation_id!r})"

    def token(self) -> str:
        with self._lock:
            if self._cached is None or self._cached[1] - time.time() < _TOKEN_REFRESH_MARGIN_SECONDS:
                self._cached = self._new_installation_token()
            return self._cached[0]

    def _new_installation_token(self) -> tuple[str, float]:
        headers = {"Authorization": f"Bearer {self._app_jwt()}"}
        if self.installation_id is None:
            url = f"{self.api_url}/repos/{self.repository}/installation"
            action = f"finding the app's installation on {self.repository}"
            self.installation_id = int(_send(self._client, "GET", url, action=action, headers=headers).json()["id"])
        url = f"{self.api_url}/app/installations/{self.installation_id}/access_tokens"
        data = _send(self._client, "POST", url, action="getting an installation token", headers=headers).json()
        return data["token"], datetime.fromisoformat(data["expires_at"]).timestamp()

    def _app_jwt(self) -> str:
        now = int(time.time())
        claims = {"iat": now - 60, "exp": now + _APP_JWT_SECONDS, "iss": self.app_id}  # iat 60 s early: clock skew
        try:
            return jwt.encode(claims, self._private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError):
            raise AuthError(
                f"the private key of GitHub App {self.app_id} cannot sign a token",
                "pass the RSA private key (PEM) GitHub generated for the app",
            ) from None


class GitHubForge:
    """Releases and pull requests of one GitHub repository ``owner/name``."""

    def __init__(
        self,
        owner_repo: str,
        token_provider: TokenProvider,
        *,
        api_url: str = DEFAULT_API_URL,
        client: httpx.Client | None = None,
        rate_limit: RateLimitWait = RateLimitWait(),
    ) -> None:
        if not _OWNER_REPO.match(owner_repo):
            raise InputError(f"{owner_repo!r} is not a GitHub repository", "use owner/name, e.g. acme/hello")
        self.owner_repo = owner_repo
        self.api_url = api_url.rstrip("/")
        self._repo_url = f"{self.api_url}/repos/{owner_repo}"
        self._client = client or _new_client()
        self._auth = _BearerAuth(token_provider)
        self._rate_limit = rate_limit

    def __repr__(self) -> str:
        return f"GitHubForge({self.owner_repo!r}, api_url={self.api_url!r})"

    def find_release(self, tag: str) -> Release | None:
        check_tag_name(tag)
        try:
            data = self._json("GET", f"/releases/tags/{quote(tag)}", action=f"looking up release {tag}")
        except NotFound:
            return None
        return _release(data, self._tag_commit(tag) or data["target_commitish"])

    def create_release(self, tag: str, commit: str, *, name: str, notes: str) -> Release:
        check_tag_name(tag)
        check_commit(commit)
        existing = self.find_release(tag)
        if existing is not None:
            return same_commit_or_conflict(existing, commit)
        tagged = self._tag_commit(tag)
        if tagged is not None and tagged != commit:  # GitHub would release the tag's commit, ignoring ours
            raise ConflictError(
                f"tag {tag} already exists in {self.owner_repo} at commit {tagged}, not at {commit}",
                "a pushed tag is never moved: release under another version, or delete the tag by hand if it is wrong",
            )
        body = {"tag_name": tag, "target_commitish": commit, "name": name, "body": notes, "draft": False}
        try:
            data = self._json("POST", "/releases", action=f"creating release {tag}", json=body)
        except _AlreadyExists:  # another run made it between our lookup and our POST
            existing = self.find_release(tag)
            if existing is None:
                raise
            return same_commit_or_conflict(existing, commit)
        return _release(data, commit)

    def list_releases(self) -> list[Release]:
        """Published releases; each one's commit comes from its tag (one listing of all tags, not a call each)."""
        commits = {item["name"]: item["commit"]["sha"] for item in self.pages("/tags", action="listing tags")}
        return newest_first(
            _release(data, commits.get(data["tag_name"], data["target_commitish"]))
            for data in self.pages("/releases", action="listing releases")
            if not data.get("draft")
        )

    def open_pull_request(self, head: str, base: str, *, title: str, body: str, draft: bool = True) -> PullRequest:
        check_branch_name(head)
        check_branch_name(base)
        existing = self._open_pull_request(head)
        if existing is not None:
            return existing
        request = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        try:
            data = self._json("POST", "/pulls", action=f"opening a pull request from {head}", json=request)
        except _AlreadyExists:
            existing = self._open_pull_request(head)
            if existing is None:
                raise
            return existing
        return _pull_request(data)

    def list_pull_requests(self) -> list[PullRequest]:
        pages = self.pages("/pulls", {"state": "open"}, action="listing pull requests")
        return [_pull_request(data) for data in pages]

    def dispatch_workflow(self, workflow: str | int, ref: str, inputs: Mapping[str, str] | None = None) -> None:
        """Start ``workflow`` (its file name or id) on branch or tag ``ref``; inputs travel as JSON, never as code."""
        check_branch_name(ref)
        path = f"/actions/workflows/{quote(str(workflow), safe='')}/dispatches"
        body = {"ref": ref, "inputs": {key: str(value) for key, value in (inputs or {}).items()}}
        self.request("POST", f"{self._repo_url}{path}", action=f"dispatching workflow {workflow} on {ref}", json=body)

    def close(self) -> None:
        self._client.close()

    # -- internals -------------------------------------------------------------------------------------------------

    def _tag_commit(self, tag: str) -> str | None:
        """The commit tag ``tag`` names (peeling annotated tag objects), or None when there is no such tag."""
        action = f"looking up tag {tag}"
        try:
            target = self._json("GET", f"/git/ref/tags/{quote(tag)}", action=action)["object"]
        except NotFound:
            return None
        while target["type"] == "tag":
            target = self._json("GET", f"/git/tags/{target['sha']}", action=action)["object"]
        return target["sha"]

    def _open_pull_request(self, head: str) -> PullRequest | None:
        owner = self.owner_repo.split("/")[0]
        params = {"head": f"{owner}:{head}", "state": "open"}
        for data in self.pages("/pulls", params, action=f"looking up pull requests from {head}"):
            return _pull_request(data)
        return None

    def pages(
        self, path: str, params: Mapping[str, str] | None = None, *, action: str, key: str | None = None
    ) -> Iterator[Any]:
        """Every item of a listing (or of its ``key`` array, as check runs come), following the ``Link: rel="next"``
        pages GitHub returns."""
        url: str | None = f"{self._repo_url}{path}"
        query: dict[str, Any] | None = {**(params or {}), "per_page": _PAGE_SIZE}
        while url is not None:
            response = self.request("GET", url, action=action, params=query)
            yield from response.json() if key is None else response.json()[key]
            url, query = response.links.get("next", {}).get("url"), None  # the next link carries the query
            if url is not None and not url.startswith(f"{self.api_url}/"):
                raise ToolError(f"{action}: GitHub's next page is outside {self.api_url}", "report it; not followed")

    def _json(self, method: str, path: str, *, action: str, **kwargs: Any) -> Any:
        """The JSON answer to ``method`` on ``path`` of this repository's API."""
        return self.request(method, f"{self._repo_url}{path}", action=action, **kwargs).json()

    def request(
        self, method: str, url: str, *, action: str, allow: frozenset[int] = frozenset(), **kwargs: Any
    ) -> httpx.Response:
        """``method`` on ``url`` (absolute: this API's) with the token; error answers raise, except ``allow``'s,
        which are returned for the caller to read (a merge's 405 and 409 mean things a caller decides on)."""
        action = f"{action} in {self.owner_repo}"
        return _send(
            self._client, method, url, action=action, allow=allow, auth=self._auth, rate_limit=self._rate_limit,
            **kwargs,
        )


class _BearerAuth(httpx.Auth):
    """Asks the provider for a token per request, so rotated or refreshed tokens are picked up."""

    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._provider.token()}"
        yield request


def _new_client() -> httpx.Client:
    return httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=True, verify=shared_tls_context())


def _send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    action: str,
    rate_limit: RateLimitWait = RateLimitWait(),
    allow: frozenset[int] = frozenset(),
    **kwargs: Any,
) -> httpx.Response:
    """One request; a rate limit is waited out and the request repeated (GitHub did not act on it) while the waits
    stay within the budget."""
    headers = {**_HEADERS, **kwargs.pop("headers", {})}
    waited = 0.0
    while True:
        try:
            response = client.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise TransientError(
                f"{action} failed: {type(exc).__name__} {exc}", "retry; check the network and the GitHub API URL"
            ) from None
        if response.status_code < 400 or response.status_code in allow:
            return response
        error = _error(response, action, rate_limit.clock())
        if not isinstance(error, RateLimited) or waited + error.retry_after > rate_limit.budget:
            raise error
        rate_limit.sleep(error.retry_after)
        waited += error.retry_after


def _error(response: httpx.Response, action: str, now: float) -> PromoError:
    """The promo error for a GitHub error response, with GitHub's own reasons in the message."""
    status, headers = response.status_code, response.headers
    message, codes = _reasons(response)
    cause = f"{action} failed: GitHub answered {status}: {message}"
    limited = headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers
    if status == 429 or (status == 403 and (limited or "secondary rate limit" in message.lower())):
        wait = _retry_after(headers, now)
        until = datetime.fromtimestamp(now + wait, timezone.utc)
        return RateLimited(
            f"{cause} (rate limited until {until:%H:%M:%S} UTC)",
            "run again after then; a GitHub App token has a higher limit than a personal one",
            wait,
        )
    if status == 401:
        return AuthError(cause, "check the token (expired, revoked?) or the GitHub App's key and permissions")
    if status == 403:
        needed = headers.get("x-accepted-github-permissions")
        grant = f"the {needed} permission" if needed else "write access to the repository's contents and pull requests"
        return AuthError(cause, f"give the token or GitHub App {grant}")
    if status == 404:
        return NotFound(cause, "check the repository name, and that the token may read it (GitHub hides the rest)")
    if status == 422 and ("already_exists" in codes or "already exists" in message):
        return _AlreadyExists(cause, "look it up instead of creating it")
    if status == 422:
        return InputError(cause, "fix the request as GitHub says")
    if status >= 500:
        return TransientError(cause, "retry; GitHub had a fault")
    return ToolError(cause, "see GitHub's message")


def _reasons(response: httpx.Response) -> tuple[str, set[str]]:
    """GitHub's ``message`` and ``errors[]`` messages as one line, and the ``errors[].code`` values."""
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200] or response.reason_phrase, set()
    if not isinstance(body, dict):
        return str(body)[:200], set()
    errors = [error for error in body.get("errors") or [] if isinstance(error, (dict, str))]
    details = [
        error if isinstance(error, str) else error.get("message") or f"{error.get('field')} {error.get('code')}"
        for error in errors
    ]
    codes = {error.get("code") for error in errors if isinstance(error, dict)}
    return "; ".join([body.get("message") or response.reason_phrase, *details]), {str(code) for code in codes}


def _retry_after(headers: httpx.Headers, now: float) -> float:
    """Seconds to wait: ``Retry-After``, else until ``x-ratelimit-reset`` when no requests are left, else GitHub's
    advised minute (a secondary limit, with requests left). At least a second: the reset is given in whole seconds,
    and an answer of 0 must not make a request spin."""
    if headers.get("retry-after", "").isdigit():
        return max(1.0, float(headers["retry-after"]))
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
        return max(1.0, float(headers["x-ratelimit-reset"]) - now)
    return DEFAULT_RATE_LIMIT_WAIT_SECONDS


def _release(data: Mapping[str, Any], commit: str) -> Release:
    tag = data["tag_name"]
    return Release(tag, commit, data.get("name") or tag, data.get("body") or "", data.get("html_url"))


def _pull_request(data: Mapping[str, Any]) -> PullRequest:
    return PullRequest(
        data["number"], data["head"]["ref"], data["base"]["ref"], data["title"], data.get("html_url"),
        bool(data.get("draft")),
    )
