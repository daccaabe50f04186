"""Argo CD's view of a deployment: a small client for ``GET /api/v1/applications/{name}``, and the assessment of
one Application against the chart version a GitOps commit asked for.

Done means what Kargo and GitOps Promoter mean by it: Argo CD compared the cluster with the wanted chart version and
found it ``Synced``; no sync is in flight and the last one ``Succeeded``; the health was read after that sync finished
(``reconciledAt`` not older than ``operationState.finishedAt``: health from before the sync describes the old pods);
and the Application is ``Healthy``. ``Degraded`` at the wanted version is terminal; everything else is "not yet".

Errors map onto promo's hierarchy: 401/403 AuthError, 404 NotFound, 429/5xx and transport faults TransientError.
The API token goes into the Authorization header only; no message, repr or log line holds it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from promo.config import ArgoCDCheck
from promo.errors import AuthError, ConfigError, NotFound, PromoError, ToolError, TransientError
from promo.registry.oci import shared_tls_context
from promo.verify.observation import Observation

if TYPE_CHECKING:  # the GitHub forge imports PyJWT and cryptography (~50 ms of every flow process's start)
    from promo.forges.github import TokenProvider

TIMEOUT_SECONDS = 30.0

SYNCED, HEALTHY, DEGRADED, SUCCEEDED = "Synced", "Healthy", "Degraded", "Succeeded"
# Conditions that keep an Application from ever reaching the wanted version: worth naming while we wait.
_ERROR_CONDITIONS = ("ComparisonError", "InvalidSpecError", "SyncError")


class ArgoCD:
    """The Applications of one Argo CD instance, read with an API token (or none, where anonymous reads are on)."""

    def __init__(
        self, settings: ArgoCDCheck, token: TokenProvider | None, *, client: httpx.Client | None = None
    ) -> None:
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self._client = client or httpx.Client(
            timeout=TIMEOUT_SECONDS, follow_redirects=True, verify=shared_tls_context()
        )
        self._auth = _OnceBearer(token) if token is not None else None

    def __repr__(self) -> str:
        return f"ArgoCD({self.url!r})"

    def application_name(self, app: str, env: str, cluster: str) -> str:
        """The Application deploying ``app`` in ``env`` on ``cluster``, by the ``application`` template."""
        try:
            return self.settings.application.format(app=app, env=env, cluster=cluster)
        except (KeyError, IndexError, ValueError):
            raise ConfigError(
                f"verify.argocd.application {self.settings.application!r} is not a valid name template",
                "use only {app}, {env} and {cluster}, e.g. {app}-{env}-{cluster}",
            ) from None

    def application(self, name: str, *, refresh: bool = False) -> dict[str, Any]:
        """The Application as Argo CD's API returns it; ``refresh`` asks Argo CD to compare with git now instead of
        at its next poll (every 3 minutes), which is what a caller wants right after a GitOps commit."""
        params = {"appNamespace": self.settings.app_namespace} if self.settings.app_namespace else {}
        if refresh:
            params["refresh"] = "normal"
        url = f"{self.url}/api/v1/applications/{quote(name, safe='')}"
        try:
            response = self._client.get(url, params=params, auth=self._auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.TransportError as exc:
            raise TransientError(
                f"reading Application {name} from Argo CD at {self.url} failed: {type(exc).__name__} {exc}",
                "retry; check the network and verify.argocd.url",
            ) from None
        if response.status_code >= 400:
            raise self._error(response, name)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ToolError(
                f"Argo CD at {self.url} answered for Application {name} with something other than an Application",
                "check verify.argocd.url: Argo CD's base URL, e.g. https://argocd.example.com (without /api)",
            )
        return data

    def close(self) -> None:
        self._client.close()

    def _error(self, response: httpx.Response, name: str) -> PromoError:
        status = response.status_code
        cause = f"Argo CD at {self.url} answered {status} for Application {name}: {_message(response)}"
        if status == 401:
            return AuthError(cause, f"set a valid Argo CD API token {_token_source(self.settings)}")
        if status == 403:  # Argo CD answers 403, not 404, for an Application the account may not see
            return AuthError(
                f"{cause} (no such Application, or the token's account may not read it)",
                f"check verify.argocd.application ({self.settings.application!r}) and grant the account "
                "'applications, get' in Argo CD's RBAC",
            )
        if status == 404:
            namespace = f" in namespace {self.settings.app_namespace}" if self.settings.app_namespace else ""
            return NotFound(
                f"Argo CD at {self.url} has no Application {name!r}{namespace}",
                f"check verify.argocd.application ({self.settings.application!r}) and verify.argocd.app_namespace "
                "in promo.yaml",
            )
        if status == 429 or status >= 500:
            return TransientError(cause, "retry; Argo CD is busy or had a fault")
        return ToolError(cause, "see Argo CD's message")


def assess(application: Mapping[str, Any], version: str) -> Observation:
    """Whether ``application`` (as the API returns it) runs chart ``version``, synced and healthy; pure."""
    status = application.get("status") or {}
    sync = status.get("sync") or {}
    sync_status = sync.get("status") or "Unknown"
    revision = chart_revision(application)
    if sync_status != SYNCED or revision != version:
        seen = f"{sync_status} at {revision or 'no revision'}"
        wanted = f", not yet at {version}" if revision != version else ""
        return Observation.pending(f"{seen}{wanted}{_error_condition(status)}")
    operation = status.get("operationState") or {}
    phase = operation.get("phase") or "not run"
    message = f": {_one_line(operation['message'])}" if operation.get("message") else ""
    if application.get("operation"):  # requested or running: what the cluster runs may still change
        return Observation.pending(f"{SYNCED} at {version}, a sync is in flight ({phase}{message})")
    if phase != SUCCEEDED:
        return Observation.pending(f"{SYNCED} at {version}, last sync {phase}{message}")
    health = (status.get("health") or {}).get("status") or "Unknown"
    finished, reconciled = _time(operation.get("finishedAt")), _time(status.get("reconciledAt"))
    if finished is None or reconciled is None or reconciled < finished:
        return Observation.pending(
            f"{SYNCED} at {version}, health {health} read at {status.get('reconciledAt') or 'no time'}, before the "
            f"sync finished at {operation.get('finishedAt') or 'no time'}: not trusted yet"
        )
    if health == HEALTHY:
        return Observation.healthy(f"{SYNCED} at {version}, {HEALTHY}")
    if health == DEGRADED:
        return Observation.failed(f"{SYNCED} at {version}, health {DEGRADED}{_resource_with_health(status, health)}")
    return Observation.pending(f"{SYNCED} at {version}, health {health}{_resource_with_health(status, health)}")


def chart_revision(application: Mapping[str, Any]) -> str | None:
    """The revision Argo CD compared the chart source at: for a Helm chart, the chart version.

    A multi-source Application reports one revision per ``spec.sources`` entry, in that order; the chart source is
    the entry with a ``chart:`` key (its git sources carry commit hashes, not chart versions).
    """
    spec = application.get("spec") or {}
    sync = (application.get("status") or {}).get("sync") or {}
    sources: Sequence[Mapping[str, Any]] = spec.get("sources") or [spec.get("source") or {}]
    charts = [index for index, source in enumerate(sources) if source.get("chart")]
    if len(charts) != 1:
        name = (application.get("metadata") or {}).get("name", "?")
        raise ConfigError(
            f"Application {name} has {len(charts) or 'no'} chart sources, so promo cannot tell its chart version",
            "point verify.argocd.application at the Application promo writes: one source with a chart: key",
        )
    if not spec.get("sources"):
        return sync.get("revision") or None
    revisions = sync.get("revisions") or []
    return revisions[charts[0]] if charts[0] < len(revisions) else None


class _OnceBearer(httpx.Auth):
    """Reads the token once per client: a verification polls for minutes, and a Secret block costs an API call."""

    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider
        self._token: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._token is None:
            self._token = self._provider.token()
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _token_source(settings: ArgoCDCheck) -> str:
    if settings.token == "secret":
        return f"in the Prefect Secret block {settings.secret_block!r}"
    if settings.token == "env":
        return f"in ${settings.token_env}"
    return "(Argo CD wants one: set verify.argocd.token to env or secret)"


def _message(response: httpx.Response) -> str:
    """Argo CD's own error message (grpc-gateway's ``{"error", "code", "message"}``), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("message") or body.get("error")):
        return _one_line(str(body.get("message") or body.get("error")))
    return _one_line(response.text) or response.reason_phrase


def _error_condition(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") in _ERROR_CONDITIONS:
            return f" ({condition['type']}: {_one_line(condition.get('message') or '')})"
    return ""


def _resource_with_health(status: Mapping[str, Any], health: str) -> str:
    """The first resource in ``health`` with its message, as Argo CD's app-level health carries none of its own."""
    for resource in status.get("resources") or []:
        resource_health = resource.get("health") or {}
        if resource_health.get("status") == health:
            message = f": {_one_line(resource_health['message'])}" if resource_health.get("message") else ""
            return f" ({resource.get('kind')} {resource.get('name')}{message})"
    return ""


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:200]
