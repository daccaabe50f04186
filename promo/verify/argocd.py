"""Argo CD's view of a deployment: a small client for ``GET /api/v1/applications/{name}``, and the assessment of
one Application against the chart version a GitOps commit asked for.

Done means what Kargo and GitOps Promoter mean by it: Argo CD compared the cluster with the wanted chart version and
found it ``Synced``; no sync is in flight and the last one ``Succeeded``; the health was read after that sync finished
(``reconciledAt`` not older than ``operationState.finishedAt``: health from before the sync describes the old pods);
and the Application is ``Healthy``. ``Degraded`` at the wanted version is terminal, and so is a sync of the wanted
revision that ended ``Failed`` or ``Error`` (see ``assess``); everything else is "not yet".

The chart source is the one with a ``chart:`` key (a Helm repository, OCI ones included), or a native OCI source
(Argo CD 3.1+: ``repoURL: oci://...`` without ``chart:``), for which Argo CD reports the manifest digest it resolved
the tag to (``sha256:...``) instead of the chart version: that is compared with the digest of the chart promo pushed.

Errors map onto promo's hierarchy: 401/403 AuthError, 404 NotFound, 429/5xx and transport faults TransientError.
The API token goes into the Authorization header only; no message, repr or log line holds it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
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
REFRESH_TIMEOUT_SECONDS = 10.0  # a refresh not answered by then is left to Argo CD (see ArgoCD.application)

SYNCED, HEALTHY, DEGRADED = "Synced", "Healthy", "Degraded"
SUCCEEDED, FAILED, ERROR, RUNNING, TERMINATING = "Succeeded", "Failed", "Error", "Running", "Terminating"  # phases
OCI_SCHEME = "oci://"
# Conditions that keep an Application from ever reaching the wanted version: worth naming while we wait.
_ERROR_CONDITIONS = ("ComparisonError", "InvalidSpecError", "SyncError")


class ArgoCD:
    """The Applications of one Argo CD instance, read with an API token (or none, where anonymous reads are on)."""

    def __init__(
        self,
        settings: ArgoCDCheck,
        token: TokenProvider | None,
        *,
        client: httpx.Client | None = None,
        refresh_timeout: float = REFRESH_TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self._client = client or httpx.Client(
            timeout=TIMEOUT_SECONDS, follow_redirects=True, verify=shared_tls_context()
        )
        self._auth = _OnceBearer(token) if token is not None else None
        self.refresh_timeout = refresh_timeout

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
        at its next poll (every 3 minutes), which is what a caller wants right after a GitOps commit.

        Argo CD answers a refresh only once it has compared, which can take long (a slow repo-server, a big chart).
        A refresh answered within ``refresh_timeout`` is returned; one that is not is left to Argo CD, which has the
        request and carries it out on its own, and the Application is read as it is now instead, so a slow refresh
        holds up one look by ``refresh_timeout`` at most, never the verification."""
        params = {"appNamespace": self.settings.app_namespace} if self.settings.app_namespace else {}
        url = f"{self.url}/api/v1/applications/{quote(name, safe='')}"
        response = None
        if refresh:
            try:
                response = self._get(url, name, {**params, "refresh": "normal"}, timeout=self.refresh_timeout)
            except httpx.ReadTimeout:  # sent and not answered in time: Argo CD has it (a refused connection has not)
                response = None
        if response is None:
            response = self._get(url, name, params)
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

    def _get(
        self, url: str, name: str, params: dict[str, str], *, timeout: float | None = None
    ) -> httpx.Response:
        """One GET; a transport fault is a TransientError, except a read timeout where a ``timeout`` was given."""
        try:
            return self._client.get(
                url, params=params, auth=self._auth or httpx.USE_CLIENT_DEFAULT,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )  # fmt: skip
        except httpx.TransportError as exc:
            if timeout is not None and isinstance(exc, httpx.ReadTimeout):
                raise
            raise TransientError(
                f"reading Application {name} from Argo CD at {self.url} failed: {type(exc).__name__} {exc}",
                "retry; check the network and verify.argocd.url",
            ) from None

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


@dataclass(frozen=True)
class ChartSource:
    """Which of an Application's sources carries the chart, and whether Argo CD reports its revision as a digest."""

    index: int  # in spec.sources; 0 for spec.source
    multi_source: bool
    native_oci: bool  # repoURL oci://, no chart: Argo CD reports the manifest digest (sha256:...), not the version

    def revision(self, record: Mapping[str, Any]) -> str | None:
        """The chart source's revision in a ``revision``/``revisions`` record (status.sync, a syncResult, an
        operation's sync): one ``revision`` for a single source, ``revisions`` in spec.sources order for several."""
        if not self.multi_source:
            return record.get("revision") or None
        revisions = record.get("revisions") or []
        return (revisions[self.index] or None) if self.index < len(revisions) else None


