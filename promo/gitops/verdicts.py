"""Verification verdicts, kept in the GitOps repository itself so they outlive any Prefect database.

A verdict says whether the version one GitOps commit deployed into one environment came up (synced and healthy) or
not, and why; where an environment has no ``verify:``, a ``deployed`` record says only that promo wrote the commit,
and when (a version soaks from there, not from a committer date anyone can set). It is a record
``refs/promo/verdicts/<app>/<env>/<gitops commit>-<nonce>``: an annotated tag object on that commit (see
``Mirror.create_record``) whose message is a one-line summary and ``Key: value`` trailers, signed (``promo.gitops.
signing``). Argo CD syncs branches, never ``refs/promo/*``, so recording a verdict changes nothing that is deployed.

Nobody's branch protection covers ``refs/promo/*``: anyone who can push can push a record. So a record is believed
only when it proves promo wrote it: a signature by a key in the GitOps branch's allowed-signers file over a payload
naming this very ref (kind, app, environment, commit), and a time no earlier than its commit. Any other record is
returned untrusted (``outcome`` "untrusted", never verified), with a warning, and never stands in for promo's own.

Why a nonce in the name: refs are create-only, and a record's name must not be one someone can claim first. With
``<commit>-<nonce>`` (a sibling, not ``<commit>/<nonce>``: git cannot hold both ``X`` and ``X/1``) a forged record
pushed first, at any name, leaves promo's own record its own ref; readers pick the trusted one. promo writes one
record per commit: a run that verifies a commit again (a re-run after a crash) finds its trusted record and keeps it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from promo.errors import ConfigError, ConflictError, PromoError
from promo.gitops.mirror import Annotation, Mirror
from promo.gitops.signing import (
    ALLOWED_SIGNERS_PATH,
    BadSignature,
    PublicKey,
    SigningKey,
    parse_allowed_signers,
    sign_record,
    signed_content,
)

KIND = "verdicts"
VERIFIED, FAILED = "verified", "failed"
# Recorded where an environment has no `verify:`: promo wrote the change; a version soaks from this record's time.
DEPLOYED = "deployed"
# What a record promo cannot prove it wrote shows as, whatever it claims.
UNTRUSTED = "untrusted"
# How far a record's time may precede its commit's committer time and still count: the commit may be stamped by
# another machine's clock (a forge's merge, a person's laptop) than the worker that records the verdict. Hosts kept by
# NTP agree within a second; five minutes (Kerberos' default tolerance) also covers a VM or laptop that drifted, and
# is far below any soak worth setting, so it cannot shorten a soak in a way that matters.
CLOCK_SKEW = timedelta(minutes=5)
_NONCE_BYTES = 6
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
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)
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
        values = {
            "outcome": self.outcome,
            "app": self.app,
            "env": self.env,
            "version": self.version,
            "reason": self.reason,
            "checked_at": _timestamp(self.checked_at),
            "checks": ",".join(self.checks),
            "flow_run": self.flow_run,
        }
        trailers = [f"{key}: {_one_line(values[name])}" for key, name in _FIELDS.items() if values[name]]
        return f"{_one_line(self.summary())}\n\n" + "\n".join(trailers) + "\n"


def deployed_verdict(
    app: str, env: str, version: str, gitops_commit: str, *, at: datetime, flow_run: str | None = None
) -> Verdict:
    """The record of a write into an environment without ``verify:``: where a version's soak starts."""
    reason = "written by promo; nothing checked (no verify: for this environment)"
    return Verdict(app, env, version, gitops_commit, False, reason, at, flow_run=flow_run, deployed_only=True)


def record_verdict(mirror: Mirror, verdict: Verdict, key: SigningKey) -> Verdict:
    """Push ``verdict``, signed with ``key``, unless promo recorded one for its commit already; the verdict that
    stands is returned, as readers will see it. Untrusted records of the commit (forged, or unsigned ones from before
    records were signed) neither stop the write nor stand. A key the GitOps branch does not list writes nothing."""
    mirror.fetch()
    signers = require_listed(mirror, key)
    standing = _trusted_for(mirror, verdict)
    if standing is not None:
        return standing
    prefix = record_name(verdict.app, verdict.env, verdict.gitops_commit)
    _refuse_blockers(mirror, prefix)
    while True:  # a taken name can only be another writer's nonce: draw again
        name = f"{prefix}-{secrets.token_hex(_NONCE_BYTES)}"
        message = sign_record(key, KIND, name, verdict.gitops_commit, verdict.message())
        if mirror.create_record(KIND, name, verdict.gitops_commit, message):
            break
    # Two runs that raced may both have written: every writer returns, and every reader picks, the first one.
    standing = _trusted_for(mirror, verdict)
    return standing or check_verdict(mirror, name, mirror.records(KIND)[name], signers)


