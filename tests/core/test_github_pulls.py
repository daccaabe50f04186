"""The pull-request client against the GitHub stand-in: real HTTP, a real bare GitOps repository, branch protection,
and every request and answer checked against GitHub's published description on the way (CheckingTransport)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from promo.forges.github import GitHubForge, GivenToken
from promo.forges.github_pulls import GitHubPullRequests, RequiredChecks
from promo.errors import AuthError, ConflictError, HeadMoved, InputError, NotMergeable, ToolError
from tests.fixtures.github_contract import templates
from tests.fixtures.github_standin import REQUIRED_CHECK, GitHubWorld, github, standin_world  # noqa: F401 (fixture)
from tests.fixtures.gitrepos import ROOT, GitRemote, application, git

pytestmark = pytest.mark.integration

STAGE = f"{ROOT}/stage/preprod/hello.yaml"
DEV = f"{ROOT}/dev/preprod/hello.yaml"
BRANCH = "promo/hello/stage/0.2.0"
TRAILERS = "promo: promote hello 0.2.0 to stage\n\nPromo-Version: 0.2.0\nApproved-By: alice (GitHub review 7)"


def open_promotion(github: GitHubWorld, branch: str = BRANCH, version: str = "0.2.0-rc.abc1234"):
    head = github.push_branch(branch, {STAGE: application("hello", "stage", version)}, "promote hello to stage")
    pull = github.as_user("promo").open(branch, "main", title="hello 0.2.0 to stage", body="the gate page",
                                        labels=["app:hello", "env:stage"])  # fmt: skip
    assert pull.head_sha == head
    return pull


def pass_check(github: GitHubWorld, sha: str, state: str = "success") -> None:
    answer = github.api("promo", "POST", f"/statuses/{sha}", {"state": state, "context": REQUIRED_CHECK})
    assert answer.status_code == 201, answer.text


def test_an_approvers_review_merges_with_the_reviewed_sha_and_promos_message(github: GitHubWorld) -> None:
    pull = open_promotion(github)
    assert (pull.state, pull.mergeable_state, pull.labels) == ("open", "blocked", ("app:hello", "env:stage"))
    assert github.as_user("promo").open(BRANCH, "main", title="again", body="", labels=["app:hello"]) == pull

    review = github.as_user("alice").review(pull.number, "APPROVE", commit=pull.head_sha)
    assert (review.login, review.state, review.commit_id) == ("alice", "APPROVED", pull.head_sha)
    with pytest.raises(NotMergeable, match=f'Required status check "{REQUIRED_CHECK}" is expected'):
        github.as_user("promo").merge(pull.number, pull.head_sha, "squash")
    pass_check(github, pull.head_sha)
    assert github.as_user("promo").get(pull.number).mergeable_state == "clean"

    subject, _, message = TRAILERS.partition("\n\n")
    merged = github.as_user("promo").merge(pull.number, pull.head_sha, "squash", title=subject, message=message)
    assert github.remote.head() == merged.sha
    assert github.remote.git("log", "-1", "--format=%B", "main").strip() == TRAILERS
    assert github.remote.git("rev-list", "--parents", "-1", "main").split()[1:] != [pull.head_sha]  # squashed
    assert "0.2.0-rc.abc1234" in github.remote.read(STAGE)
    after = github.as_user("promo").get(pull.number)
    assert (after.state, after.merged, after.merge_commit_sha) == ("closed", True, merged.sha)
    github.as_user("promo").delete_branch(BRANCH)
    github.as_user("promo").delete_branch(BRANCH)  # a re-run: already gone
    assert github.as_user("promo").branch_sha(BRANCH) is None
    with pytest.raises(ConflictError, match="Cannot delete this protected branch"):
        github.as_user("promo").delete_branch("main")


def test_a_review_by_someone_without_write_access_does_not_count(github: GitHubWorld) -> None:
    pull = open_promotion(github)
    pass_check(github, pull.head_sha)
    github.as_user("mallory").review(pull.number, "APPROVE")
    assert [(r.login, r.state) for r in github.as_user("promo").reviews(pull.number)] == [("mallory", "APPROVED")]
    assert github.as_user("promo").get(pull.number).mergeable_state == "blocked"
    with pytest.raises(NotMergeable, match="At least 1 approving review is required by reviewers with write access"):
        github.as_user("promo").merge(pull.number, pull.head_sha, "merge")


def test_requested_changes_block_and_carry_the_reviewers_words(github: GitHubWorld) -> None:
    pull = open_promotion(github)
    pass_check(github, pull.head_sha)
    with pytest.raises(InputError, match="needs words"):
        github.as_user("bob").review(pull.number, "REQUEST_CHANGES")
    github.as_user("alice").review(pull.number, "APPROVE")
    github.as_user("bob").review(pull.number, "REQUEST_CHANGES", body="not during the freeze")
    last = github.as_user("promo").reviews(pull.number)[-1]
    assert (last.login, last.state, last.body) == ("bob", "CHANGES_REQUESTED", "not during the freeze")
    with pytest.raises(NotMergeable, match="requested changes"):
        github.as_user("promo").merge(pull.number, pull.head_sha, "merge")
    assert github.remote.read(STAGE) == application("hello", "stage", "0.1.0-rc.0a1b2c3")  # nothing on the branch


def test_the_author_cannot_approve_their_own_pull_request(github: GitHubWorld) -> None:
    pull = open_promotion(github)
    with pytest.raises(InputError, match="Can not approve your own pull request") as caught:
        github.as_user("promo").review(pull.number, "APPROVE")
    assert "ght_" not in str(caught.value)  # no token in the message


def test_a_head_pushed_after_the_review_is_refused_and_the_approval_dismissed(github: GitHubWorld) -> None:
    pull = open_promotion(github)
    pass_check(github, pull.head_sha)
    github.as_user("alice").review(pull.number, "APPROVE")
    moved = github.push_branch(BRANCH, {STAGE: application("hello", "stage", "9.9.9")}, "someone else's commit")
    with pytest.raises(
        HeadMoved, match=f"no longer at the reviewed commit {pull.head_sha[:12]}.*Head branch was modified"
    ):
        github.as_user("promo").merge(pull.number, pull.head_sha, "merge")
    assert github.as_user("promo").get(pull.number).head_sha == moved
    assert [r.state for r in github.as_user("promo").reviews(pull.number)] == ["DISMISSED"]


def test_a_base_moved_in_other_files_is_merged_into_the_branch_and_then_merges(github: GitHubWorld) -> None:
    pull = open_promotion(github)
    github.as_user("alice").review(pull.number, "APPROVE")
    github.remote.commit({DEV: application("hello", "dev", "0.3.0-rc.1234567")}, "dev moved on")
    client = github.as_user("promo")
    client.update_branch(pull.number, pull.head_sha)
    updated = client.get(pull.number)
    assert updated.head_sha != pull.head_sha
    assert [r.state for r in client.reviews(pull.number)] == ["DISMISSED"]  # the stand-in dismisses stale reviews
    github.as_user("bob").review(updated.number, "APPROVE", commit=updated.head_sha)
    pass_check(github, updated.head_sha)
    client.merge(updated.number, updated.head_sha, "merge")
    assert "0.3.0-rc.1234567" in github.remote.read(DEV) and "0.2.0-rc.abc1234" in github.remote.read(STAGE)


def test_a_failed_required_check_is_named(github: GitHubWorld) -> None:
    pull = open_promotion(github)
    github.as_user("alice").review(pull.number, "APPROVE")
    answer = github.api("promo", "POST", "/check-runs", {"name": REQUIRED_CHECK, "head_sha": pull.head_sha,
                                                          "status": "completed", "conclusion": "failure"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    github.api("promo", "POST", f"/statuses/{pull.head_sha}", {"state": "success", "context": "docs"})
    checks = github.as_user("promo").checks(pull.head_sha)
    assert checks.state([REQUIRED_CHECK]) == "failure"
    assert [(c.name, c.kind, c.detail) for c in checks.failed([REQUIRED_CHECK])] == [
        (REQUIRED_CHECK, "check-run", "failure")
    ]
    assert checks.state(["docs"]) == "success" and checks.state(["deploy-preview"]) == "pending"
    with pytest.raises(NotMergeable, match=f'Required status check "{REQUIRED_CHECK}" is failing'):
        github.as_user("promo").merge(pull.number, pull.head_sha, "merge")


def test_a_superseded_pull_request_is_closed_with_a_comment(github: GitHubWorld) -> None:
    old = open_promotion(github)
    new = open_promotion(github, "promo/hello/stage/0.3.0", "0.3.0-rc.1234567")
    github.push_branch("promo/hello/prod/0.1.0", {f"{ROOT}/prod/prod/hello.yaml": "x\n"}, "prod")
    github.as_user("promo").open("promo/hello/prod/0.1.0", "main", title="prod", body="")  # another environment's
    stage = github.as_user("promo").list_open("main", "promo/hello/stage/")
    assert [pull.number for pull in stage] == [old.number, new.number]
    closed = github.as_user("promo").close(old.number, f"Superseded by {new.html_url}")
    assert [pull.number for pull in github.as_user("promo").list_open("main", "promo/hello/stage/")] == [new.number]
    assert (closed.state, closed.merged) == ("closed", False)
    assert github.as_user("promo").find_open(BRANCH, "main") is None
    assert github.as_user("promo").find_open("promo/hello/stage/0.3.0", "main") == new


def test_auto_merge_waits_for_the_rules_and_a_clean_pull_request_is_merged_at_once(github: GitHubWorld) -> None:
    pull = open_promotion(github)
    assert github.as_user("promo").enable_auto_merge(pull, "merge") is None  # blocked: GitHub will merge it later
    github.as_user("alice").review(pull.number, "APPROVE")
    pass_check(github, pull.head_sha)
    assert github.as_user("promo").get(pull.number).merged

    clean = open_promotion(github, "promo/hello/stage/0.3.0", "0.3.0-rc.1234567")
    github.as_user("alice").review(clean.number, "APPROVE")
    pass_check(github, clean.head_sha)
    merged = github.as_user("promo").enable_auto_merge(github.as_user("promo").get(clean.number), "squash")
    assert merged is not None and github.remote.head() == merged.sha


def test_branches_identity_and_refused_tokens(github: GitHubWorld) -> None:
    client = github.as_user("carol")
    assert client.whoami() == "carol"
    main = github.remote.head()
    client.create_branch("promo/hello/test/0.1.0", main)
    client.create_branch("promo/hello/test/0.1.0", main)  # a re-run
    github.remote.commit({DEV: "changed\n"}, "dev moved")
    with pytest.raises(ConflictError, match="already exists .* not at"):
        client.create_branch("promo/hello/test/0.1.0", github.remote.head())
    assert client.branch_sha("promo/hello/test/0.1.0") == main
    stranger = GitHubPullRequests(GitHubForge("sandbox/gitops", GivenToken("ght_wrong"), api_url=github.server.url))
    with pytest.raises(AuthError, match="answered 401: Bad credentials") as caught:
        stranger.whoami()
    assert "ght_wrong" not in str(caught.value)


def test_direct_pushes_to_guarded_paths_of_the_branch_are_refused(github: GitHubWorld) -> None:
    writer = github.remote.writer
    github.remote.commit({DEV: application("hello", "dev", "0.4.0-rc.7654321")}, "dev: a push is fine")
    (writer / STAGE).write_text("pushed around the review\n")
    git(writer, "commit", "--quiet", "-am", "stage without review")
    refused = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=writer, capture_output=True, text=True)
    assert (
        refused.returncode != 0
        and f"GH006: Protected branch update failed for refs/heads/main: {STAGE}" in refused.stderr
    )


def test_every_operation_promo_uses_was_checked_against_the_description(github: GitHubWorld) -> None:
    test_an_approvers_review_merges_with_the_reviewed_sha_and_promos_message(github)
    github.as_user("promo").checks("main")
    github.as_user("promo").close(open_promotion(github, "promo/hello/stage/0.3.0", "0.3.0-rc.1").number, "stale")
    behind = open_promotion(github, "promo/hello/stage/0.4.0", "0.4.0-rc.1")
    github.as_user("promo").update_branch(behind.number, behind.head_sha)
    seen = templates(iter(github.transport.checked))
    pulls = "/repos/{owner}/{repo}/pulls"
    assert {
        f"GET {pulls}",
        f"POST {pulls}",
        f"GET {pulls}/{{pull_number}}",
        f"PATCH {pulls}/{{pull_number}}",
        f"POST {pulls}/{{pull_number}}/reviews",
        f"PUT {pulls}/{{pull_number}}/merge",
        f"PUT {pulls}/{{pull_number}}/update-branch",
        "POST /repos/{owner}/{repo}/issues/{issue_number}/labels",
        "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
        "GET /repos/{owner}/{repo}/commits/{ref}/status",
        "GET /repos/{owner}/{repo}/commits/{ref}/check-runs",
        "POST /repos/{owner}/{repo}/statuses/{sha}",
    } <= seen


def test_the_required_checks_are_read_where_github_shows_them(
    github: GitHubWorld, tmp_path: Path, gitops_remote: GitRemote
) -> None:
    assert github.as_user("promo").required_checks("main") == RequiredChecks(frozenset({REQUIRED_CHECK}))
    github.push_branch("unprotected", {DEV: "x\n"})
    assert github.as_user("promo").required_checks("unprotected") == RequiredChecks(frozenset())
    github.server.stop()
    with standin_world(tmp_path / "rulesets", gitops_remote, source="ruleset") as ruled:
        assert ruled.as_user("promo").required_checks("main") == RequiredChecks(frozenset({REQUIRED_CHECK}))
        seen = templates(iter(ruled.transport.checked))
    assert {"GET /repos/{owner}/{repo}/branches/{branch}", "GET /repos/{owner}/{repo}/rules/branches/{branch}"} <= seen


def test_auto_merge_follows_the_repositorys_setting_and_can_be_disabled(github: GitHubWorld) -> None:
    client = github.as_user("promo")
    assert client.auto_merge_allowed() is True
    pull = open_promotion(github)
    assert client.enable_auto_merge(pull, "merge", title="t", message="m") is None
    assert client.get(pull.number).auto_merge
    client.disable_auto_merge(client.get(pull.number))
    assert not client.get(pull.number).auto_merge
    closed = open_promotion(github, "promo/hello/stage/0.3.0", "0.3.0-rc.1234567")
    client.close(closed.number)
    with pytest.raises(NotMergeable, match="it is closed"):  # another run merged it, or a person closed it
        client.enable_auto_merge(closed, "merge")

    answer = github.api("carol", "PATCH", "", {"allow_auto_merge": False})  # what an admin does
    assert answer.status_code == 200 and answer.json()["allow_auto_merge"] is False
    assert client.auto_merge_allowed() is False
    with pytest.raises(ToolError, match="Auto merge is not allowed for this repository"):
        client.enable_auto_merge(client.get(pull.number), "merge")
    seen = templates(iter(github.transport.checked))
    assert {"GET /repos/{owner}/{repo}", "PATCH /repos/{owner}/{repo}"} <= seen
