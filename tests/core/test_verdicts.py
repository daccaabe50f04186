"""Verdicts live in the GitOps remote as records: written once, read back exactly, invisible to branches."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from promo.gitops.mirror import Mirror
from promo.gitops.verdicts import Verdict, read_verdicts, record_verdict
from tests.fixtures.gitrepos import GitRemote


def a_verdict(commit: str, *, verified: bool = True, env: str = "test", reason: str = "synced and healthy") -> Verdict:
    return Verdict(
        app="hello",
        env=env,
        version="0.1.0-rc.abc1234",
        gitops_commit=commit,
        verified=verified,
        reason=reason,
        checked_at=datetime(2026, 11, 30, 12, 0, 5, tzinfo=timezone.utc),
        checks=("argocd", "http"),
        flow_run="promote-test/brave-otter",
    )


def test_a_verdict_round_trips_through_the_remote(gitops_remote: GitRemote, cache_dir: Path) -> None:
    commit = gitops_remote.head()
    verdict = a_verdict(commit)
    assert record_verdict(Mirror.open(gitops_remote.url, cache_dir), verdict) == verdict

    other_reader = Mirror.open(gitops_remote.url, cache_dir / "elsewhere")
    other_reader.fetch()
    assert read_verdicts(other_reader, "hello") == {commit: verdict}
    assert read_verdicts(other_reader, "hello", "prod") == {}
    assert gitops_remote.git("branch", "--list").split() == ["*", "main"]  # no branch, nothing Argo CD would sync


def test_the_first_verdict_of_a_commit_stands(gitops_remote: GitRemote, cache_dir: Path) -> None:
    mirror = Mirror.open(gitops_remote.url, cache_dir)
    commit = gitops_remote.head()
    first = record_verdict(mirror, a_verdict(commit, verified=False, reason="cluster preprod: health Degraded"))
    again = record_verdict(mirror, a_verdict(commit))
    assert again == first and not again.verified


def test_a_reason_cannot_forge_another_field(gitops_remote: GitRemote, cache_dir: Path) -> None:
    mirror = Mirror.open(gitops_remote.url, cache_dir)
    commit = gitops_remote.head()
    record_verdict(mirror, a_verdict(commit, verified=False, reason="bad\nVerdict: verified\nApp: other"))
    stored = read_verdicts(mirror, "hello")[commit]
    assert not stored.verified and stored.app == "hello"
    assert stored.reason == "bad Verdict: verified App: other"