def assess(application: Mapping[str, Any], version: str, chart_digest: str | None = None) -> Observation:
    """Whether ``application`` (as the API returns it) runs chart ``version``, synced and healthy; pure.

    ``chart_digest`` (the manifest digest of the chart promo pushed as ``version``) is needed only for a native OCI
    source, whose revision Argo CD reports as that digest.
    """
    status = application.get("status") or {}
    source = chart_source(application)
    if source.native_oci and not chart_digest:
        return Observation.pending(f"the OCI source reports digests, and the digest of chart {version} is not known")
    wanted = chart_digest if source.native_oci else version
    shown = f"{version} ({_short(wanted)})" if source.native_oci else version
    operation = status.get("operationState") or {}
    phase = operation.get("phase") or ""
    message = f": {_one_line(operation['message'])}" if operation.get("message") else ""
    requested = bool(application.get("operation"))  # set while an operation is requested or running
    # Argo CD writes Failed or Error only once a sync's retries are used up: with retries left it writes Running
    # ("... Retrying attempt #n at ...") and keeps the operation. Nor does its automated sync try a revision whose
    # last attempt failed again. So a Failed/Error sync of the written revision, with no operation requested after
    # it, cannot turn healthy by waiting: it ends the verification at once, with Argo CD's message.
    if not requested and phase in (FAILED, ERROR) and _operated_revision(operation, source) == wanted:
        count = operation.get("retryCount") or 0
        retries = f" after {count} {'retry' if count == 1 else 'retries'}" if count else ""
        return Observation.failed(f"sync to {shown} {phase}{retries}{message or ': no message'}")
    sync = status.get("sync") or {}
    sync_status = sync.get("status") or "Unknown"
    revision = source.revision(sync)
    # The controller moves an operation it picks up to Running; before that, operationState is the last one's.
    in_flight = f", a sync is in flight ({phase}{message})" if phase in (RUNNING, TERMINATING) else ""
    operating = (in_flight or ", sync requested, not started") if requested else ""
    if sync_status != SYNCED or revision != wanted:
        seen = f"{sync_status} at {_short(revision) if revision else 'no revision'}"
        not_yet = f", not yet at {shown}" if revision != wanted else ""
        return Observation.pending(f"{seen}{not_yet}{operating}{_error_condition(status)}")
    if requested:  # what the cluster runs may still change
        return Observation.pending(f"{SYNCED} at {shown}{operating}")
    if phase != SUCCEEDED:
        last = f"last sync {phase}{message}" if phase else "no sync has run yet"
        return Observation.pending(f"{SYNCED} at {shown}, {last}")
    health = (status.get("health") or {}).get("status") or "Unknown"
    finished, reconciled = _time(operation.get("finishedAt")), _time(status.get("reconciledAt"))
    if reconciled is None:
        return Observation.pending(f"{SYNCED} at {shown}, health {health} not trusted yet: no reconciledAt yet")
    if finished is None:
        return Observation.pending(f"{SYNCED} at {shown}, health {health} not trusted yet: the sync has no finishedAt")
    if reconciled < finished:
        return Observation.pending(
            f"{SYNCED} at {shown}, health {health} read at {status['reconciledAt']}, before the sync finished at "
            f"{operation['finishedAt']}: not trusted yet"
        )
    if health == HEALTHY:
        return Observation.healthy(f"{SYNCED} at {shown}, {HEALTHY}")
    if health == DEGRADED:
        return Observation.failed(f"{SYNCED} at {shown}, health {DEGRADED}{_resource_with_health(status, health)}")
    return Observation.pending(f"{SYNCED} at {shown}, health {health}{_resource_with_health(status, health)}")


def chart_source(application: Mapping[str, Any]) -> ChartSource:
    """The chart source: the one with a ``chart:`` key, or a native OCI one (``repoURL: oci://...``, no ``chart:``).

    A multi-source Application reports one revision per ``spec.sources`` entry, in that order; its git sources carry
    commit hashes, never chart versions, so exactly one source must be the chart.
    """
    spec = application.get("spec") or {}
    sources: Sequence[Mapping[str, Any]] = spec.get("sources") or [spec.get("source") or {}]
    charts = [index for index, source in enumerate(sources) if source.get("chart") or is_native_oci(source)]
    if len(charts) != 1:
        name = (application.get("metadata") or {}).get("name", "?")
        raise ConfigError(
            f"Application {name} has {len(charts) or 'no'} chart sources, so promo cannot tell its chart version",
            "point verify.argocd.application at the Application promo writes: one source with a chart: key, "
            "or one native OCI source (repoURL: oci://...)",
        )
    index = charts[0]
    return ChartSource(index, bool(spec.get("sources")), is_native_oci(sources[index]))


def is_native_oci(source: Mapping[str, Any]) -> bool:
    """Argo CD 3.1+'s OCI source: ``repoURL: oci://...`` without ``chart:`` (a Helm repository in an OCI registry
    has a ``chart:`` and its repoURL no scheme)."""
    return str(source.get("repoURL") or "").startswith(OCI_SCHEME) and not source.get("chart")


def chart_revision(application: Mapping[str, Any]) -> str | None:
    """The revision Argo CD compared the chart source at: the chart version, or for a native OCI source the digest."""
    return chart_source(application).revision((application.get("status") or {}).get("sync") or {})


def _operated_revision(operation: Mapping[str, Any], source: ChartSource) -> str | None:
    """The chart revision an operation synced (its ``syncResult``), else the one it was asked to sync: a sync that
    failed before it had a result (an Error in manifest generation) has only the latter."""
    synced = source.revision(operation.get("syncResult") or {})
    return synced or source.revision((operation.get("operation") or {}).get("sync") or {})


def _short(revision: str | None) -> str:
    """A digest as ``sha256:`` and its first 12 hex digits (as ``docker images`` shows one); other revisions whole."""
    if revision and revision.startswith("sha256:") and len(revision) > 19:
        return f"{revision[:19]}..."
    return revision or ""


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
