"""Operator controls kept as signed records: freezes of an environment, and rejected versions of an app.

A freeze is an entry of the log ``freezes/<env>`` (``freeze`` with a reason, an optional end and who froze it;
``unfreeze`` with who lifted it); a rejection one of ``rejections/<app>`` (``reject`` or ``unreject`` a version, why
and by whom). Both are records of ``promo.gitops.record_log``: appended, signed, and believed only when promo can
prove it wrote them. The state that counts is the fold of the trusted entries, oldest first; an untrusted entry is
returned, marked so, for people to see, and never counts. A freeze whose ``until`` has passed has ended.

Each record speaks of the GitOps branch's head when it was written (a record must name a commit of the repository,
and its time may not precede it), and is read from the remote every time it is asked for, so a second machine with an
empty cache sees the freeze the first one set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from promo.errors import ConflictError, InputError
from promo.gitops.mirror import Mirror
from promo.gitops.record_log import Record, append_record, read_records, require_listed, timestamp
from promo.gitops.signing import SigningKey

FREEZES, REJECTIONS = "freezes", "rejections"
FREEZE, UNFREEZE, REJECT, UNREJECT = "freeze", "unfreeze", "reject", "unreject"
_ACTIONS = {FREEZES: (FREEZE, UNFREEZE), REJECTIONS: (REJECT, UNREJECT)}
_SUBJECT_FIELD = {FREEZES: "Environment", REJECTIONS: "App"}
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
UNTIL_HELP = "ISO 8601 (2026-12-24T18:00+01:00; UTC when it has no offset) or a duration from now: 90m, 2h, 1d"


@dataclass(frozen=True)
class ControlEntry:
    """One entry of a freeze or rejection log, as it claims it; ``trusted`` False (and ``untrusted_reason``) when
    promo cannot prove it wrote it."""

    kind: str  # FREEZES or REJECTIONS
    subject: str  # the environment, or the app
    action: str  # FREEZE, UNFREEZE, REJECT, UNREJECT
    by: str
    reason: str
    at: datetime
    until: datetime | None = None  # a freeze's end, when it has one
    version: str = ""  # a rejection's version
    trusted: bool = True
    untrusted_reason: str = ""

    def line(self) -> str:
        """``freeze of test by alice until ...: release week`` (``untrusted: ...`` first, when it is)."""
        what = f"{self.action} {self.version}" if self.version else f"{self.action} of {self.subject}"
        until = f" until {timestamp(self.until)}" if self.until else ""
        reason = f": {self.reason}" if self.reason else ""
        text = f"{what} by {self.by or 'nobody named'} at {timestamp(self.at)}{until}{reason}"
        return f"untrusted ({self.untrusted_reason}): {text}" if not self.trusted else text


@dataclass(frozen=True)
class Freeze:
    env: str
    by: str
    reason: str
    since: datetime
    until: datetime | None

    def line(self) -> str:
        """``test is frozen by alice until 2026-12-07T18:00:00+00:00: release week``."""
        until = f"until {timestamp(self.until)}" if self.until else "until unfrozen"
        return f"{self.env} is frozen by {self.by} {until}: {self.reason}"

    def refusal(self, app: str) -> ConflictError:
        return ConflictError(
            f"{self.line()}, so {app} does not move there",
            f"wait, or `promo unfreeze {self.env}`; an approver may pass it at the gate with --override-reason",
        )


@dataclass(frozen=True)
class Rejection:
    app: str
    version: str
    by: str
    reason: str
    at: datetime

    def line(self) -> str:
        return f"{self.version} was rejected by {self.by}: {self.reason}"

    def refusal(self) -> ConflictError:
        return ConflictError(
            f"{self.app} {self.line()}", f"choose another version, or `promo unreject {self.version} --reason TEXT`"
        )


def record_control(
    mirror: Mirror,
    kind: str,
    subject: str,
    action: str,
    key: SigningKey,
    *,
    by: str,
    reason: str = "",
    until: datetime | None = None,
    version: str = "",
    at: datetime | None = None,
) -> ControlEntry:
    """Append one signed entry to the log of ``kind`` about ``subject``, about the GitOps branch's head as fetched
    now; a key the branch does not list writes nothing."""
    if action not in _ACTIONS[kind]:
        raise ValueError(f"{kind} records no {action!r}")
    if not by.strip():
        raise InputError(f"a {action} needs a name", "give one with --as NAME (default: the current user)")
    mirror.fetch()
    require_listed(mirror, key)
    fields = {
        "Action": action,
        _SUBJECT_FIELD[kind]: subject,
        "Version": version,
        "Reason": reason,
        "Until": timestamp(until) if until else "",
        "By": by,
    }
    entry = ControlEntry(kind, subject, action, by, reason, at or datetime.now(UTC), until, version)
    head = mirror.resolve(mirror.branch or "main")
    written = append_record(mirror, Record(kind, subject, head, entry.at, entry.line(), fields), key)
    return _entry(written)


def read_controls(mirror: Mirror, kind: str, subject: str | None = None) -> list[ControlEntry]:
    """The entries of ``kind`` (about ``subject``, or every subject's), as the remote has them now: in log order,
    oldest first (never by the time an entry claims: an unsigned one may claim any)."""
    return [_entry(record) for record in read_records(mirror, kind, subject) if "/" not in record.subject]


def current_freezes(entries: Sequence[ControlEntry], now: datetime) -> dict[str, Freeze]:
    """env -> its freeze now; a freeze whose end passed is over."""
    standing = _fold(entries, FREEZES, lambda entry: entry.subject)
    frozen = {env: Freeze(env, e.by, e.reason, e.at, e.until) for env, e in standing.items()}
    return {env: freeze for env, freeze in frozen.items() if freeze.until is None or freeze.until > now}


def current_rejections(entries: Sequence[ControlEntry]) -> dict[str, Rejection]:
    """version -> its rejection."""
    standing = _fold(entries, REJECTIONS, lambda entry: entry.version)
    return {version: Rejection(e.subject, version, e.by, e.reason, e.at) for version, e in standing.items()}


def _fold(entries: Sequence[ControlEntry], kind: str, key: Callable[[ControlEntry], str]) -> dict[str, ControlEntry]:
    """key -> the entry that stands: the fold of the trusted entries of ``kind``, oldest first, where a freeze or a
    rejection sets and an unfreeze or an unreject clears. Untrusted entries never count."""
    standing: dict[str, ControlEntry] = {}
    setting, _ = _ACTIONS[kind]
    for entry in entries:
        if not entry.trusted or entry.kind != kind:
            continue
        if entry.action == setting:
            standing[key(entry)] = entry
        else:
            standing.pop(key(entry), None)
    return standing


def read_freeze(mirror: Mirror, env: str, now: datetime) -> Freeze | None:
    return current_freezes(read_controls(mirror, FREEZES, env), now).get(env)


def read_rejections(mirror: Mirror, app: str) -> dict[str, Rejection]:
    return current_rejections(read_controls(mirror, REJECTIONS, app))


def check_not_rejected(rejections: dict[str, Rejection], *versions: str) -> None:
    """Refuse, in one line naming who rejected it and why, the first of ``versions`` that is rejected."""
    for version in versions:
        if version in rejections:
            raise rejections[version].refusal()


def parse_until(text: str, now: datetime) -> datetime:
    """``--until``: an ISO 8601 time (UTC when it names no offset) or a duration from ``now`` (``90m``, ``2h``,
    ``1d``, ``1h30m``); it must lie in the future."""
    spec = text.strip()
    parts = _DURATION.findall(spec)
    if parts and "".join(f"{number}{unit}" for number, unit in parts) == spec:
        until = now + sum((timedelta(**{_UNITS[unit]: int(number)}) for number, unit in parts), timedelta())
    else:
        try:
            until = datetime.fromisoformat(spec)
        except ValueError:
            raise InputError(f"--until {text!r} is no time", f"give {UNTIL_HELP}") from None
        until = until if until.tzinfo else until.replace(tzinfo=UTC)
    if until <= now:
        passed = f"--until {text!r} has passed already ({timestamp(until)})"
        raise InputError(passed, f"give a later time: {UNTIL_HELP}")
    return until.astimezone(UTC)


def _entry(record: Record) -> ControlEntry:
    """The entry ``record`` holds, untrusted unless the record is and its fields name the subject it is filed
    under (a signed entry copied into another log would otherwise freeze another environment)."""
    fields = record.fields
    try:
        until = datetime.fromisoformat(fields["Until"]) if fields.get("Until") else None
    except ValueError:
        until = None
    entry = ControlEntry(
        kind=record.kind,
        subject=record.subject,
        action=fields.get("Action", ""),
        by=fields.get("By", ""),
        reason=fields.get("Reason", ""),
        at=record.at,
        until=until,
        version=fields.get("Version", ""),
        trusted=record.trusted,
        untrusted_reason=record.untrusted_reason,
    )
    named = fields.get(_SUBJECT_FIELD[record.kind], "")
    if entry.trusted and (named != record.subject or entry.action not in _ACTIONS[record.kind]):
        why = f"its fields say {entry.action or 'nothing'} of {named or 'nothing'}, filed under {record.subject}"
        return replace(entry, trusted=False, untrusted_reason=why)
    return entry
