"""Verification verdicts, kept in the GitOps repository itself so they outlive any Prefect database.

A verdict says whether the version one GitOps commit deployed into one environment came up (synced and healthy) or
not, and why; where an environment has no ``verify:``, a ``deployed`` record says only that promo wrote the commit,
and when (a version soaks from there, not from a committer date anyone can set). Verdicts are records of kind
``verdicts`` in the log of their app and environment (``refs/promo/log/verdicts/<app>/<env>``, ``promo.gitops.
record_log``): signed, appended, and believed only when promo can prove it wrote them. Any other is returned untrusted
(``outcome`` "untrusted", never verified), with a warning, and never stands in for promo's own.

Records of old, one ref each (``refs/promo/verdicts/<app>/<env>/<commit>-<nonce>``: an annotated tag on the commit),
are still read, and checked the same way, so existing installs keep their history; promo writes none any more.
promo writes one verdict per commit: a run that verifies a commit again (a re-run after a crash) finds its trusted
verdict and keeps it; of two runs that raced, the first entry in the log stands.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from promo.gitops.mirror import Mirror
from promo.gitops.record_log import (
    Record,
    append_record,
    check_entry,
    read_records,
    read_signers,
    untrusted,
)
from promo.gitops.record_log import require_listed as require_listed  # the tasks check the key before the checks
from promo.gitops.signing import PublicKey, SigningKey

KIND = "verdicts"
VERIFIED, FAILED = "verified", "failed"
# Recorded where an environment has no `verify:`: promo wrote the change; a version soaks from this record's time.
DEPLOYED = "deployed"
# What a record promo cannot prove it wrote shows as, whatever it claims.
UNTRUSTED = "untrusted"
_FIELDS = {
    "Verdict": "outcome",
    "App": "app",
    "Environment": "env",
    "Version": "version",
    "Reason": "reason",
    "Checks": "checks",
    "Flow-Run": "flow_run",
}
_LEGACY_TIME = "Checked-At"  # what records of old, one ref each, called their time
_log = logging.getLogger(__name__)


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
    # shown, never believed. ``untrusted_reason`` says why, in one line. An untrusted verdict is never ``verified``.
    trusted: bool = True
    untrusted_reason: str = ""
    # A DEPLOYED record: promo wrote the commit into an environment without ``verify:``; nothing was checked, and
    # ``checked_at`` is when the write landed.
    deployed_only: bool = False

    @property
    def outcome(self) -> str:
        if not self.trusted:
            return UNTRUSTED
        if self.deployed_only:
            return DEPLOYED
        return VERIFIED if self.verified else FAILED

    def summary(self) -> str:
        if not self.trusted:
            return f"{UNTRUSTED}: {self.app} {self.version} in {self.env}: {self.untrusted_reason}"
        return f"{self.outcome}: {self.app} {self.version} in {self.env}: {self.reason}"

    def message(self) -> str:
        """The record's text before it is signed: a summary line and trailers."""
        return _record(self).message()


def deployed_verdict(
    app: str, env: str, version: str, gitops_commit: str, *, at: datetime, flow_run: str | None = None
) -> Verdict:
    """The record of a write into an environment without ``verify:``: where a version's soak starts."""
    reason = "written by promo; nothing checked (no verify: for this environment)"
    return Verdict(app, env, version, gitops_commit, False, reason, at, flow_run=flow_run, deployed_only=True)


def record_verdict(mirror: Mirror, verdict: Verdict, key: SigningKey) -> Verdict:
    """Append ``verdict``, signed with ``key``, to its log unless promo recorded one for its commit already; the
    verdict that stands is returned, as readers will see it. Untrusted records of the commit (forged, or unsigned ones
    from before records were signed) neither stop the write nor stand. A key the GitOps branch does not list writes
    nothing."""
    mirror.fetch()
    require_listed(mirror, key)
    standing = _trusted_for(mirror, verdict)
    if standing is not None:
        return standing
    appended = _verdict(append_record(mirror, _record(verdict), key))
    # Two runs that raced may both have appended: every writer returns, and every reader picks, the first entry.
    return _trusted_for(mirror, verdict) or appended


def read_verdicts(mirror: Mirror, app: str, env: str | None = None) -> dict[str, Verdict]:
    """gitops commit -> verdict, for ``app`` (in ``env`` only, when given), as the remote has them now."""
    if env is not None:
        return _choose(_read(mirror, app, env)).get(app, {}).get(env, {})
    by_env = read_verdicts_by_env(mirror, app)
    return {commit: verdict for verdicts in by_env.values() for commit, verdict in verdicts.items()}


def read_verdicts_by_env(mirror: Mirror, app: str) -> dict[str, dict[str, Verdict]]:
    """env -> gitops commit -> verdict, for ``app``: its logs (and records of old) read once for every environment.

    Per commit, promo's own (trusted) verdict when there is one, the first if several; else an untrusted one, marked
    so, for people to see. Each untrusted record is logged as a warning."""
    return read_all_verdicts(mirror, app).get(app, {})


