"""The GitHub stand-in's HTTP side: routes, authentication, and the process ``promo sandbox`` starts and stops.

Every request needs ``Authorization: Bearer <token>`` (or ``token <token>``) with a token from the tokens file
``{"login": "token"}``; the login is who acts (opens, reviews, merges). Answers use GitHub's REST field names and
status codes; see the package's docstring for what is served.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
import signal
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from promo.local.processes import ModuleServer, exit_on_sigterm, module_main
from promo.local.standin_github import graphql, shapes
from promo.local.standin_github.repos import GitFailed
from promo.local.standin_github.settings import ROUTES as SETTINGS_ROUTES, SettingsRoutes
from promo.local.standin_github.webhooks import Deliveries, Webhook
from promo.local.standin_github.world import ApiError, Protection, World, validation_failed

log = logging.getLogger("promo.local.standin_github")

_PAGE_SIZE = 30  # GitHub's default per_page


class GitHubStandinSettings(BaseModel):
    """What the stand-in serves; written as JSON next to its log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = 0
    owner: str = "sandbox"
    repositories: dict[str, Path] = Field(description="repository name -> bare git repository")
    protection: dict[str, Protection] = Field(default_factory=dict, description="repository name -> its rules")
    allow_auto_merge: list[str] = Field(default_factory=list, description="the repositories allowing auto-merge")
    tokens_file: Path = Field(description='{"login": "token"}: who may call, and as whom')
    state_file: Path
    webhooks: list[Webhook] = Field(default_factory=list, description="where reviews and closes are delivered")


Route = tuple[str, re.Pattern[str], str]
_ROUTES: list[Route] = [
    (method, re.compile(pattern), handler)
    for method, pattern, handler in [
        ("GET", r"/user", "get_user"),
        ("POST", r"/graphql", "post_graphql"),
        ("GET", r"/repos/{o}/{r}/pulls", "list_pulls"),
        ("POST", r"/repos/{o}/{r}/pulls", "create_pull"),
        ("GET", r"/repos/{o}/{r}/pulls/(?P<n>\d+)", "get_pull"),
        ("PATCH", r"/repos/{o}/{r}/pulls/(?P<n>\d+)", "update_pull"),
        ("GET", r"/repos/{o}/{r}/pulls/(?P<n>\d+)/reviews", "list_reviews"),
        ("POST", r"/repos/{o}/{r}/pulls/(?P<n>\d+)/reviews", "create_review"),
        ("PUT", r"/repos/{o}/{r}/pulls/(?P<n>\d+)/merge", "merge_pull"),
        ("PUT", r"/repos/{o}/{r}/pulls/(?P<n>\d+)/update-branch", "update_branch"),
        ("POST", r"/repos/{o}/{r}/issues/(?P<n>\d+)/comments", "create_comment"),
        ("POST", r"/repos/{o}/{r}/issues/(?P<n>\d+)/labels", "add_labels"),
        ("POST", r"/repos/{o}/{r}/statuses/(?P<sha>[0-9a-f]{40})", "create_status"),
        ("GET", r"/repos/{o}/{r}/commits/(?P<ref>.+)/status", "combined_status"),
        ("POST", r"/repos/{o}/{r}/check-runs", "create_check_run"),
        ("GET", r"/repos/{o}/{r}/commits/(?P<ref>.+)/check-runs", "list_check_runs"),
        ("POST", r"/repos/{o}/{r}/git/refs", "create_ref"),
        ("GET", r"/repos/{o}/{r}/git/ref/(?P<ref>.+)", "get_ref"),
        ("DELETE", r"/repos/{o}/{r}/git/refs/(?P<ref>.+)", "delete_ref"),
        ("GET", r"/repos/{o}/{r}/git/tags/(?P<sha>[0-9a-f]{40})", "get_tag"),
        ("GET", r"/repos/{o}/{r}/tags", "list_tags"),
        ("GET", r"/repos/{o}/{r}/releases", "list_releases"),
        ("POST", r"/repos/{o}/{r}/releases", "create_release"),
        ("GET", r"/repos/{o}/{r}/releases/tags/(?P<tag>.+)", "get_release"),
        *SETTINGS_ROUTES,
    ]
    for pattern in [f"^{pattern.replace('{o}', '(?P<owner>[^/]+)').replace('{r}', '(?P<repo>[^/]+)')}$"]
]


