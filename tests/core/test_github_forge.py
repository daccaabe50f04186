"""The GitHub forge against a fake GitHub API (pytest-httpserver): the requests it sends, and how it reads answers.
The fake's answers are whole GitHub objects (the stand-in's shapes), and every request and answer passes the check
against GitHub's published description on the way (tests/fixtures/github_contract.py)."""

from __future__ import annotations

import json
import pickle
import socket
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from promo.errors import AuthError, ConflictError, InputError, NotFound, TransientError
from promo.clients import forge_for
from promo.forges.base import PullRequest, Release, github_repository
from promo.forges.github import (
    EnvToken,
    GitHubAppToken,
    GitHubForge,
    PrefectSecretToken,
    RateLimited,
    RateLimitWait,
)
from promo.gitops.mirror import Mirror
from promo.local.standin_github import shapes
from tests.fixtures.github_contract import CheckingTransport

TOKEN = "ghp_s3cr3tT0ken"
REPO = "/repos/acme/hello"
SHA = "a" * 40
OTHER_SHA = "b" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ACME = shapes.user("https://api.github.com", "acme", 1)
REPO_JSON = {**shapes.repository("https://api.github.com", "acme/hello", 2, ACME, "main"),
             "html_url": "https://github.com/acme/hello"}  # fmt: skip


def checked_client() -> httpx.Client:
    """A client whose requests and answers are checked against GitHub's description."""
    return httpx.Client(transport=CheckingTransport(httpx.HTTPTransport()), timeout=30)


class StaticToken:
    def token(self) -> str:
        return TOKEN


@pytest.fixture(autouse=True)
def every_request_expected(httpserver: HTTPServer) -> Iterator[None]:
    """A request no expectation matched (or an assertion in a handler) fails the test, not just gets a 500."""
    yield
    httpserver.check_assertions()


@pytest.fixture
def forge(httpserver: HTTPServer) -> Iterator[GitHubForge]:
    forge = GitHubForge("acme/hello", StaticToken(), api_url=httpserver.url_for(""), client=checked_client())
    yield forge
    forge.close()


