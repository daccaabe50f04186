"""Gates waiting in Prefect, listed and answered over the server's REST API: no Prefect import.

`promo pending` and `promo approve` run no flow, so they must not pay for Prefect's engine (about a second of CPU
to import). The gate itself (flows/gate.py) opens the form and checks the answer inside the run; this side only
finds waiting gates and hands the server a decision. The server validates the answer against the form's JSON schema
(the decision is required, the approver must hold a name and be on the allow-list, an override reason where the
version is not ready or replaces a newer build), and the run checks it again after resuming, so nothing here can
pass a gate on its own.
"""

from __future__ import annotations

import base64
import os
import random
import ssl
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar
from uuid import UUID

import httpx

from promo.errors import ApprovalRejected, InputError, NotFound, PromoError, ToolError, TransientError
from promo.release.approvals import Decision
from promo.versions import version_rank

GATE_TAG = "promo-gate"  # every run waiting at a promo gate carries it (see flows/gate.py's gate_tags)
GATE_KEY_PREFIX = "approve-"  # a gate's pause key: approve-<target env>-<attempt> (see flows/gate.py's gate_key)
# On a run whose approval was not carried out because the target moved after its gate opened: the failure message
# says so (deployments/notify.py), besides the run's log and its gate artifact.
NOT_APPLIED_TAG = "approval:not-applied"
TIMEOUT_SECONDS = 30.0  # a loaded SQLite-backed server can take seconds per write; bounded all the same
ATTEMPTS = 6  # with the backoff below, about 15 s of a server that stays busy
RETRIED_STATUSES = {429, 502, 503, 504}
# Prefect sets a run Paused, then saves its form: a gate just listed may have no form for a moment, which the server
# answers "Run input schema not found". The resume is sent again until the form is there, for at most this long.
FORM_APPEARS_WITHIN_SECONDS = 30.0
MAX_GATES = 200  # the API's page size; more open gates than that is a backlog no table helps with


@dataclass(frozen=True)
class WaitingGate:
    flow_run_id: UUID
    flow_run_name: str
    flow_name: str
    app: str
    env: str
    version: str
    waiting_since: datetime | None
    url: str


