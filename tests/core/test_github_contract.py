"""The contract with GitHub's published REST description (githubkit-schemas, pinned): the checker itself, the client's
answers to GitHub's refusals (fakes whose every answer is checked too), and promo's release code on the stand-in."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from promo.errors import BaseMoved, HeadMoved, NotMergeable
from promo.forges.github import GitHubForge, GivenToken, RateLimited, RateLimitWait
from promo.forges.github_pulls import GitHubPullRequests, Merged, RequiredChecks
from promo.local.standin_github import shapes
from tests.fixtures.github_contract import CheckingTransport, ContractBroken, check_request, check_response
from tests.fixtures.github_standin import GitHubWorld, github  # noqa: F401 (the fixture)

API = "https://api.github.test"
TOKEN = "ghp_contract_s3cr3t"
SHA, OTHER = "a" * 40, "b" * 40


def pull_json(number: int = 7, head_sha: str = SHA) -> dict:
    repo = shapes.repository(API, "acme/gitops", 1, shapes.user(API, "acme", 2), "main")
    record = {
        "number": number, "id": 70 + number, "title": "hello 0.2.0 to stage", "body": "gate", "head": "promo/x",
        "base": "main", "user": "promo", "state": "open", "draft": False, "labels": [], "auto_merge": None,
        "created_at": shapes.now(), "updated_at": shapes.now(), "closed_at": None, "merged_at": None,
        "merged_by": None, "merge_commit_sha": None,
    }  # fmt: skip
    users = {"promo": shapes.user(API, "promo", 3)}
    return shapes.pull(API, repo, record, users, head_sha, OTHER, mergeable=True, mergeable_state="blocked")


def fake_github(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[GitHubPullRequests, CheckingTransport]:
    transport = CheckingTransport(httpx.MockTransport(answer))
    forge = GitHubForge("acme/gitops", GivenToken(TOKEN), api_url=API, client=httpx.Client(transport=transport),
                        rate_limit=RateLimitWait(budget=0))  # fmt: skip
    return GitHubPullRequests(forge), transport


def test_the_checker_refuses_what_github_would_not_send_or_take() -> None:
    check_request("PUT", "/repos/a/b/pulls/1/merge", {"sha": SHA, "merge_method": "squash"})
    with pytest.raises(ContractBroken, match="merge_method"):
        check_request("PUT", "/repos/a/b/pulls/1/merge", {"sha": SHA, "merge_method": "fast-forward"})
    broken = pull_json()
    del broken["mergeable"]
    check_response("GET", "/repos/a/b/pulls/7", 200, pull_json())
    with pytest.raises(ContractBroken, match="mergeable"):
        check_response("GET", "/repos/a/b/pulls/7", 200, broken)
    with pytest.raises(ContractBroken, match="no operation"):
        check_request("POST", "/repos/a/b/pulls/7/approve", None)


@pytest.mark.parametrize(
    ("status", "message", "error", "text"),
    [
        (
            409,
            "Head branch was modified. Review and try the merge again.",
            HeadMoved,
            "no longer at the reviewed commit",
        ),
        (
            405,
            "Base branch was modified. Review and try the merge again.",
            BaseMoved,
            r"the base branch moved during the merge \(Base branch was modified.*\); merge again$",
        ),
        (405, 'Required status check "lint" is failing.', NotMergeable, 'Required status check "lint" is failing'),
    ],
)
def test_merge_refusals_are_one_line_each(status: int, message: str, error: type, text: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content) == {"sha": SHA, "merge_method": "merge"}
        return httpx.Response(status, json={"message": message, "documentation_url": "https://docs.github.com/rest"})

    client, transport = fake_github(answer)
    with pytest.raises(error, match=text) as caught:
        client.merge(7, SHA, "merge")
    assert "\n" not in str(caught.value) and TOKEN not in str(caught.value)
    assert transport.checked == [("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge", status)]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "{reset}"}, 120),
        ({"retry-after": "30"}, 30),
        ({"x-ratelimit-remaining": "4000", "x-ratelimit-reset": "{reset}"}, 60),  # secondary, no retry-after: a minute
    ],
)
def test_a_rate_limit_is_retryable_with_the_wait_named(headers: dict, wait: int) -> None:
    import time

    reset = str(int(time.time()) + 120)

    def answer(request: httpx.Request) -> httpx.Response:
        primary = headers.get("x-ratelimit-remaining") == "0"
        message = "API rate limit exceeded" if primary else "You have exceeded a secondary rate limit"
        body = {"message": message, "documentation_url": "https://docs.github.com/rest"}
        return httpx.Response(403, json=body, headers={k: v.format(reset=reset) for k, v in headers.items()})

    client, _ = fake_github(answer)
    with pytest.raises(RateLimited, match="rate limited until") as caught:
        client.get(7)
    assert abs(caught.value.retry_after - wait) <= 2 and TOKEN not in str(caught.value)


def test_a_clean_pull_request_is_merged_when_github_refuses_auto_merge() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/graphql":
            variables = json.loads(request.content)["variables"]
            assert (variables["pullRequestId"], variables["expectedHeadOid"]) == ("PR_77", SHA)
            return httpx.Response(200, json={"errors": [{"message": "Pull request Pull request is in clean status"}]})
        if request.method == "GET":
            return httpx.Response(200, json=pull_json())
        assert json.loads(request.content)["sha"] == SHA
        return httpx.Response(200, json={"sha": OTHER, "merged": True, "message": "Pull Request successfully merged"})

    client, transport = fake_github(answer)
    assert TOKEN not in repr(client.forge) + repr(GivenToken(TOKEN))
    assert client.enable_auto_merge(client.get(7), "squash") == Merged(OTHER)
    assert [(method, op) for method, op, _ in transport.checked][-1] == (
        "PUT",
        "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
    )


def test_a_concurrent_create_is_answered_by_the_open_pull_request() -> None:
    listed = iter([[], [pull_json()]])

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            error = {
                "resource": "PullRequest",
                "code": "custom",
                "message": "A pull request already exists for acme:promo/x.",
            }
            return httpx.Response(422, json={"message": "Validation Failed", "errors": [error],
                                             "documentation_url": "https://docs.github.com/rest"})  # fmt: skip
        if request.url.path.endswith("/pulls"):
            assert request.url.params["head"] == "acme:promo/x"  # GitHub ignores a bare branch
            return httpx.Response(200, json=next(listed))
        return httpx.Response(200, json=pull_json())

    client, _ = fake_github(answer)
    assert client.open("promo/x", "main", title="t", body="b").number == 7


def test_promos_release_calls_keep_the_contract_on_the_stand_in(github: GitHubWorld) -> None:
    forge = github.as_user("promo").forge
    head = github.remote.head()
    release = forge.create_release("v0.2.0", head, name="hello 0.2.0", notes="notes")
    assert (release.tag, release.commit) == ("v0.2.0", head)
    assert forge.create_release("v0.2.0", head, name="hello 0.2.0", notes="notes") == release  # a re-run
    assert [r.tag for r in forge.list_releases()] == ["v0.2.0"]
    assert github.remote.git("rev-parse", "refs/tags/v0.2.0").strip() == head


def test_required_checks_a_token_may_not_read_are_none_and_rulesets_add_theirs() -> None:
    url = f"{API}/repos/acme/gitops"
    commit = {"sha": SHA, "node_id": "C_1", "url": url, "html_url": url, "comments_url": url, "author": None,
              "committer": None, "parents": [], "commit": {"url": url, "author": None, "committer": None,
                                                          "message": "", "comment_count": 0,
                                                          "tree": {"sha": SHA, "url": url}}}  # fmt: skip
    branch = {"name": "main", "commit": commit, "_links": {"self": url, "html": url}, "protection_url": url,
              "protected": True, "protection": {"required_status_checks": {"enforcement_level": "non_admins",
              "contexts": ["lint"], "checks": [{"context": "lint", "app_id": None}]}}}  # fmt: skip
    rule = {"type": "required_status_checks", "parameters": {"strict_required_status_checks_policy": False,
                                                             "required_status_checks": [{"context": "e2e"}]}}
    refused = {"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest"}
    answers = {"/repos/acme/gitops/branches/main": (200, branch),
               "/repos/acme/gitops/rules/branches/main": (200, [rule])}  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        status, body = answers[request.url.path]
        return httpx.Response(status, json=body)

    client, _ = fake_github(answer)
    assert client.required_checks("main") == RequiredChecks(frozenset({"lint", "e2e"}))
    answers["/repos/acme/gitops/rules/branches/main"] = (403, refused)
    unreadable = client.required_checks("main")
    assert unreadable.names is None and "answered 403: Resource not accessible by integration" in unreadable.unreadable
    answers["/repos/acme/gitops/branches/main"] = (404, {**refused, "message": "Not Found"})
    assert client.required_checks("main").names is None
