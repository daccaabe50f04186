"""The GitHub stand-in's webhook deliveries, received as GitHub's would be: signed (checked with githubkit's own
verifier, not promo's), with GitHub's headers, each body a valid GitHub webhook payload (githubkit's models of
GitHub's published webhook schemas), and each one a decision the relay reads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import githubkit.webhooks
import pytest
from pytest_httpserver import HTTPServer

from promo.deployments.github_relay import Relay
from promo.local.standin_github import Webhook
from tests.fixtures.github_standin import REQUIRED_CHECK, GitHubWorld, standin_world
from tests.fixtures.gitrepos import ROOT, GitRemote, application

pytestmark = pytest.mark.integration

SECRET = "a sandbox webhook secret"
STAGE = f"{ROOT}/stage/preprod/hello.yaml"
BRANCH = "promo/hello/stage/0.2.0-rc.abc1234"
DEADLINE_SECONDS = 30.0  # deliveries go out within milliseconds; generous for a loaded machine


@pytest.fixture
def hooked(tmp_path: Path, gitops_remote: GitRemote, httpserver: HTTPServer) -> Iterator[GitHubWorld]:
    """The stand-in with a webhook on the GitOps repository, delivering to ``httpserver``."""
    (tmp_path / "webhook-secret").write_text(SECRET + "\n")
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok", status=202)
    hook = Webhook(url=httpserver.url_for("/hook"), secret_file=tmp_path / "webhook-secret")
    with standin_world(tmp_path, gitops_remote, [hook]) as world:
        yield world


def deliveries(httpserver: HTTPServer, count: int) -> list[tuple[dict[str, str], bytes]]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(httpserver.log) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(httpserver.log) == count, f"{len(httpserver.log)} deliveries arrived, not {count}"
    return [(dict(request.headers), request.get_data()) for request, _ in httpserver.log]


def test_a_review_and_a_merge_are_delivered_signed_with_githubs_headers_and_payloads(
    hooked: GitHubWorld, httpserver: HTTPServer
) -> None:
    hooked.push_branch(BRANCH, {STAGE: application("hello", "stage", "0.2.0-rc.abc1234")})
    pull = hooked.as_user("promo").open(BRANCH, "main", title="promote hello", body="the gate page")
    hooked.as_user("mallory").review(pull.number, "COMMENT", body="looks fine")  # delivered; the relay drops it
    hooked.as_user("alice").review(pull.number, "APPROVE")
    passed = hooked.api("promo", "POST", f"/statuses/{pull.head_sha}", {"state": "success", "context": REQUIRED_CHECK})
    assert passed.status_code == 201, passed.text
    hooked.as_user("promo").merge(pull.number, pull.head_sha, "merge")

    received = deliveries(httpserver, 3)
    sent: list[dict] = []
    relay = Relay(SECRET.encode(), sent.append)
    for headers, body in received:
        assert githubkit.webhooks.verify(SECRET, body, headers["X-Hub-Signature-256"])
        assert headers["Content-Type"] == "application/json" and headers["X-Github-Delivery"]
        githubkit.webhooks.parse(headers["X-Github-Event"], body)  # GitHub's schema for the event and its action
        assert relay.handle(headers, body).status in (200, 202)
    kinds = [(headers["X-Github-Event"], json.loads(body)["action"]) for headers, body in received]
    assert kinds == [("pull_request_review", "submitted")] * 2 + [("pull_request", "closed")]
    assert json.loads(received[1][1])["review"]["state"] == "approved"  # lowercase, as webhooks spell it
    assert json.loads(received[2][1])["pull_request"]["merged"] is True
    assert [(event["event"], event["payload"]) for event in sent] == [
        ("github.pull_request_review.submitted", {"repository": "sandbox/gitops", "number": pull.number,
                                                  "head_ref": BRANCH, "action": "submitted",
                                                  "review_state": "approved"}),
        ("github.pull_request.closed", {"repository": "sandbox/gitops", "number": pull.number, "head_ref": BRANCH,
                                        "action": "closed", "review_state": None}),
    ]  # fmt: skip
    assert len({headers["X-Github-Delivery"] for headers, _ in received}) == 3


def test_closing_without_a_merge_is_delivered_too(hooked: GitHubWorld, httpserver: HTTPServer) -> None:
    hooked.push_branch(BRANCH, {STAGE: application("hello", "stage", "0.2.0-rc.abc1234")})
    pull = hooked.as_user("promo").open(BRANCH, "main", title="promote hello", body="the gate page")
    hooked.as_user("promo").close(pull.number)
    [(headers, body)] = deliveries(httpserver, 1)
    payload = json.loads(body)
    assert (headers["X-Github-Event"], payload["action"], payload["pull_request"]["merged"]) == (
        "pull_request", "closed", False)  # fmt: skip
    assert payload["sender"]["login"] == "promo" and payload["repository"]["full_name"] == "sandbox/gitops"
