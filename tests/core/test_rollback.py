"""Which version a rollback puts back (only one verified there), and the one write path allowed to go back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from promo.errors import ConflictError, InputError, NotFound
from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest
from promo.gitops.history import Change, Move
from promo.release.rollback import rollback_target
from promo.gitops.verdicts import Verdict
from tests.fixtures.gitrepos import GitRemote

WHEN = datetime(2026, 11, 30, tzinfo=UTC)


def change(version: str, before: str, outcome: str | None) -> Change:
    """A deploy of ``version`` into test over ``before``, with a verdict when ``outcome`` is verified or failed."""
    commit = f"c-{version}"
    verdict = None
    if outcome is not None:
        verdict = Verdict("hello", "test", version, commit, outcome == "verified", f"{version} was {outcome}", WHEN)
    return Change(commit, WHEN, "test", "deploy", (Move("preprod", before, version),), "subject", verdict=verdict)


# newest first: rc.d failed, rc.c never checked, rc.b verified, rc.a verified
HISTORY = [
    change("0.1.0-rc.ddddddd", "0.1.0-rc.ccccccc", "failed"),
    change("0.1.0-rc.ccccccc", "0.1.0-rc.bbbbbbb", None),
    change("0.1.0-rc.bbbbbbb", "0.1.0-rc.aaaaaaa", "verified"),
    change("0.1.0-rc.aaaaaaa", "", "verified"),
]


def test_the_newest_verified_version_other_than_what_runs_is_put_back_and_the_failure_is_the_reason():
    plan = rollback_target(HISTORY, "0.1.0-rc.ddddddd", env="test")
    assert (plan.current, plan.version, plan.verified_by) == ("0.1.0-rc.ddddddd", "0.1.0-rc.bbbbbbb", HISTORY[2])
    assert plan.reason == "0.1.0-rc.ddddddd was failed"
    assert plan.summary == (
        "roll back test from 0.1.0-rc.ddddddd to 0.1.0-rc.bbbbbbb "
        "(0.1.0-rc.ddddddd failed: 0.1.0-rc.ddddddd was failed)"
    )


def test_what_runs_is_skipped_even_when_verified_and_an_unchecked_version_is_no_reason():
    plan = rollback_target(HISTORY[2:], "0.1.0-rc.bbbbbbb", env="test")
    assert plan.version == "0.1.0-rc.aaaaaaa" and plan.reason is None


def test_to_a_verified_version_is_that_version():
    plan = rollback_target(HISTORY, "0.1.0-rc.ddddddd", env="test", to="0.1.0-rc.aaaaaaa")
    assert plan.version == "0.1.0-rc.aaaaaaa"


def test_to_a_version_never_verified_there_names_the_ones_that_were():
    with pytest.raises(InputError) as refused:
        rollback_target(HISTORY, "0.1.0-rc.ddddddd", env="test", to="0.1.0-rc.ccccccc")
    assert str(refused.value) == (
        "0.1.0-rc.ccccccc was never verified in test; roll back to one of: 0.1.0-rc.bbbbbbb, 0.1.0-rc.aaaaaaa"
    )


def test_to_what_runs_is_refused():
    with pytest.raises(InputError, match="test runs 0.1.0-rc.ddddddd already"):
        rollback_target(HISTORY, "0.1.0-rc.ddddddd", env="test", to="0.1.0-rc.ddddddd")


def test_nothing_else_verified_is_one_clear_line():
    with pytest.raises(NotFound) as nothing:
        rollback_target(HISTORY[:2], "0.1.0-rc.ddddddd", env="test")
    assert str(nothing.value) == (
        "no version other than 0.1.0-rc.ddddddd was verified in test, so there is nothing to roll back to; "
        "deploy a version that works into test (promote or publish it)"
    )
    with pytest.raises(InputError, match="nothing to roll back to"):
        rollback_target(HISTORY[:2], "0.1.0-rc.ddddddd", env="test", to="0.1.0-rc.ccccccc")


def test_a_version_whose_newest_deployment_failed_is_never_returned_to_even_if_an_older_one_was_verified():
    """rc.b was verified, then deployed again and failed: whatever broke it then may break it again."""
    b_again = "0.1.0-rc.bbbbbbb", "0.1.0-rc.aaaaaaa", "failed"
    history = [change("0.1.0-rc.ccccccc", "0.1.0-rc.bbbbbbb", "failed"), change(*b_again), *HISTORY[2:]]
    left_out = "0.1.0-rc.bbbbbbb is left out: it failed verification the last time it was checked there"

    plan = rollback_target(history, "0.1.0-rc.ccccccc", env="test")
    assert plan.version == "0.1.0-rc.aaaaaaa"
    with pytest.raises(InputError) as refused:
        rollback_target(history, "0.1.0-rc.ccccccc", env="test", to="0.1.0-rc.bbbbbbb")
    assert str(refused.value) == (
        "0.1.0-rc.bbbbbbb failed verification in test the last time it was checked there "
        "(commit c-0.1.0-rc.b: 0.1.0-rc.bbbbbbb was failed); "
        f"roll back to one of: 0.1.0-rc.aaaaaaa ({left_out})"
    )
    with pytest.raises(NotFound) as nothing:
        rollback_target(history[:3], "0.1.0-rc.ccccccc", env="test")
    assert str(nothing.value) == (
        f"no version other than 0.1.0-rc.ccccccc was verified in test ({left_out}), so there is nothing to roll back "
        "to; deploy a version that works into test (promote or publish it)"
    )


def test_a_deployment_nobody_checked_leaves_a_versions_last_verdict_standing():
    """A hand edit of another field (the same version after it, no verdict) says nothing about the version."""
    same = Move("preprod", "0.1.0-rc.bbbbbbb", "0.1.0-rc.bbbbbbb")
    relabel = Change("c-relabel", WHEN, "test", "manual", (same,), "s")
    history = [HISTORY[0], relabel, *HISTORY[1:]]
    assert rollback_target(history, "0.1.0-rc.ddddddd", env="test").version == "0.1.0-rc.bbbbbbb"


def untrusted(change: Change, why: str = "no valid signature") -> Change:
    assert change.verdict is not None
    return dataclasses.replace(change, verdict=dataclasses.replace(change.verdict, trusted=False, untrusted_reason=why))


def test_a_verdict_promo_cannot_trust_counts_for_nothing():
    """A forged verified record is no place to return to; a forged failed one is no reason and excludes nothing."""
    forged_verified = [HISTORY[0], HISTORY[1], untrusted(HISTORY[2]), HISTORY[3]]
    assert rollback_target(forged_verified, "0.1.0-rc.ddddddd", env="test").version == "0.1.0-rc.aaaaaaa"
    with pytest.raises(InputError, match="0.1.0-rc.bbbbbbb was never verified in test"):
        rollback_target(forged_verified, "0.1.0-rc.ddddddd", env="test", to="0.1.0-rc.bbbbbbb")

    about_another_version = dataclasses.replace(
        HISTORY[2], verdict=dataclasses.replace(HISTORY[2].verdict, version="0.1.0-rc.aaaaaaa")
    )
    assert about_another_version.trusted_verdict is None
    only = [HISTORY[0], about_another_version]
    with pytest.raises(NotFound, match="no version other than 0.1.0-rc.ddddddd was verified in test, so"):
        rollback_target(only, "0.1.0-rc.ddddddd", env="test")

    forged_failure = [untrusted(HISTORY[0]), *HISTORY[1:]]
    plan = rollback_target(forged_failure, "0.1.0-rc.ddddddd", env="test")
    assert (plan.version, plan.reason) == ("0.1.0-rc.bbbbbbb", None)


def test_the_rollback_of_trailer_is_one_line_like_the_others():
    assert Trailers(approved_by="carol", rollback_of="0.1.0-rc.ddddddd\nForged: x").render() == (
        "Approved-By: carol\nRollback-Of: 0.1.0-rc.ddddddd Forged: x"
    )


def test_only_an_explicit_allow_downgrade_writes_a_lower_version(gitops_remote: GitRemote, cache_dir: Path):
    gitops = GitOpsRepo(gitops_remote.url, "main", cache_dir)
    lower, shown = "0.1.0-rc.0a1b2c3", {"preprod": "0.1.1-rc.def5678"}

    def write(**allowed: bool) -> str | None:
        subject = f"rollback(hello): test -> {lower}"
        result = gitops.set_version(
            WriteRequest(
                "hello", "test", ["preprod"], lower, expected=shown, subject=subject, trailers=Trailers(), **allowed
            )
        )
        return result.commit

    with pytest.raises(ConflictError, match="promo does not move an environment back"):
        write()
    assert gitops.plan("hello", "test", ["preprod"], lower, allow_downgrade=True).current == shown

    assert write(allow_downgrade=True) == gitops_remote.head()
    assert gitops.environment_version("hello", "test", ["preprod"]) == lower
