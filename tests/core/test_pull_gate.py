"""What a pull request's reviews decide (promo/release/pull_gate.py): only an approver's approval of the current head
passes; an approver's request for changes rejects with their words; anyone else's review counts for nothing."""

from __future__ import annotations

import pytest

from promo.errors import ApprovalRejected
from promo.forges.github_pulls import Review
from promo.release.pull_gate import ReviewDecision, branch_version, decide, promotion_branch

HEAD, OLD = "a" * 40, "b" * 40


def review(number: int, login: str | None, state: str, commit: str | None = HEAD, body: str = "") -> Review:
    return Review(number, login, state, commit, body, "2026-12-07T12:00:00Z")


def decided(reviews: list[Review], approvers: tuple[str, ...] = ("alice", "bob")) -> ReviewDecision | None:
    return decide(reviews, HEAD, approvers, title="hello 0.2.0 into stage", url="https://github.test/pull/1")


def test_an_approvers_approval_of_the_head_passes_and_names_the_review() -> None:
    passed = decided([review(1, "mallory", "APPROVED"), review(2, "alice", "APPROVED", body=" fine ")])
    assert passed is not None
    assert (passed.login, passed.review_id, passed.comment, passed.trailer) == (
        "alice", 2, "fine", "alice (GitHub review 2)"
    )  # fmt: skip


@pytest.mark.parametrize(
    "reviews",
    [
        [review(1, "mallory", "APPROVED")],  # not an approver
        [review(1, "alice", "APPROVED", commit=OLD)],  # an older head
        [review(1, "alice", "APPROVED"), review(2, "alice", "DISMISSED")],  # dismissed since
        [review(1, None, "APPROVED")],  # a deleted account
        [review(1, "alice", "COMMENTED")],
    ],
)
def test_nothing_else_passes(reviews: list[Review]) -> None:
    assert decided(reviews) is None


def test_anyone_may_approve_when_no_approvers_are_listed() -> None:
    assert decided([review(1, "carol", "APPROVED")], approvers=()) is not None


def test_an_approvers_request_for_changes_rejects_with_their_words_and_a_later_approval_lifts_it() -> None:
    with pytest.raises(ApprovalRejected, match="rejected by bob in a review of https://github.test/pull/1: not now"):
        decided([review(1, "alice", "APPROVED"), review(2, "bob", "CHANGES_REQUESTED", body="not now")])
    lifted = decided([review(1, "bob", "CHANGES_REQUESTED", body="x"), review(2, "bob", "APPROVED")])
    assert lifted is not None and lifted.login == "bob"
    assert decided([review(1, "mallory", "CHANGES_REQUESTED", body="no")]) is None  # not an approver: no weight


def test_branch_names_carry_app_environment_and_version() -> None:
    branch = promotion_branch("hello", "stage", "0.2.0-rc.abc1234")
    assert branch == "promo/hello/stage/0.2.0-rc.abc1234"
    assert branch_version(branch, "hello", "stage") == "0.2.0-rc.abc1234"
    assert branch_version(branch, "hello", "prod") is None
