"""promo's records, kept in the GitOps repository as signed, append-only logs: one log per kind and subject.

A record (a verdict, later a freeze or a rejection) says something about one GitOps commit: ``kind`` (``verdicts``),
``subject`` (``hello/test``: what the kind files it under), ``commit``, ``at`` (when), a one-line ``summary`` and
``fields`` (``Key: value`` trailers). It is one entry of the log ``refs/promo/log/<kind>/<subject>`` (see
``Mirror.append_log``): its text is the summary, the fields, ``At:``, then ``Record:`` (the log's ref) and ``Commit:``,
signed over all of it (``promo.gitops.signing``). Argo CD syncs branches, never ``refs/promo/*``, so recording changes
nothing that is deployed; one ref per log, not per record, so 20,000 records cost a push what 200 refs do.

Nobody's branch protection covers ``refs/promo/*``: anyone who can push can append to a log, or rewrite it. So an entry
is believed only when it proves promo wrote it (``check_entry``): a signature by a key in the GitOps branch's
allowed-signers file, over a text naming this very log and the commit, with a time no earlier than that commit (less
``CLOCK_SKEW``). Any other entry is returned untrusted, with a warning, and never counts; it cannot stop an append
either (the log just goes on past it). Dropping entries takes a forced push, which only ref protection can refuse
(docs/records.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

from promo.errors import ConfigError, PromoError
from promo.gitops.mirror import Mirror, log_ref
from promo.gitops.signing import (
    ALLOWED_SIGNERS_PATH,
    BadSignature,
    PublicKey,
    SigningKey,
    parse_allowed_signers,
    sign_record,
    signed_commit,
    signed_content,
)

AT = "At"
# How far a record's time may precede its commit's committer time and still count: the commit may be stamped by
# another machine's clock (a forge's merge, a person's laptop) than the worker that records. Hosts kept by NTP agree
# within a second; five minutes (Kerberos' default tolerance) also covers a VM or laptop that drifted, and is far below
# any soak worth setting, so it cannot shorten a soak in a way that matters.
CLOCK_SKEW = timedelta(minutes=5)
# Trailers the log itself writes: a record's fields may not use them.
_RESERVED = frozenset({AT, "Record", "Commit", "Record-Signature"})
_EPOCH = datetime.min.replace(tzinfo=timezone.utc)
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    kind: str
    subject: str
    commit: str  # the GitOps commit the record speaks of
    at: datetime  # when it was recorded (UTC)
    summary: str
    fields: Mapping[str, str] = field(default_factory=dict)
    # False when promo cannot prove it wrote the record; ``untrusted_reason`` says why, in one line.
    trusted: bool = True
    untrusted_reason: str = ""
    source: str = ""  # where it was read: the log's ref and the entry, for people

    def message(self) -> str:
        """The record's text before it is signed: its summary line, its fields and its time."""
        if _RESERVED & set(self.fields):
            raise ValueError(f"a record's fields may not be named {sorted(_RESERVED & set(self.fields))}")
        trailers = [f"{key}: {one_line(value)}" for key, value in self.fields.items() if value]
        trailers.append(f"{AT}: {timestamp(self.at)}")
        return f"{one_line(self.summary)}\n\n" + "\n".join(trailers) + "\n"


def append_record(mirror: Mirror, record: Record, key: SigningKey) -> Record:
    """Append ``record``, signed with ``key``, to its log, and return it as readers will see it (checked). Entries
    already in the log, whoever wrote them, never stop it. ``key`` must be listed on the GitOps branch as last
    fetched (``require_listed``): else nothing is written."""
    signers = require_listed(mirror, key)
    ref = log_ref(record.kind, record.subject)
    message = sign_record(key, ref, record.commit, record.message())
    entry = mirror.append_log(record.kind, record.subject, message)
    times = mirror.commit_times([record.commit])
    return check_entry(record.kind, record.subject, ref, message, signers, times, source=f"{ref} entry {entry[:12]}")