def require_listed(mirror: Mirror, key: SigningKey) -> frozenset[PublicKey]:
    """The signers the GitOps branch lists (as last fetched), when ``key`` is one of them; else a ConfigError: no
    reader would believe what ``key`` signs, so nothing should be checked or written with it."""
    signers = read_signers(mirror)
    if key.public not in signers:
        raise ConfigError(
            f"promo's record signing key {key.public.fingerprint()} is not listed in {ALLOWED_SIGNERS_PATH} on the "
            "GitOps branch, so no reader would believe the records it signs",
            f"run `promo setup` (it lists the key), or add this line to that file: {key.public.allowed_signers_line()}",
        )
    return signers


def read_verdicts(mirror: Mirror, app: str, env: str | None = None) -> dict[str, Verdict]:
    """gitops commit -> verdict, for ``app`` (in ``env`` only, when given), as last fetched by the mirror."""
    by_env = read_verdicts_by_env(mirror, app)
    if env is not None:
        return by_env.get(env, {})
    return {commit: verdict for verdicts in by_env.values() for commit, verdict in verdicts.items()}


def read_verdicts_by_env(mirror: Mirror, app: str) -> dict[str, dict[str, Verdict]]:
    """env -> gitops commit -> verdict, for ``app``: one read of the records (a git process) for every environment.

    Per commit, promo's own (trusted) record when there is one, the first if several; else an untrusted one, marked
    so, for people to see. Each untrusted record is logged as a warning."""
    return read_all_verdicts(mirror, app).get(app, {})


def read_all_verdicts(mirror: Mirror, app: str | None = None) -> dict[str, dict[str, dict[str, Verdict]]]:
    """app -> env -> gitops commit -> verdict, for every app (or ``app`` only), chosen as ``read_verdicts_by_env``
    says."""
    signers = read_signers(mirror)
    found: dict[str, dict[str, dict[str, Verdict]]] = {}
    for name, annotation in sorted(mirror.records(KIND).items()):
        if name.count("/") != 2 or (app is not None and not name.startswith(f"{app}/")):
            continue
        verdict = check_verdict(mirror, name, annotation, signers)
        if not verdict.trusted:
            _log.warning("Ignoring verdict record refs/promo/%s/%s: %s", KIND, name, verdict.untrusted_reason)
        commits = found.setdefault(verdict.app, {}).setdefault(verdict.env, {})  # its ref's, whatever it claims
        current = commits.get(verdict.gitops_commit)
        if current is None or _precedes(verdict, current):
            commits[verdict.gitops_commit] = verdict
    return found


def read_signers(mirror: Mirror) -> frozenset[PublicKey]:
    """The keys whose records promo believes: the allowed-signers file on the GitOps branch, as last fetched."""
    try:
        return parse_allowed_signers(mirror.read_file(mirror.branch or "main", ALLOWED_SIGNERS_PATH))
    except PromoError:  # no branch yet: nothing is signed by anyone promo knows
        return frozenset()


def check_verdict(mirror: Mirror, name: str, annotation: Annotation, signers: frozenset[PublicKey]) -> Verdict:
    """The verdict record ``name`` (``<app>/<env>/<commit>[-<nonce>]``) holds, trusted only when promo can prove it
    wrote it: signed by one of ``signers``, over a payload naming this ref and the commit the ref points at, with
    the name's app and environment, and a time no earlier than its commit (less ``CLOCK_SKEW``)."""
    app, env, rest = name.split("/", 2)
    commit = rest.split("-", 1)[0]
    try:
        content = signed_content(KIND, name, annotation.commit, annotation.message, signers)
    except BadSignature as bad:
        return _untrusted(parse_verdict(name, annotation.message or ""), name, str(bad))
    verdict = parse_verdict(name, content)
    if commit != annotation.commit:
        why = f"the record names commit {commit[:12]} but points at {annotation.commit[:12]}"
        return _untrusted(verdict, name, why)
    if (verdict.app, verdict.env) != (app, env):
        return _untrusted(verdict, name, f"its fields name {verdict.app} in {verdict.env}, its ref {app} in {env}")
    try:
        committed = datetime.fromtimestamp(mirror.commit_time(commit), timezone.utc)
    except PromoError:
        return _untrusted(verdict, name, f"its commit {commit[:12]} is not in the GitOps repository")
    if verdict.checked_at < committed - CLOCK_SKEW:
        when = _timestamp(verdict.checked_at)
        return _untrusted(verdict, name, f"its time {when} predates its commit ({_timestamp(committed)})")
    return verdict