def release_json(tag: str, commit: str = "main", body: str = "notes") -> dict:
    record = {"id": 5, "tag_name": tag, "target_commitish": commit, "name": tag, "body": body, "draft": False,
              "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    return shapes.release(REPO_JSON, record, ACME)


def pull_json(number: int, head: str, draft: bool = True, *, simple: bool = True) -> dict:
    """A listing's item (``simple``), or the whole pull request a create answers with."""
    record = {
        "number": number, "id": 100 + number, "title": f"Hotfix {head}", "body": None, "head": head, "base": "main",
        "user": "acme", "state": "open", "draft": draft, "labels": [], "auto_merge": None,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "closed_at": None,
        "merged_at": None, "merged_by": None, "merge_commit_sha": None,
    }  # fmt: skip
    return shapes.pull("https://api.github.com", REPO_JSON, record, {"acme": ACME}, SHA, SHA, simple=simple)


def validation_failed(*errors: dict) -> dict:
    return shapes.error("Validation Failed", *errors)


def not_found() -> dict:
    return {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


def test_create_release_sends_tag_commit_name_and_notes(httpserver: HTTPServer, forge: GitHubForge) -> None:
    httpserver.expect_request(f"{REPO}/releases/tags/v1.2.0", method="GET").respond_with_json(not_found(), 404)
    httpserver.expect_request(f"{REPO}/git/ref/tags/v1.2.0", method="GET").respond_with_json(not_found(), 404)
    httpserver.expect_request(
        f"{REPO}/releases",
        method="POST",
        headers={**AUTH, "Accept": "application/vnd.github+json"},
        json={"tag_name": "v1.2.0", "target_commitish": SHA, "name": "v1.2.0", "body": "## 1.2.0", "draft": False},
    ).respond_with_json(release_json("v1.2.0", SHA, "## 1.2.0"), 201)

    release = forge.create_release("v1.2.0", SHA, name="v1.2.0", notes="## 1.2.0")

    assert release == Release("v1.2.0", SHA, "v1.2.0", "## 1.2.0", "https://github.com/acme/hello/releases/tag/v1.2.0")
    assert [request.method for request, _ in httpserver.log] == ["GET", "GET", "POST"]
    assert all(request.headers["Authorization"] == f"Bearer {TOKEN}" for request, _ in httpserver.log)


@pytest.mark.parametrize(("tagged", "same"), [(SHA, True), (OTHER_SHA, False)])
def test_already_exists_is_looked_up_and_judged_by_its_commit(
    httpserver: HTTPServer, forge: GitHubForge, tagged: str, same: bool
) -> None:
    """Another run made the release between our lookup and our POST: same commit is fine, another is a conflict."""
    httpserver.expect_oneshot_request(f"{REPO}/releases/tags/v1.2.0").respond_with_json(not_found(), 404)
    httpserver.expect_oneshot_request(f"{REPO}/git/ref/tags/v1.2.0").respond_with_json(not_found(), 404)
    httpserver.expect_request(f"{REPO}/releases", method="POST").respond_with_json(
        validation_failed({"resource": "Release", "code": "already_exists", "field": "tag_name"}), 422
    )
    httpserver.expect_request(f"{REPO}/releases/tags/v1.2.0").respond_with_json(release_json("v1.2.0"))
    httpserver.expect_request(f"{REPO}/git/ref/tags/v1.2.0").respond_with_json(
        shapes.ref(REPO_JSON, "refs/tags/v1.2.0", "c" * 40, "tag")
    )
    httpserver.expect_request(f"{REPO}/git/tags/{'c' * 40}").respond_with_json(
        shapes.git_tag(REPO_JSON, "c" * 40, "v1.2.0", "release v1.2.0", tagged, "commit")
    )

    if same:
        assert forge.create_release("v1.2.0", SHA, name="v1.2.0", notes="x").commit == SHA
    else:
        with pytest.raises(ConflictError, match=f"at commit {OTHER_SHA}, not at {SHA}"):
            forge.create_release("v1.2.0", SHA, name="v1.2.0", notes="x")


def test_an_existing_tag_at_another_commit_is_refused_before_any_post(
    httpserver: HTTPServer, forge: GitHubForge
) -> None:
    httpserver.expect_request(f"{REPO}/releases/tags/v1.2.0").respond_with_json(not_found(), 404)
    httpserver.expect_request(f"{REPO}/git/ref/tags/v1.2.0").respond_with_json(
        shapes.ref(REPO_JSON, "refs/tags/v1.2.0", OTHER_SHA)
    )
    with pytest.raises(ConflictError, match=f"tag v1.2.0 already exists in acme/hello at commit {OTHER_SHA}"):
        forge.create_release("v1.2.0", SHA, name="v1.2.0", notes="x")
    assert all(request.method == "GET" for request, _ in httpserver.log)


def test_releases_are_listed_over_pages_newest_first(httpserver: HTTPServer, forge: GitHubForge) -> None:
    page2 = httpserver.url_for(f"{REPO}/releases") + "?per_page=100&page=2"
    httpserver.expect_request(f"{REPO}/releases", query_string={"per_page": "100"}).respond_with_json(
        [release_json("v1.9.0"), release_json("v1.10.0")],
        headers={"Link": f'<{page2}>; rel="next", <{page2}>; rel="last"'},
    )
    httpserver.expect_request(f"{REPO}/releases", query_string={"per_page": "100", "page": "2"}).respond_with_json(
        [release_json("v0.1.0"), {**release_json("v2.0.0"), "draft": True}]
    )
    httpserver.expect_request(f"{REPO}/tags").respond_with_json(
        [shapes.tag(REPO_JSON, "v1.9.0", "0" * 40), shapes.tag(REPO_JSON, "v1.10.0", "1" * 40)]
    )

    releases = forge.list_releases()

    assert [(release.tag, release.commit) for release in releases] == [
        ("v1.10.0", "1" * 40), ("v1.9.0", "0" * 40), ("v0.1.0", "main"),
    ]


def test_bad_credentials_are_an_auth_error_without_the_token(httpserver: HTTPServer, forge: GitHubForge) -> None:
    httpserver.expect_request(f"{REPO}/releases/tags/v1.2.0").respond_with_json({"message": "Bad credentials"}, 401)
    with pytest.raises(AuthError, match="GitHub answered 401: Bad credentials") as error:
        forge.find_release("v1.2.0")
    assert TOKEN not in str(error.value) and TOKEN not in repr(forge)


def test_a_plain_403_names_the_missing_permission(httpserver: HTTPServer, forge: GitHubForge) -> None:
    httpserver.expect_request(f"{REPO}/releases/tags/v1.2.0").respond_with_json(
        {"message": "Resource not accessible by integration"}, 403,
        headers={"X-Accepted-GitHub-Permissions": "contents=read", "x-ratelimit-remaining": "4999"},
    )
    with pytest.raises(AuthError, match="give the token or GitHub App the contents=read permission"):
        forge.find_release("v1.2.0")


class Waits:
    """The clock stands still at NOW and sleeping only records how long was asked for."""

    NOW = 1_800_000_000.0

    def __init__(self) -> None:
        self.slept: list[float] = []

    def forge(self, httpserver: HTTPServer) -> GitHubForge:
        waits = RateLimitWait(sleep=self.slept.append, clock=lambda: self.NOW)
        api_url = httpserver.url_for("")
        return GitHubForge("acme/hello", StaticToken(), api_url=api_url, rate_limit=waits, client=checked_client())


def test_rate_limits_are_waited_out_as_github_asks(httpserver: HTTPServer) -> None:
    waits = Waits()
    reset = int(Waits.NOW) + 30
    httpserver.expect_oneshot_request(f"{REPO}/pulls").respond_with_json(
        {"message": "API rate limit exceeded"}, 403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    httpserver.expect_oneshot_request(f"{REPO}/pulls").respond_with_json(
        {"message": "too many"}, 429, headers={"Retry-After": "7"}
    )
    httpserver.expect_oneshot_request(f"{REPO}/pulls").respond_with_json([pull_json(3, "hotfix-1-2-1")])

    assert [pull.number for pull in waits.forge(httpserver).list_pull_requests()] == [3]
    assert waits.slept == [30, 7]
    assert len(httpserver.log) == 3


def test_a_rate_limit_beyond_the_wait_budget_fails_with_its_reset_time(httpserver: HTTPServer) -> None:
    waits = Waits()
    httpserver.expect_oneshot_request(f"{REPO}/pulls").respond_with_json(
        {"message": "secondary rate limit"}, 403, headers={"Retry-After": "50"}
    )
    httpserver.expect_oneshot_request(f"{REPO}/pulls").respond_with_json(
        {"message": "API rate limit exceeded"}, 403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(Waits.NOW) + 30)},
    )

    with pytest.raises(RateLimited) as limited:
        waits.forge(httpserver).list_pull_requests()

    assert waits.slept == [50], "50 s fit the minute; 30 s more do not"
    assert isinstance(limited.value, TransientError) and limited.value.retry_after == 30
    assert str(limited.value) == (
        "listing pull requests in acme/hello failed: GitHub answered 403: API rate limit exceeded "
        "(rate limited until 08:00:30 UTC); "
        "run again after then; a GitHub App token has a higher limit than a personal one"
    )
    assert pickle.loads(pickle.dumps(limited.value)).retry_after == 30


@pytest.mark.parametrize(
    ("status", "body", "error", "match"),
    [
        (502, "<html>Bad gateway</html>", TransientError, "GitHub answered 502: <html>Bad gateway</html>"),
        (404, json.dumps(not_found()), NotFound, "GitHub answered 404: Not Found"),
        (
            422,
            json.dumps(validation_failed({"code": "custom", "message": "No commits between"})),
            InputError,
            "Validation Failed; No commits between",
        ),
    ],
)
def test_other_statuses_map_to_promo_errors(
    httpserver: HTTPServer, forge: GitHubForge, status: int, body: str, error: type, match: str
) -> None:
    httpserver.expect_request(f"{REPO}/pulls").respond_with_data(body, status)
    with pytest.raises(error, match=match):
        forge.list_pull_requests()


def test_an_unreachable_api_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    forge = GitHubForge("acme/hello", StaticToken(), api_url=f"http://127.0.0.1:{port}")
    with pytest.raises(TransientError, match="ConnectError"):
        forge.list_pull_requests()


def test_pull_request_is_opened_as_draft_once(httpserver: HTTPServer, forge: GitHubForge) -> None:
    lookup = {"head": "acme:hotfix-1-2-4", "state": "open", "per_page": "100"}
    httpserver.expect_oneshot_request(f"{REPO}/pulls", method="GET", query_string=lookup).respond_with_json([])
    httpserver.expect_request(
        f"{REPO}/pulls",
        method="POST",
        headers=AUTH,
        json={"title": "Hotfix hotfix-1-2-4", "head": "hotfix-1-2-4", "base": "main", "body": "b", "draft": True},
    ).respond_with_json(pull_json(12, "hotfix-1-2-4", simple=False), 201)
    httpserver.expect_request(f"{REPO}/pulls", method="GET", query_string=lookup).respond_with_json(
        [pull_json(12, "hotfix-1-2-4")]
    )

    opened = forge.open_pull_request("hotfix-1-2-4", "main", title="Hotfix hotfix-1-2-4", body="b")
    again = forge.open_pull_request("hotfix-1-2-4", "main", title="Hotfix hotfix-1-2-4", body="b")

    url = "https://github.com/acme/hello/pull/12"
    assert opened == again == PullRequest(12, "hotfix-1-2-4", "main", "Hotfix hotfix-1-2-4", url, True)
    assert [request.method for request, _ in httpserver.log] == ["GET", "POST", "GET"]


def test_pull_request_already_opened_by_another_run_is_returned(httpserver: HTTPServer, forge: GitHubForge) -> None:
    httpserver.expect_oneshot_request(f"{REPO}/pulls", method="GET").respond_with_json([])
    httpserver.expect_request(f"{REPO}/pulls", method="POST").respond_with_json(
        validation_failed({"code": "custom", "message": "A pull request already exists for acme:hf."}), 422
    )
    httpserver.expect_request(f"{REPO}/pulls", method="GET").respond_with_json([pull_json(13, "hf", draft=False)])

    assert forge.open_pull_request("hf", "main", title="t", body="b").number == 13


def test_dispatch_workflow_sends_inputs_as_json(httpserver: HTTPServer, forge: GitHubForge) -> None:
    inputs = {"environment": "dev", "app_version": "1.2.0-rc.abc1234; rm -rf /"}
    httpserver.expect_request(
        f"{REPO}/actions/workflows/update-environment.yaml/dispatches",
        method="POST",
        headers=AUTH,
        json={"ref": "main", "inputs": inputs},
    ).respond_with_data("", 204)

    forge.dispatch_workflow("update-environment.yaml", "main", inputs)

    assert len(httpserver.log) == 1 and httpserver.log[0][1].status_code == 204


def test_github_app_token_signs_a_jwt_and_caches_the_installation_token(httpserver: HTTPServer) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    claims: list[dict] = []

    def verified(respond: dict):
        def handler(request: Request) -> Response:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            try:
                claims.append(jwt.decode(token, key.public_key(), algorithms=["RS256"], issuer="123"))
            except jwt.PyJWTError as exc:
                return Response(json.dumps({"message": f"bad JWT: {exc}"}), 401, content_type="application/json")
            assert scheme == "Bearer"
            return Response(json.dumps(respond), 201, content_type="application/json")

        return handler

    installation = {
        "id": 42, "account": ACME, "repository_selection": "selected", "app_id": 123, "target_id": 1,
        "access_tokens_url": httpserver.url_for("/app/installations/42/access_tokens"), "target_type": "Organization",
        "repositories_url": httpserver.url_for("/installation/repositories"), "permissions": {"contents": "write"},
        "html_url": "https://github.com/organizations/acme/settings/installations/42", "events": [],
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "single_file_name": None,
        "app_slug": "promo", "suspended_by": None, "suspended_at": None,
    }  # fmt: skip
    httpserver.expect_request(f"{REPO}/installation").respond_with_handler(verified(installation))
    httpserver.expect_request("/app/installations/42/access_tokens", method="POST").respond_with_handler(
        verified({"token": "ghs_installation", "expires_at": "2999-01-01T00:00:00Z"})
    )
    httpserver.expect_request(
        f"{REPO}/pulls", headers={"Authorization": "Bearer ghs_installation"}
    ).respond_with_json([pull_json(1, "a")])
    app = GitHubAppToken(123, pem, repository="acme/hello", api_url=httpserver.url_for(""), client=checked_client())
    forge = GitHubForge("acme/hello", app, api_url=httpserver.url_for(""), client=checked_client())

    assert [pull.number for pull in forge.list_pull_requests()] == [1]
    assert [pull.number for pull in forge.list_pull_requests()] == [1]  # the installation token is reused

    assert len(claims) == 2 and app.installation_id == 42
    assert claims[0]["exp"] - claims[0]["iat"] <= 600
    assert "BEGIN" not in repr(app) and "ghs_" not in repr(app)


def test_github_app_with_a_bad_key_or_no_installation_is_refused(httpserver: HTTPServer) -> None:
    app = GitHubAppToken(123, "not a key", installation_id=1, api_url=httpserver.url_for(""))
    with pytest.raises(AuthError, match="cannot sign") as error:
        app.token()
    assert "not a key" not in str(error.value)
    with pytest.raises(InputError, match="needs an installation"):
        GitHubAppToken(123, "k")


def test_token_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMO_TEST_TOKEN", f" {TOKEN}\n")
    assert EnvToken("PROMO_TEST_TOKEN").token() == TOKEN
    monkeypatch.delenv("PROMO_TEST_TOKEN")
    with pytest.raises(AuthError, match=r"\$PROMO_TEST_TOKEN is not set"):
        EnvToken("PROMO_TEST_TOKEN").token()

    from prefect.blocks.system import Secret

    def load(cls: type, name: str) -> Secret:
        if name != "github-token":
            raise ValueError(f"Unable to find block document named {name}")
        return Secret(value=TOKEN)

    monkeypatch.setattr(Secret, "load", classmethod(load))
    assert PrefectSecretToken("github-token").token() == TOKEN
    with pytest.raises(NotFound, match="Prefect Secret block 'missing' does not exist"):
        PrefectSecretToken("missing").token()


def test_forge_for_github_reads_the_repository_from_the_url(tmp_path) -> None:
    mirror = Mirror("https://x-access-token:s3cr3t@github.com/acme/hello.git", tmp_path / "m.git")
    forge = forge_for("github", mirror=mirror, repository=None, token_source=StaticToken())
    assert isinstance(forge, GitHubForge) and forge.owner_repo == "acme/hello"
    assert github_repository("git@github.com:acme/hello.git") == "acme/hello"
    assert github_repository("file:///tmp/hello.git") is None
    with pytest.raises(InputError, match="cannot tell the GitHub repository of file:///tmp/x.git"):
        forge_for("github", mirror=Mirror("file:///tmp/x.git", tmp_path / "x.git"), repository=None)
    with pytest.raises(InputError, match="not a GitHub repository"):
        GitHubForge("acme/hello/../x", StaticToken())