@dataclass(frozen=True)
class PrefectApi:
    """Where the Prefect server's API is, and what to send it: the same settings Prefect's own client reads."""

    url: str  # ends in /api
    ui_url: str
    headers: Mapping[str, str]

    @classmethod
    def from_environment(cls) -> PrefectApi:
        """``PREFECT_API_URL`` as the environment, the local ``promo server`` (the CLI puts its URL in the
        environment before any command) or the active Prefect profile give it. A process that has loaded Prefect's
        settings already (a flow, a test's temporary server) has chosen its server: that one is asked."""
        settings = _prefect_settings_if_loaded()
        if settings is not None:
            url, ui_url = settings.PREFECT_API_URL.value(), settings.PREFECT_UI_URL.value()
            key, auth = settings.PREFECT_API_KEY.value(), settings.PREFECT_API_AUTH_STRING.value()
            key, auth = (secret.get_secret_value() if secret else None for secret in (key, auth))
        else:
            setting = _setting_reader()
            url, ui_url = setting("PREFECT_API_URL"), setting("PREFECT_UI_URL")
            key, auth = setting("PREFECT_API_KEY"), setting("PREFECT_API_AUTH_STRING")
        if not url:
            raise ToolError(
                "no Prefect server to ask about gates (PREFECT_API_URL is not set and no local server runs)",
                "run `promo server start`, or set PREFECT_API_URL to the server the promotions run on",
            )
        url = str(url).rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if auth and not key:
            headers = {"Authorization": f"Basic {base64.b64encode(str(auth).encode()).decode()}"}
        return cls(url=url, ui_url=str(ui_url or url.removesuffix("/api")).rstrip("/"), headers=headers)

    def client(self) -> httpx.Client:
        headers = dict(self.headers)
        return httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT_SECONDS, verify=_tls(self.url))

    def call(self, client: httpx.Client, method: str, path: str, body: object = None) -> Any:
        """One request; an unreachable or failing server is one line naming the server and the fix.

        A busy SQLite-backed server answers 503 ("database is locked") and rolls the write back: such answers, and
        connections that failed, are tried again a few times, as Prefect's own client does."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = client.request(method, path, json=body)
            except httpx.TransportError as error:
                if attempt < ATTEMPTS:
                    time.sleep(_backoff(attempt))
                    continue
                raise TransientError(
                    f"the Prefect API at {self.url} did not answer ({type(error).__name__})",
                    "check that the server runs (`promo server status`) or that PREFECT_API_URL names it; "
                    "then try again",
                ) from None
            if response.status_code in RETRIED_STATUSES and attempt < ATTEMPTS:
                time.sleep(_backoff(attempt, response.headers.get("Retry-After")))
                continue
            return self._answer(response, method, path)
        raise AssertionError("unreachable")

    def _answer(self, response: httpx.Response, method: str, path: str) -> Any:
        if response.status_code == 404:
            raise NotFound(f"the Prefect API at {self.url} knows no {path}", "run `promo pending` to see open gates")
        if response.status_code in (401, 403):
            raise ToolError(
                f"the Prefect API at {self.url} refused promo (HTTP {response.status_code})",
                "set PREFECT_API_KEY or PREFECT_API_AUTH_STRING for this server",
            )
        if response.is_error:
            raise TransientError(
                f"the Prefect API at {self.url} answered HTTP {response.status_code} to {method} {path}",
                "try again; if it persists read the server's log",
            )
        return response.json() if response.content else None  # 204 (POST /events) has no body


def waiting_gates(
    *, app: str | None = None, env: str | None = None, api: PrefectApi | None = None
) -> list[WaitingGate]:
    """Gates waiting for a decision, oldest first: paused or suspended runs carrying the gate tags."""
    api = api or PrefectApi.from_environment()
    tags = [GATE_TAG, *([f"app:{app}"] if app else []), *([f"env:{env}"] if env else [])]
    query = {
        "flow_runs": {"tags": {"all_": tags}, "state": {"type": {"any_": ["PAUSED"]}}},
        "sort": "START_TIME_ASC",
        "limit": MAX_GATES,
    }
    with api.client() as client:
        runs = api.call(client, "POST", "/flow_runs/filter", query)
        flow_ids = sorted({run["flow_id"] for run in runs})
        flows = api.call(client, "POST", "/flows/filter", {"flows": {"id": {"any_": flow_ids}}}) if runs else []
    flow_names = {flow["id"]: flow["name"] for flow in flows}
    return [_as_gate(api, run, flow_names.get(run["flow_id"], "?")) for run in runs]


class _Versioned(Protocol):
    @property
    def version(self) -> str: ...


Gate = TypeVar("Gate", bound=_Versioned)


def superseded_gates(gates: list[Gate], landed: str) -> list[Gate]:
    """The gates ``landed`` supersedes, its version having landed in their environment: those that would move a
    version other than it and not newer (promo/versions.py's order; RCs of one base rank equal). A gate for a newer
    version stays, as does one whose version tag cannot be read (it is no gate promo opened)."""
    return [
        gate
        for gate in gates
        if gate.version != landed and _is_version(gate.version) and version_rank(gate.version) <= version_rank(landed)
    ]


def _is_version(text: str) -> bool:
    try:
        version_rank(text)
    except InputError:
        return False
    return True


def decide(gate: WaitingGate, decision: Decision, *, api: PrefectApi | None = None) -> None:
    """Resume a waiting gate with a decision, after checking the run is still that gate.

    The server accepts a resume of any paused run, and one without a form with no input at all: so the run must
    still be paused at a promo gate into the gate's environment, with a form. Its refusal of the answer comes back
    as HTTP 200 with status REJECT, which becomes an error here."""
    api = api or PrefectApi.from_environment()
    deadline = time.monotonic() + FORM_APPEARS_WITHIN_SECONDS
    with api.client() as client:
        _check_still_waiting(gate, api.call(client, "GET", f"/flow_runs/{gate.flow_run_id}"))
        answer = {"run_input": approval_answer(decision)}
        while True:
            result = api.call(client, "POST", f"/flow_runs/{gate.flow_run_id}/resume", answer)
            status, reason = result.get("status"), (result.get("details") or {}).get("reason") or ""
            opening = status == "REJECT" and _FORM_NOT_SAVED_YET in reason
            if not opening or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    if opening:
        raise TransientError(
            f"the gate of flow run {gate.flow_run_id} has shown no form for {FORM_APPEARS_WITHIN_SECONDS:.0f} s "
            "since it paused",
            "try again; if it persists read the run's logs",
        )
    if status == "ACCEPT":
        return
    if status == "ABORT":  # it stopped waiting between the check and the resume
        raise _no_longer_waiting(gate)
    if status == "REJECT" and (result.get("state") or {}).get("type") == "FAILED":
        raise ApprovalRejected(f"the gate of flow run {gate.flow_run_id} timed out", "start the promotion again")
    if status == "REJECT":
        raise _refused(gate, reason.removeprefix("Reason: "))
    raise TransientError(
        f"the Prefect server did not resume flow run {gate.flow_run_id} ({status}: {reason})", "try again"
    )


_FORM_NOT_SAVED_YET = "Run input schema not found"


def approval_answer(decision: Decision) -> dict[str, str]:
    """The form's fields (flows/gate.py's ``Approval``), exactly: the server forbids any other."""
    return {
        "decision": "approve" if decision.approved else "reject",
        "approver": decision.approver,
        "comment": decision.comment,
        "override_reason": decision.override_reason,
    }


def _refused(gate: WaitingGate, reason: str) -> InputError:
    """The server names the field it refused (``Validation failed for field 'override_reason'``); only a gate whose
    form requires an override reason (the version is not ready, or replaces a newer build) is told to give one."""
    if "'override_reason'" in reason:
        return InputError(
            f"the gate refused this answer: {gate.app} {gate.version} into {gate.env} needs an override reason "
            "(it is not ready, or replaces a newer build: its page says which)",
            "give --override-reason TEXT and try again",
        )
    return InputError(f"the gate refused this answer: {reason}", "check the approver name and try again")


def _check_still_waiting(gate: WaitingGate, run: Mapping[str, Any]) -> None:
    state = run.get("state") or {}
    if state.get("type") != "PAUSED":
        raise _no_longer_waiting(gate)
    details = state.get("state_details") or {}
    key = details.get("pause_key") or ""
    if GATE_TAG not in (run.get("tags") or []) or not details.get("run_input_keyset"):
        raise InputError(
            f"flow run {gate.flow_run_id} is not waiting at a promo gate", "run `promo pending` to see open gates"
        )
    if not key.startswith(f"{GATE_KEY_PREFIX}{gate.env}-"):
        raise InputError(
            f"flow run {gate.flow_run_id} waits at a gate other than the one into {gate.env}",
            "run `promo pending` and name the gate again",
        )


def _no_longer_waiting(gate: WaitingGate) -> PromoError:
    return NotFound(
        f"flow run {gate.flow_run_id} is no longer waiting at a gate", "run `promo pending` to see open gates"
    )


def _as_gate(api: PrefectApi, run: Mapping[str, Any], flow_name: str) -> WaitingGate:
    labels = dict(tag.split(":", 1) for tag in run.get("tags") or [] if ":" in tag)
    since = (run.get("state") or {}).get("timestamp")
    return WaitingGate(
        flow_run_id=UUID(run["id"]),
        flow_run_name=run["name"],
        flow_name=flow_name,
        app=labels.get("app", "?"),
        env=labels.get("env", "?"),
        version=labels.get("version", "?"),
        waiting_since=datetime.fromisoformat(since) if since else None,
        url=f"{api.ui_url}/runs/flow-run/{run['id']}",
    )


def _backoff(attempt: int, retry_after: str | None = None) -> float:
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), 10.0)
    return min(0.5 * 2 ** (attempt - 1), 4.0) * random.uniform(0.8, 1.2)


def _prefect_settings_if_loaded() -> Any:
    return sys.modules.get("prefect.settings")


def _setting_reader() -> Callable[[str], str | None]:
    """A Prefect setting from the environment, else from the active profile of PREFECT_HOME/profiles.toml."""
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    try:
        profiles = tomllib.loads((home / "profiles.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        profiles = {}
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    profile = (profiles.get("profiles") or {}).get(active) or {}
    return lambda name: os.environ.get(name) or profile.get(name)


def _tls(url: str) -> ssl.SSLContext:
    """The shared verified TLS context for an https server. For http a context that trusts nothing: httpx would
    otherwise load the CA bundle (~80 ms of a command) for a connection that never uses it."""
    if not url.startswith("https:"):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    from promo.registry.oci import shared_tls_context

    return shared_tls_context()