def record_name(app: str, env: str, gitops_commit: str) -> str:
    """The part of a record's name every record of this commit shares; promo's own add ``-<nonce>``."""
    return f"{app}/{env}/{gitops_commit}"


def parse_verdict(name: str, message: str) -> Verdict:
    """The verdict a record's text holds, as it claims it; ``name`` (``<app>/<env>/<commit>[-<nonce>]``) says which
    commit it is about. Whether to believe it is ``check_verdict``'s business."""
    app, env, rest = name.split("/", 2)
    values = dict(_trailers(message.splitlines()))
    fields = {_FIELDS[key]: value for key, value in values.items() if key in _FIELDS}
    try:
        checked_at = datetime.fromisoformat(fields["checked_at"]) if "checked_at" in fields else _EPOCH
    except ValueError:
        checked_at = _EPOCH
    return Verdict(
        app=fields.get("app", app),
        env=fields.get("env", env),
        version=fields.get("version", ""),
        gitops_commit=rest.split("-", 1)[0],
        verified=fields.get("outcome") == VERIFIED,
        reason=fields.get("reason", ""),
        checked_at=checked_at if checked_at.tzinfo else checked_at.replace(tzinfo=timezone.utc),
        checks=tuple(check for check in fields.get("checks", "").split(",") if check),
        flow_run=fields.get("flow_run"),
        deployed_only=fields.get("outcome") == DEPLOYED,
    )


def _refuse_blockers(mirror: Mirror, prefix: str) -> None:
    """A ref where a directory of promo's record names must be (``<app>`` or ``<app>/<env>``: git holds a ref ``X`` or
    refs under ``X/``, never both) blocks every record there; it is no record of promo's, so say how to remove it
    rather than retry a push git will always refuse."""
    app, env, _ = prefix.split("/", 2)
    records = mirror.records(KIND)
    for blocker in (app, f"{app}/{env}"):
        if blocker in records:
            ref = f"refs/promo/{KIND}/{blocker}"
            raise ConflictError(
                f"{ref} in {mirror.display_url} is no record of promo's, and git cannot hold promo's records of "
                f"{app} in {env} beside it",
                f"delete it (git push <remote> :{ref}); see docs/records.md",
            )


def _trusted_for(mirror: Mirror, verdict: Verdict) -> Verdict | None:
    found = read_verdicts(mirror, verdict.app, verdict.env).get(verdict.gitops_commit)
    return found if found is not None and found.trusted else None


def _untrusted(claimed: Verdict, name: str, why: str) -> Verdict:
    """``claimed``, marked untrusted, about the app and environment its ref ``name`` files it under."""
    claim = claimed.outcome
    reason = _one_line(f"{why} (it claims {claim}: {claimed.reason})" if claimed.reason else f"{why} ({claim})")
    app, env, _ = name.split("/", 2)
    return replace(claimed, app=app, env=env, verified=False, trusted=False, untrusted_reason=reason)


def _precedes(candidate: Verdict, current: Verdict) -> bool:
    """Whether ``candidate`` stands before ``current`` for the same commit: promo's own first, then the earliest."""
    if candidate.trusted != current.trusted:
        return candidate.trusted
    return candidate.checked_at < current.checked_at


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _trailers(lines: Iterable[str]) -> Iterable[tuple[str, str]]:
    for line in lines:
        key, separator, value = line.partition(": ")
        if separator and key in _FIELDS:
            yield key, value.strip()


def _one_line(text: str) -> str:
    """A value fit for one trailer line: newlines and runs of spaces collapse, so it cannot forge another key."""
    return " ".join(str(text).split())[:500]