class _Handler(SettingsRoutes, BaseHTTPRequestHandler):
    world: ClassVar[World]
    tokens: ClassVar[dict[str, str]]  # token -> login

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return self._send(200, {"ok": True})
        path = url.path
        login = self._login()
        if login is None:
            return self._send(401, shapes.error("Bad credentials"))
        for route_method, pattern, name in _ROUTES:
            match = pattern.match(path)
            if match is None or route_method != method:
                continue
            params = {key: unquote(value) for key, value in match.groupdict().items()}
            if params.pop("owner", self.world.owner) != self.world.owner:
                return self._send(404, shapes.error("Not Found"))
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            try:
                with self.world.lock:
                    status, body, headers = getattr(self, name)(login, params, query, self._body())
                    self.world.save()
            except ApiError as error:
                return self._send(error.status, shapes.error(error.message, *error.errors))
            except GitFailed as error:
                return self._send(422, shapes.error(f"Reference update failed: {error}"))
            return self._send(status, body, headers)
        self._send(404, shapes.error("Not Found"))

    # -- routes: each answers (status, body, extra headers) --------------------------------------------------------

    def get_user(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        return 200, shapes.private_user(self.world.base, login, 1000 + self.world.logins.index(login)), {}

    def list_pulls(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        state, base = q.get("state", "open"), q.get("base")
        head = q.get("head", "")
        owner, _, branch = head.partition(":")  # a bare branch is ignored, as GitHub ignores it
        pulls = [
            record for record in self.world.records(p["repo"])["pulls"].values()
            if (state == "all" or record["state"] == state) and (base is None or record["base"] == base)
            and (not branch or (owner == self.world.owner and record["head"] == branch))
        ]  # fmt: skip
        items = [self.world.pull_json(p["repo"], record, simple=True) for record in reversed(pulls)]
        return self._page(items, q)

    def create_pull(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        self.world.repository(p["repo"])
        if not isinstance(body, dict) or not body.get("head") or not body.get("base"):
            raise validation_failed("head and base are required")
        record = self.world.create_pull(p["repo"], login, body)
        data = self.world.pull_json(p["repo"], record)
        return 201, data, {"Location": data["url"]}

    def get_pull(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        return 200, self.world.pull_json(p["repo"], self._pull(p)), {}

    def update_pull(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        record = self._pull(p)
        self.world.update_pull(p["repo"], record, login, body or {})
        return 200, self.world.pull_json(p["repo"], record), {}

    def list_reviews(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        record = self._pull(p)
        self.world.settle(p["repo"], record)
        return self._page([self.world.review_json(p["repo"], record, review) for review in record["reviews"]], q)

    def create_review(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        record = self._pull(p)
        self.world.settle(p["repo"], record)
        review = self.world.add_review(p["repo"], record, login, body or {})
        self.world.settle(p["repo"], record)
        return 200, self.world.review_json(p["repo"], record, review), {}

    def merge_pull(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        record = self._pull(p)
        self.world.settle(p["repo"], record)
        landed = self.world.merge(p["repo"], record, login, body or {})
        return 200, {"sha": landed, "merged": True, "message": "Pull Request successfully merged"}, {}

    def update_branch(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        record = self._pull(p)
        self.world.update_branch(p["repo"], record, login, body or {})
        self.world.settle(p["repo"], record)
        url = f"{self.world.repository(p['repo'])['html_url']}/pull/{record['number']}"
        return 202, {"message": "Updating pull request branch.", "url": url}, {}

    def create_comment(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        record = self._pull(p)
        comment = {"id": self.world.new_id(), "body": (body or {}).get("body", ""), "created_at": shapes.now(),
                   "user": login, "number": record["number"]}  # fmt: skip
        self.world.records(p["repo"])["comments"].append(comment)
        repo = self.world.repository(p["repo"])
        return 201, shapes.comment(repo, record["number"], comment, self.world.users()[login]), {}

    def add_labels(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        record = self._pull(p)
        wanted = body.get("labels", []) if isinstance(body, dict) else body
        record["labels"] += [str(name) for name in wanted if name not in record["labels"]]
        repo = self.world.repository(p["repo"])
        return 200, [shapes.label(repo, name) for name in record["labels"]], {}

    def create_status(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        if (body or {}).get("state") not in ("error", "failure", "pending", "success"):
            raise validation_failed("state must be error, failure, pending or success", "Status")
        record = {"id": self.world.new_id(), "sha": p["sha"], "state": body["state"], "user": login,
                  "context": body.get("context") or "default", "description": body.get("description"),
                  "target_url": body.get("target_url"), "created_at": shapes.now()}  # fmt: skip
        self.world.records(p["repo"])["statuses"].append(record)
        return 201, shapes.status(self.world.repository(p["repo"]), record, self.world.users()[login]), {}

    def combined_status(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        sha = self._commit(p)
        latest: dict[str, dict] = {}
        for record in self.world.records(p["repo"])["statuses"]:
            if record["sha"] == sha:
                latest[record["context"]] = record
        repo, users = self.world.repository(p["repo"]), self.world.users()
        statuses = [shapes.status(repo, record, users[record["user"]]) for record in latest.values()]
        return 200, shapes.combined_status(repo, sha, statuses), {}

    def create_check_run(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        body = body or {}
        if not body.get("name") or not body.get("head_sha"):
            raise validation_failed("name and head_sha are required", "CheckRun")
        done = body.get("conclusion") is not None
        stamp = shapes.now()
        record = {
            "id": self.world.new_id(),
            "name": body["name"],
            "head_sha": body["head_sha"],
            "status": "completed" if done else body.get("status", "queued"),
            "conclusion": body.get("conclusion"),
            "started_at": stamp,
            "completed_at": stamp if done else None,
            "details_url": body.get("details_url"),
            "title": (body.get("output") or {}).get("title"),
            "summary": (body.get("output") or {}).get("summary"),
        }
        self.world.records(p["repo"])["check_runs"].append(record)
        return 201, shapes.check_run(self.world.repository(p["repo"]), record), {}

    def list_check_runs(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        sha = self._commit(p)
        latest: dict[str, dict] = {}
        for record in self.world.records(p["repo"])["check_runs"]:
            if record["head_sha"] == sha:
                latest[record["name"]] = record
        repo = self.world.repository(p["repo"])
        runs = [shapes.check_run(repo, record) for record in latest.values()]
        return 200, {"total_count": len(runs), "check_runs": runs}, {}

    def create_ref(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        ref, sha = str((body or {}).get("ref", "")), str((body or {}).get("sha", ""))
        if not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        repo = self.world.repos[self._repo_name(p)]
        if repo.sha(ref) is not None:
            raise ApiError(422, "Reference already exists")
        if repo.commit_of(sha) != sha:
            raise ApiError(422, "Object does not exist")
        repo.create_ref(ref, sha)
        return 201, shapes.ref(self.world.repository(p["repo"]), ref, sha), {}

    def get_ref(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        ref = f"refs/{p['ref']}"
        sha = self.world.repos[self._repo_name(p)].sha(ref)
        if sha is None or not p["ref"].startswith(("heads/", "tags/")):
            raise ApiError(404, "Not Found")
        kind = self.world.repos[p["repo"]].object_type(sha)
        return 200, shapes.ref(self.world.repository(p["repo"]), ref, sha, kind), {}

    def delete_ref(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        ref, name = f"refs/{p['ref']}", self._repo_name(p)
        sha = self.world.repos[name].sha(ref)
        if sha is None:
            raise ApiError(422, "Reference does not exist")
        rule = self.world.protection.get(name)
        if rule is not None and ref == f"refs/heads/{rule.branch}":
            raise ApiError(422, "Cannot delete this protected branch")
        self.world.repos[name].delete_ref(ref, sha)
        return 204, None, {}

    def get_tag(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        repo = self.world.repos[self._repo_name(p)]
        if repo.sha(p["sha"]) is None or repo.object_type(p["sha"]) != "tag":
            raise ApiError(404, "Not Found")
        name, message, target, kind = repo.tag_object(p["sha"])
        return 200, shapes.git_tag(self.world.repository(p["repo"]), p["sha"], name, message, target, kind), {}

    def list_tags(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        repo_json = self.world.repository(p["repo"])
        tags = self.world.repos[p["repo"]].tags()
        return self._page([shapes.tag(repo_json, name, sha) for name, sha in tags], q)

    def list_releases(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        repo, users = self.world.repository(p["repo"]), self.world.users()
        records = reversed(self.world.records(p["repo"])["releases"])
        return self._page([shapes.release(repo, record, users[record["user"]]) for record in records], q)

    def get_release(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        for record in self.world.records(self._repo_name(p))["releases"]:
            if record["tag_name"] == p["tag"]:
                author = self.world.users()[record["user"]]
                return 200, shapes.release(self.world.repository(p["repo"]), record, author), {}
        raise ApiError(404, "Not Found")

    def create_release(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        body, name = body or {}, self._repo_name(p)
        tag_name = str(body.get("tag_name", ""))
        if any(record["tag_name"] == tag_name for record in self.world.records(name)["releases"]):
            raise ApiError(
                422, "Validation Failed", {"resource": "Release", "code": "already_exists", "field": "tag_name"}
            )
        repo = self.world.repos[name]
        if repo.sha(f"refs/tags/{tag_name}") is None:  # GitHub tags the target; an existing tag is released as it is
            target = repo.commit_of(str(body.get("target_commitish") or "HEAD"))
            if target is None:
                raise validation_failed("target_commitish is not a commit", "Release")
            repo.create_ref(f"refs/tags/{tag_name}", target)
        record = {"id": self.world.new_id(), "tag_name": tag_name, "user": login, "created_at": shapes.now(),
                  "target_commitish": body.get("target_commitish") or "main", "name": body.get("name"),
                  "body": body.get("body"), "draft": bool(body.get("draft"))}  # fmt: skip
        self.world.records(name)["releases"].append(record)
        return 201, shapes.release(self.world.repository(name), record, self.world.users()[login]), {}

    def post_graphql(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        return 200, graphql.answer(self.world, login, body), {}

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _repo_name(self, p: dict) -> str:
        self.world.repository(p["repo"])  # 404 for a repository the stand-in does not serve
        return str(p["repo"])

    def _pull(self, p: dict) -> dict[str, Any]:
        return self.world.pull_record(self._repo_name(p), int(p["n"]))

    def _commit(self, p: dict) -> str:
        repo = self.world.repos[self._repo_name(p)]
        sha = repo.commit_of(p["ref"]) or repo.commit_of(f"refs/heads/{p['ref']}")
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {p['ref']}")
        return sha

    def _page(self, items: list[Any], q: dict[str, str]) -> tuple[int, Any, dict]:
        size, page = min(int(q.get("per_page", _PAGE_SIZE)), 100), int(q.get("page", 1))
        headers = {}
        if page * size < len(items):
            url = urlsplit(self.path)
            query = urlencode({**q, "page": page + 1})
            headers["Link"] = f'<{self.world.base}{url.path}?{query}>; rel="next"'
        return 200, items[(page - 1) * size : page * size], headers

    def _login(self) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        for known, login in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.strip().encode()):
                return login
        return None

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if status != 204 else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        log.info("%s %s", self.command, self.path.split("?")[0])


def serve(settings: GitHubStandinSettings) -> None:
    tokens = json.loads(settings.tokens_file.read_text(encoding="utf-8"))
    base = f"http://127.0.0.1:{settings.port}"
    world = World(base, settings.owner, settings.repositories, settings.protection, list(tokens), settings.state_file)
    for name in settings.allow_auto_merge:  # a setting a PATCH changed since is kept
        world.records(name).setdefault("allow_auto_merge", True)
    if settings.webhooks:
        world.announce = functools.partial(Deliveries(settings.webhooks).announce, world)
    handler = type(
        "Handler", (_Handler,), {"world": world, "tokens": {token: login for login, token in tokens.items()}}
    )
    server = ThreadingHTTPServer(("127.0.0.1", settings.port), handler)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    log.info("serving %s on %s", ", ".join(settings.repositories), base)
    server.serve_forever()


@dataclass(frozen=True)
class GitHubStandinServer(ModuleServer):
    """The stand-in as a detached ``python -m promo.local.standin_github`` process, with its files under ``root``."""

    program = "promo GitHub stand-in"
    module = "promo.local.standin_github"
    config_name = "config.json"
    log_name = "standin-github.log"
    ready_path = "/healthz"


def main(argv: list[str]) -> None:
    module_main(argv, "promo.local.standin_github", GitHubStandinSettings, serve)
