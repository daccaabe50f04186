"""Verification verdicts, kept in the GitOps repository itself so they outlive any Prefect database.

A verdict says whether the version one GitOps commit deployed into one environment came up (synced and healthy) or
not, and why. It is a record ``refs/promo/verdicts/<app>/<env>/<gitops commit>``: an annotated tag object on that
commit (see ``Mirror.create_record``) whose message is a one-line summary and ``Key: value`` trailers. Argo CD syncs
branches, never ``refs/promo/*``, so recording a verdict changes nothing that is deployed. A verdict is written once:
a run that verifies a commit again (a re-run after a crash) finds the first verdict and keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from promo.gitops.mirror import Mirror

KIND = "verdicts"
VERIFIED, FAILED = "verified", "failed"
# Recorded where an environment has no `verify:`: promo wrote the change; a version soaks from this record's time.
DEPLOYED = "deployed"
_FIELDS = {
    "Verdict": "outcome",
    "App": "app",
    "Environment": "env",
    "Version": "version",
    "Reason": "reason",
    "Checked-At": "checked_at",
    "Checks": "checks",
    "Flow-Run": "flow_run",
}


@dataclass(frozen=True)
class Verdict:
    app: str
    env: str
    version: str
    gitops_commit: str
    verified: bool
    reason: str  # one line: what was seen, naming the cluster and the condition when it failed
    checked_at: datetime  # when the verdict was reached (UTC): a verified version soaks from here
    checks: tuple[str, ...] = ()  # which checks ran: "argocd", "http"
    flow_run: str | None = None
    # False when promo cannot prove it wrote the record (no valid signature, or its fields contradict the commit):
    # shown, never believed. ``untrusted_reason`` says why, in one line.
    trusted: bool = True
    untrusted_reason: str = ""

    @property
    def outcome(self) -> str:
        return VERIFIED if self.verified else FAILED

    def summary(self) -> str:
        return f"{self.outcome}: {self.app} {self.version} in {self.env}: {self.reason}"

    def message(self) -> str:
        values = {
            "outcome": self.outcome,
            "app": self.app,
            "env": self.env,
            "version": self.version,
            "reason": self.reason,
            "checked_at": self.checked_at.astimezone(timezone.utc).isoformat(timespec="seconds"),
            "checks": ",".join(self.checks),
            "flow_run": self.flow_run,
        }
        trailers = [f"{key}: {_one_line(values[name])}" for key, name in _FIELDS.items() if values[name]]
        return f"{_one_line(self.summary())}\n\n" + "\n".join(trailers) + "\n"


def record_name(app: str, env: str, gitops_commit: str) -> str:
    return f"{app}/{env}/{gitops_commit}"


def record_verdict(mirror: Mirror, verdict: Verdict) -> Verdict:
    """Push ``verdict`` unless the commit has one already; the verdict that stands is returned."""
    name = record_name(verdict.app, verdict.env, verdict.gitops_commit)
    if mirror.create_record(KIND, name, verdict.gitops_commit, verdict.message()):
        return verdict
    existing = mirror.records(KIND).get(name)
    return parse_verdict(name, existing.message or "") if existing is not None else verdict


def read_verdicts(mirror: Mirror, app: str, env: str | None = None) -> dict[str, Verdict]:
    """gitops commit -> verdict, for ``app`` (in ``env`` only, when given), as last fetched by the mirror."""
    by_env = read_verdicts_by_env(mirror, app)
    if env is not None:
        return by_env.get(env, {})
    return {commit: verdict for verdicts in by_env.values() for commit, verdict in verdicts.items()}


def read_verdicts_by_env(mirror: Mirror, app: str) -> dict[str, dict[str, Verdict]]:
    """env -> gitops commit -> verdict, for ``app``: one read of the records (a git process) for every environment."""
    by_env: dict[str, dict[str, Verdict]] = {}
    for name, annotation in mirror.records(KIND).items():
        if name.startswith(f"{app}/") and annotation.message is not None:
            verdict = parse_verdict(name, annotation.message)
            by_env.setdefault(name.split("/", 2)[1], {})[verdict.gitops_commit] = verdict
    return by_env


def parse_verdict(name: str, message: str) -> Verdict:
    """The verdict a record holds; ``name`` (``<app>/<env>/<commit>``) says which commit it is about."""
    app, env, commit = name.split("/", 2)
    values = dict(_trailers(message.splitlines()))
    fields = {_FIELDS[key]: value for key, value in values.items() if key in _FIELDS}
    return Verdict(
        app=fields.get("app", app),
        env=fields.get("env", env),
        version=fields.get("version", ""),
        gitops_commit=commit,
        verified=fields.get("outcome") == VERIFIED,
        reason=fields.get("reason", ""),
        checked_at=datetime.fromisoformat(fields["checked_at"]) if "checked_at" in fields else datetime.min.replace(
            tzinfo=timezone.utc
        ),
        checks=tuple(check for check in fields.get("checks", "").split(",") if check),
        flow_run=fields.get("flow_run"),
    )


def _trailers(lines: Iterable[str]) -> Iterable[tuple[str, str]]:
    for line in lines:
        key, separator, value = line.partition(": ")
        if separator and key in _FIELDS:
            yield key, value.strip()


def _one_line(text: str) -> str:
    """A value fit for one trailer line: newlines and runs of spaces collapse, so it cannot forge another key."""
    return " ".join(str(text).split())[:500]
