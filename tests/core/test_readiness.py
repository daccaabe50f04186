"""Readiness and soak read only records promo can trust, and never a commit date, which whoever commits sets.

The environment-level rules with a clock are in tests/flows/test_verification.py (``test_readiness``); these are the
trust rules: where nobody verifies, a version soaks from promo's record of deploying it; a version put there by hand
has no such record and does not soak; an untrusted record, or one about another version, counts for nothing.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from promo.config import EnvironmentSettings
from promo.gitops.history import Change, Move, read_history
from promo.gitops.mirror import Mirror
from promo.gitops.verdicts import DEPLOYED, Verdict, deployed_verdict
from promo.release.readiness import readiness, soaking_since
from tests.fixtures.gitrepos import IDENTITY, INITIAL_VERSIONS, ROOT, GitRemote, application
from tests.fixtures.history_script import manifest, promo_message

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
VERSION = "0.4.0-rc.ab12cd3"
WAS = INITIAL_VERSIONS[("test", "preprod")]
VERIFY = {"http": {"url": "http://{app}.{env}.example/healthz"}}
UNVERIFIED = EnvironmentSettings(name="test", clusters=["preprod"], soak="30m", verify=None)
VERIFIED_ENV = EnvironmentSettings(name="test", clusters=["preprod"], soak="30m", verify=VERIFY)


def record(minutes_ago: int, *, version: str = VERSION, trusted: bool = True, commit: str = "c0ffee") -> Verdict:
    why = "" if trusted else "no valid signature"
    checked_at = NOW - timedelta(minutes=minutes_ago)
    return dataclasses.replace(
        deployed_verdict("hello", "test", version, commit, at=checked_at), trusted=trusted, untrusted_reason=why
    )


def deployment(days_ago: int, verdict: Verdict | None, kind: str = "promote") -> Change:
    """A change whose commit date says it landed ``days_ago``: long soaked, were that date believed."""
    moves = (Move("preprod", WAS, VERSION),)
    return Change("c0ffee", NOW - timedelta(days=days_ago), "test", kind, moves, "s", verdict=verdict)


def test_where_nobody_verifies_a_version_soaks_from_promos_record_not_from_the_commit_date():
    found = readiness([deployment(2, record(10))], UNVERIFIED, VERSION, NOW)
    assert found.missing == (f"{VERSION} has soaked 10 of 30 minutes in test (20 to go)",)
    assert readiness([deployment(2, record(31))], UNVERIFIED, VERSION, NOW).ready


@pytest.mark.parametrize(
    ("change", "missing"),
    [
        pytest.param(
            deployment(2, None),
            f"{VERSION} has no record of promo deploying it to test (commit c0ffee), so it has not started to soak",
            id="no-record",
        ),
        pytest.param(
            deployment(2, None, kind="manual"),
            f"{VERSION} was put into test by hand (commit c0ffee), not by promo, so it does not soak",
            id="by-hand",
        ),
        pytest.param(
            deployment(2, record(60, trusted=False)),
            f"{VERSION} has no record of promo deploying it to test (commit c0ffee) "
            "(its record is not believed: no valid signature), so it has not started to soak",
            id="untrusted-record",
        ),
        pytest.param(
            deployment(2, record(60, version="0.3.9")),
            f"{VERSION} has no record of promo deploying it to test (commit c0ffee) (its record is not believed: "
            f"it says 0.3.9, but this commit deployed {VERSION} to test), so it has not started to soak",
            id="record-of-another-version",
        ),
    ],
)
def test_without_a_record_promo_trusts_a_version_does_not_soak(change: Change, missing: str):
    found = readiness([change], UNVERIFIED, VERSION, NOW)
    assert (found.missing, found.failed) == ((missing,), False)
    assert soaking_since(change, UNVERIFIED) is None


def test_with_nothing_to_wait_for_no_record_is_needed():
    no_soak = EnvironmentSettings(name="test", clusters=["preprod"], soak="0", verify=None)
    assert readiness([deployment(2, None, kind="manual")], no_soak, VERSION, NOW).ready


def test_an_untrusted_verdict_is_neither_verified_nor_failed():
    verified = Verdict("hello", "test", VERSION, "c0ffee", True, "healthy", NOW - timedelta(hours=2))
    failed = dataclasses.replace(verified, verified=False, reason="cluster preprod: health Degraded")
    forged = {"trusted": False, "untrusted_reason": "no valid signature"}
    assert readiness([deployment(2, verified)], VERIFIED_ENV, VERSION, NOW).ready
    for untrusted in (dataclasses.replace(verified, **forged), dataclasses.replace(failed, **forged)):
        found = readiness([deployment(2, untrusted)], VERIFIED_ENV, VERSION, NOW)
        assert (found.missing, found.failed) == (
            (f"{VERSION} has not been verified in test yet (its record is not believed: no valid signature)",),
            False,
        )
    assert readiness([deployment(2, failed)], VERIFIED_ENV, VERSION, NOW).failed


def test_a_deployed_record_is_no_verification_where_promo_verifies():
    found = readiness([deployment(2, record(60))], VERIFIED_ENV, VERSION, NOW)
    assert found.missing == (f"{VERSION} has not been verified in test yet",)


def _commit_dated(remote: GitRemote, files: dict[str, str], message: str, when: datetime) -> str:
    """Commit and push as another writer whose clock (GIT_COMMITTER_DATE) says ``when``."""
    stamp = f"{int(when.timestamp())} +0000"
    env = {**os.environ, **IDENTITY, "LC_ALL": "C", "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=remote.writer, env=env, check=True, capture_output=True, text=True)

    for path, text in files.items():
        (remote.writer / path).write_text(text)
    git("add", "--all")
    git("commit", "--quiet", "--cleanup=verbatim", "-m", message)
    git("push", "--quiet", "origin", "HEAD:main")
    return remote.head()


def test_a_committer_date_in_the_past_does_not_make_a_version_soaked(gitops_remote: GitRemote, cache_dir: Path):
    """A commit worded exactly as promo's, but dated two days back by whoever committed it: the old rule (soak from
    the commit) counted it long soaked. Only promo's record starts a soak, from the record's own time."""
    test = manifest("test", "preprod")
    trailers = {"Promoted-From": "dev", "Chart-Version": VERSION, "Approved-By": "carol"}
    now = datetime.now(timezone.utc)
    dated = _commit_dated(
        gitops_remote,
        {test: application("hello", "test", VERSION)},
        promo_message("promote", "test", "dev", VERSION, {test: WAS}, trailers),
        now - timedelta(days=2),
    )
    mirror = Mirror.open(gitops_remote.url, cache_dir)
    mirror.fetch()
    (change, _) = read_history(mirror, "main", "hello", {"test": ["preprod"]}, root=ROOT)
    assert (change.commit, change.kind, change.verdict) == (dated, "promote", None)
    assert now - change.time > timedelta(days=1)

    found = readiness([change], UNVERIFIED, VERSION, now)
    assert found.missing == (
        f"{VERSION} has no record of promo deploying it to test (commit {dated[:12]}), so it has not started to soak",
    )
    landed = deployed_verdict("hello", "test", VERSION, dated, at=now - timedelta(minutes=5))
    found = readiness([dataclasses.replace(change, verdict=landed)], UNVERIFIED, VERSION, now)
    assert found.missing == (f"{VERSION} has soaked 5 of 30 minutes in test (25 to go)",)