def read_records(mirror: Mirror, kind: str, subject: str | None = None, *, under: bool = False) -> list[Record]:
    """The records of ``kind`` (``subject``'s alone, or with ``under`` those of every subject under ``subject/``), as
    the remote has them now, each checked; oldest first within each log, logs by name. An untrusted one is logged as a
    warning and returned marked so (``trusted`` False), for people to see."""
    signers = read_signers(mirror)
    records = []
    prefix = log_ref(kind, "x")[: -len("x")]
    logs = mirror.read_logs(kind, subject, under=under)
    times = mirror.commit_times(signed_commit(entry.message) for entries in logs.values() for entry in entries)
    for ref, entries in logs.items():
        for entry in entries:
            source = f"{ref} entry {entry.id[:12]}"
            about = ref.removeprefix(prefix)
            record = check_entry(kind, about, ref, entry.message, signers, times, source=source)
            if not record.trusted:
                _log.warning("Ignoring record %s: %s", source, record.untrusted_reason)
            records.append(record)
    return records


def check_entry(
    kind: str,
    subject: str,
    ref: str,
    message: str,
    signers: frozenset[PublicKey],
    commit_times: Mapping[str, int],
    *,
    commit: str | None = None,
    time_key: str = AT,
    source: str = "",
) -> Record:
    """The record ``message`` (read at ``ref``) holds, trusted only when promo can prove it wrote it: signed by one of
    ``signers``, over a text naming ``ref`` and its commit (``commit`` when the ref itself names one, as records of
    old did), with a time (``time_key``) no earlier than that commit (``commit_times``, ``Mirror.commit_times``),
    less ``CLOCK_SKEW``."""
    named = commit or signed_commit(message)
    claimed = parse_record(kind, subject, message, time_key=time_key, commit=named, source=source)
    try:
        content = signed_content(ref, named, message, signers)
    except BadSignature as bad:
        return untrusted(claimed, str(bad))
    record = parse_record(kind, subject, content, time_key=time_key, commit=named, source=source)
    if named not in commit_times:
        return untrusted(record, f"its commit {named[:12]} is not in the GitOps repository")
    committed = datetime.fromtimestamp(commit_times[named], timezone.utc)
    if record.at < committed - CLOCK_SKEW:
        return untrusted(record, f"its time {timestamp(record.at)} predates its commit ({timestamp(committed)})")
    return record


def parse_record(
    kind: str, subject: str, message: str, *, time_key: str = AT, commit: str = "", source: str = ""
) -> Record:
    """The record a text holds, as it claims it. Whether to believe it is ``check_entry``'s business."""
    summary, _, body = message.partition("\n")
    fields = dict(trailers(body.splitlines()))
    try:
        at = datetime.fromisoformat(fields.pop(time_key, ""))
    except ValueError:
        at = _EPOCH
    kept = {key: value for key, value in fields.items() if key not in _RESERVED}
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    return Record(kind, subject, commit, at, summary.strip(), kept, source=source)


def untrusted(claimed: Record, why: str) -> Record:
    return replace(claimed, trusted=False, untrusted_reason=one_line(why))


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


def read_signers(mirror: Mirror) -> frozenset[PublicKey]:
    """The keys whose records promo believes: the allowed-signers file on the GitOps branch, as last fetched."""
    try:
        return parse_allowed_signers(mirror.read_file(mirror.branch or "main", ALLOWED_SIGNERS_PATH))
    except PromoError:  # no branch yet: nothing is signed by anyone promo knows
        return frozenset()


def trailers(lines: Iterable[str]) -> Iterable[tuple[str, str]]:
    """The ``Key: value`` lines among ``lines``."""
    for line in lines:
        key, separator, value = line.partition(": ")
        if separator and key and " " not in key:
            yield key, value.strip()


def timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def one_line(text: str) -> str:
    """A value fit for one trailer line: newlines and runs of spaces collapse, so it cannot forge another key."""
    return " ".join(str(text).split())[:500]