def read_all_verdicts(mirror: Mirror, app: str | None = None) -> dict[str, dict[str, dict[str, Verdict]]]:
    """app -> env -> gitops commit -> verdict, for every app (or ``app`` only), chosen as ``read_verdicts_by_env``
    says."""
    return _choose(_read(mirror, app))


def _read(mirror: Mirror, app: str | None, env: str | None = None) -> list[Verdict]:
    """Every verdict of ``app`` (every app's when None; in ``env`` only, when given): records of old first, then the
    logs' entries, oldest first."""
    subject = None if app is None else app if env is None else f"{app}/{env}"
    legacy = _read_legacy(mirror, "" if subject is None else f"{subject}/")
    logged = read_records(mirror, KIND, subject, under=env is None and app is not None)
    return [*legacy, *(_verdict(record) for record in logged if record.subject.count("/") == 1)]


def _choose(verdicts: list[Verdict]) -> dict[str, dict[str, dict[str, Verdict]]]:
    """Per app, env and commit: the first trusted verdict, else the first untrusted one."""
    found: dict[str, dict[str, dict[str, Verdict]]] = {}
    for verdict in verdicts:
        commits = found.setdefault(verdict.app, {}).setdefault(verdict.env, {})
        current = commits.get(verdict.gitops_commit)
        if current is None or (verdict.trusted and not current.trusted):
            commits[verdict.gitops_commit] = verdict
    return found


def _read_legacy(mirror: Mirror, prefix: str) -> list[Verdict]:
    """The records of old (``refs/promo/verdicts/<app>/<env>/<commit>[-<nonce>]``) whose name starts with ``prefix``,
    each checked as a log entry is (the ref names the commit, and the time was ``Checked-At``), earliest first."""
    signers = read_signers(mirror)
    records = {name: annotation for name, annotation in mirror.records(KIND, prefix).items() if name.count("/") == 2}
    times = mirror.commit_times(annotation.commit for annotation in records.values()) if records else {}
    verdicts = []
    for name, annotation in sorted(records.items()):
        verdict = _legacy_verdict(name, annotation.commit, annotation.message or "", signers, times)
        if not verdict.trusted:
            _log.warning("Ignoring verdict record refs/promo/%s/%s: %s", KIND, name, verdict.untrusted_reason)
        verdicts.append(verdict)
    return sorted(verdicts, key=lambda verdict: verdict.checked_at)


def _legacy_verdict(
    name: str, target: str, message: str, signers: frozenset[PublicKey], times: Mapping[str, int]
) -> Verdict:
    app, env, rest = name.split("/", 2)
    commit, ref = rest.split("-", 1)[0], f"refs/promo/{KIND}/{name}"
    subject = f"{app}/{env}"
    record = check_entry(KIND, subject, ref, message, signers, times, commit=target, time_key=_LEGACY_TIME, source=ref)
    if record.trusted and commit != target:
        record = untrusted(record, f"the record names commit {commit[:12]} but points at {target[:12]}")
    return _verdict(replace(record, commit=commit))


def _record(verdict: Verdict) -> Record:
    values = {
        "outcome": verdict.outcome,
        "app": verdict.app,
        "env": verdict.env,
        "version": verdict.version,
        "reason": verdict.reason,
        "checks": ",".join(verdict.checks),
        "flow_run": verdict.flow_run or "",
    }
    fields = {key: values[name] for key, name in _FIELDS.items()}
    subject = f"{verdict.app}/{verdict.env}"
    return Record(KIND, subject, verdict.gitops_commit, verdict.checked_at, verdict.summary(), fields)


def _verdict(record: Record) -> Verdict:
    """The verdict ``record`` holds, about the app and environment its log (or ref) files it under, whatever it
    claims; untrusted unless the record is, and names that app and environment itself."""
    app, env = record.subject.split("/", 1)
    fields = {name: record.fields.get(key, "") for key, name in _FIELDS.items()}
    verdict = Verdict(
        app=app,
        env=env,
        version=fields["version"],
        gitops_commit=record.commit,
        verified=fields["outcome"] == VERIFIED and record.trusted,
        reason=fields["reason"],
        checked_at=record.at,
        checks=tuple(check for check in fields["checks"].split(",") if check),
        flow_run=fields["flow_run"] or None,
        deployed_only=fields["outcome"] == DEPLOYED,
    )
    why = record.untrusted_reason
    if record.trusted and (fields["app"], fields["env"]) != (app, env):
        why = f"its fields name {fields['app']} in {fields['env']}, where it is filed {app} in {env}"
    if not why:
        return verdict
    claim = fields["outcome"] or "no verdict"
    reason = f"{why} (it claims {claim}: {verdict.reason})" if verdict.reason else f"{why} ({claim})"
    return replace(verdict, verified=False, trusted=False, untrusted_reason=" ".join(reason.split())[:500])


def _trusted_for(mirror: Mirror, verdict: Verdict) -> Verdict | None:
    found = read_verdicts(mirror, verdict.app, verdict.env).get(verdict.gitops_commit)
    return found if found is not None and found.trusted else None
