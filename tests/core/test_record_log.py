"""Record logs: one ref per (kind, subject), appended to by fast-forward pushes. A concurrent append is retried on the
new tip and both entries survive; an entry anyone appended by hand is untrusted and does not stop the log; any kind
and subject work the same way. Real git remotes on disk."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from promo.gitops.mirror import Mirror, _record_log
from promo.gitops.record_log import Record, append_record, read_records
from tests.fixtures.gitrepos import RECORD_SIGNER, GitRemote

FREEZES = "refs/promo/log/freezes/prod"


def a_freeze(commit: str, reason: str) -> Record:
    at = datetime.now(timezone.utc).replace(microsecond=0)
    return Record("freezes", "prod", commit, at, f"frozen: prod: {reason}", {"Environment": "prod", "Reason": reason})


def test_any_kind_and_subject_round_trips_oldest_first(gitops_remote: GitRemote, tmp_path: Path) -> None:
    commit = gitops_remote.head()
    mirror = Mirror.open(gitops_remote.url, tmp_path / "cache", branch="main")
    mirror.fetch()
    first = append_record(mirror, a_freeze(commit, "release week"), RECORD_SIGNER)
    second = append_record(mirror, a_freeze(commit, "incident 42"), RECORD_SIGNER)
    assert first.trusted and second.trusted

    reader = Mirror.open(gitops_remote.url, tmp_path / "reader", branch="main")
    reader.fetch()
    found = read_records(reader, "freezes", "prod")
    assert [(record.fields["Reason"], record.trusted) for record in found] == [
        ("release week", True),
        ("incident 42", True),
    ]
    assert found == [first, second]
    assert [record.summary for record in read_records(reader, "freezes")] == [first.summary, second.summary]
    assert read_records(reader, "rejections") == []  # no log of that kind: nothing to fetch is no error
    assert gitops_remote.git("for-each-ref", "--format=%(refname)", "refs/promo/").split() == [FREEZES]


def test_a_concurrent_append_is_retried_on_the_new_tip_and_both_entries_survive(
    gitops_remote: GitRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = gitops_remote.head()
    mine = Mirror.open(gitops_remote.url, tmp_path / "mine", branch="main")
    theirs = Mirror.open(gitops_remote.url, tmp_path / "theirs", branch="main")
    for mirror in (mine, theirs):
        mirror.fetch()
    append_record(mine, a_freeze(commit, "before the race"), RECORD_SIGNER)  # the log exists, both caches know it
    read_records(theirs, "freezes", "prod")

    real_push, outcomes = _record_log.push_refspec, []

    def push_after_another_writer(*args: object, **kwargs: object) -> str:
        if not outcomes:  # between this writer's fetch and its push, another writer appends
            outcomes.append("raced")
            append_record(theirs, a_freeze(commit, "theirs"), RECORD_SIGNER)
        outcomes.append(real_push(*args, **kwargs))  # type: ignore[arg-type]
        return outcomes[-1]

    monkeypatch.setattr(_record_log, "push_refspec", push_after_another_writer)
    append_record(mine, a_freeze(commit, "mine"), RECORD_SIGNER)

    # Theirs landed; mine was rejected once (not a fast-forward, never forced), then appended on the new tip.
    assert outcomes == ["raced", "pushed", "rejected", "pushed"]
    reasons = [record.fields["Reason"] for record in read_records(theirs, "freezes", "prod")]
    assert reasons == ["before the race", "theirs", "mine"]
    assert len(gitops_remote.log_messages(FREEZES)) == 3


def test_an_entry_appended_by_hand_is_shown_untrusted_and_the_log_goes_on(
    gitops_remote: GitRemote, tmp_path: Path
) -> None:
    commit = gitops_remote.head()
    mirror = Mirror.open(gitops_remote.url, tmp_path / "cache", branch="main")
    mirror.fetch()
    claim = a_freeze(commit, "lifted by hand").message() + f"Record: {FREEZES}\nCommit: {commit}\n"
    gitops_remote.append_by_hand(FREEZES, claim)  # the log's first entry, unsigned
    assert append_record(mirror, a_freeze(commit, "promo's"), RECORD_SIGNER).trusted
    gitops_remote.append_by_hand(FREEZES, "not a record at all\n")

    found = read_records(mirror, "freezes", "prod")
    assert [(record.summary.split(": ")[-1], record.trusted) for record in found] == [
        ("lifted by hand", False),
        ("promo's", True),
        ("not a record at all", False),
    ]
    assert found[0].commit == commit and found[0].untrusted_reason == "the record is not signed"
    assert found[0].source.startswith(f"{FREEZES} entry ")
