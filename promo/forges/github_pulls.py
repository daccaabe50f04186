"""Pull requests of one GitHub repository, for writes that go through review: branch, open, review, check, merge.

Built on ``GitHubForge``'s requests (httpx, its token providers, its rate-limit waits and error mapping), and
answering with promo's own small dataclasses, so callers never read GitHub's JSON. Why httpx and not githubkit:
docs/github.md ("The client").

What GitHub leaves to the caller is done here:

- Opening is idempotent: the open pull request for the same head and base is reused (listed with ``head=owner:branch``,
  as GitHub ignores a bare branch), also when a concurrent create answers 422 "A pull request already exists".
- A merge names the head commit that was reviewed (``sha``): a 409 is ``HeadMoved``. A 405 is ``BaseMoved`` (worth
  retrying) when GitHub says the base was modified, else ``NotMergeable`` with GitHub's reason (a missing approval,
  a required check, conflicts).
- Auto-merge has no REST call: it is GraphQL's ``enablePullRequestAutoMerge``, which GitHub refuses for a pull
  request that is already mergeable ("is in clean status"); then the pull request is merged directly, with ``sha``.
- The checks a merge needs are the union of the branch protection's (``GET /branches/{b}``: its summary of
  ``required_status_checks``, readable with contents read, unlike ``/protection``) and the rulesets' (``GET
  /rules/branches/{b}``, metadata read); a token that may read neither gets None: every check then counts.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from promo.errors import (
    AuthError, BaseMoved, ConflictError, HeadMoved, InputError, NotFound, NotMergeable, ToolError,
)
from promo.forges.base import check_commit
from promo.forges.github import GitHubForge, _AlreadyExists
from promo.gitops.mirror import check_branch_name

MergeMethod = Literal["merge", "squash"]
ReviewEvent = Literal["APPROVE", "REQUEST_CHANGES"]
CheckState = Literal["success", "pending", "failure"]

_MERGE_REFUSALS = frozenset({405, 409})
_ALREADY_CLEAN = re.compile(r"is in (clean|unstable|has_hooks) status", re.IGNORECASE)
_CHECK_FAILURES = frozenset({"failure", "cancelled", "timed_out", "action_required", "error"})
_ENABLE_AUTO_MERGE = """
mutation($pullRequestId: ID!, $mergeMethod: PullRequestMergeMethod!, $expectedHeadOid: GitObjectID!,
         $commitHeadline: String, $commitBody: String) {
  enablePullRequestAutoMerge(input: {pullRequestId: $pullRequestId, mergeMethod: $mergeMethod,
      expectedHeadOid: $expectedHeadOid, commitHeadline: $commitHeadline, commitBody: $commitBody}) {
    pullRequest { number }
  }
}"""
_DISABLE_AUTO_MERGE = """
mutation($pullRequestId: ID!) {
  disablePullRequestAutoMerge(input: {pullRequestId: $pullRequestId}) { pullRequest { number } }
}"""


@dataclass(frozen=True)
class PullRequestState:
    """What a gate reads of a pull request. ``mergeable`` is None while GitHub still computes it; ``mergeable_state``
    is GitHub's word for why (clean, blocked, behind, dirty, unstable, draft, unknown, has_hooks)."""

    number: int
    url: str  # the API's
    html_url: str
    node_id: str
    title: str
    head: str
    head_sha: str
    base: str
    state: Literal["open", "closed"]
    merged: bool
    mergeable: bool | None
    mergeable_state: str
    merge_commit_sha: str | None
    labels: tuple[str, ...]
    auto_merge: bool = False  # GitHub merges it by itself once its rules allow (enablePullRequestAutoMerge)


@dataclass(frozen=True)
class Review:
    """A submitted review; ``state`` is APPROVED, CHANGES_REQUESTED, COMMENTED or DISMISSED. ``commit_id`` is the
    head the reviewer saw (None if GitHub lost the commit); ``login`` is None for a deleted account."""

    id: int
    login: str | None
    state: str
    commit_id: str | None
    body: str
    submitted_at: str | None


@dataclass(frozen=True)
class Check:
    """One commit status (``kind`` status) or check run, reduced to success, pending or failure."""

    name: str
    kind: Literal["status", "check-run"]
    state: CheckState
    detail: str  # GitHub's own word: a status's description, a check run's conclusion or status
    url: str | None


@dataclass(frozen=True)
class Checks:
    """Every status and check run on a commit; ``required`` narrows a verdict to the checks GitHub requires (None:
    every check counts, as when the required ones cannot be read)."""

    sha: str
    checks: tuple[Check, ...]

    def state(self, required: Collection[str] | None = None) -> CheckState:
        """failure if a (required) check failed; pending if one has not finished or a required one is missing."""
        chosen = self._chosen(required)
        if any(check.state == "failure" for check in chosen):
            return "failure"
        missing = set(required or ()) - {check.name for check in chosen}
        if any(check.state == "pending" for check in chosen) or missing:
            return "pending"
        return "success"

    def failed(self, required: Collection[str] | None = None) -> list[Check]:
        return [check for check in self._chosen(required) if check.state == "failure"]

    def _chosen(self, required: Collection[str] | None) -> list[Check]:
        return [check for check in self.checks if required is None or check.name in required]


@dataclass(frozen=True)
class RequiredChecks:
    """The checks GitHub requires for a merge into a branch, by name (a status's context or a check run's name);
    ``names`` is None when the token may not read them, and ``unreadable`` then says GitHub's answer."""

    names: frozenset[str] | None
    unreadable: str = ""


@dataclass(frozen=True)
class Merged:
    sha: str  # the commit that landed on the base branch


class GitHubPullRequests:
    """The pull-request side of one repository, over ``forge``'s connection and token."""

    def __init__(self, forge: GitHubForge) -> None:
        self.forge = forge
        self.owner = forge.owner_repo.split("/")[0]
        self._repo_url = f"{forge.api_url}/repos/{forge.owner_repo}"

    def __repr__(self) -> str:
        return f"GitHubPullRequests({self.forge.owner_repo!r}, api_url={self.forge.api_url!r})"

    def whoami(self) -> str:
        """The login the token acts as (``GET /user``): who a review submitted with it is from."""
        return str(self._call("GET", f"{self.forge.api_url}/user", action="asking whose token this is")["login"])

    def create_branch(self, branch: str, sha: str) -> None:
        """Branch ``branch`` at commit ``sha``; one already there at ``sha`` is fine, at another commit a conflict."""
        check_branch_name(branch)
        check_commit(sha)
        body = {"ref": f"refs/heads/{branch}", "sha": sha}
        try:
            self._call("POST", "/git/refs", action=f"creating branch {branch}", json=body)
        except _AlreadyExists:
            there = self.branch_sha(branch)
            if there != sha:
                raise ConflictError(
                    f"branch {branch} already exists in {self.forge.owner_repo} at {there}, not at {sha}",
                    "a promotion's branch is never moved: close its pull request and delete the branch, then re-run",
                ) from None

    def delete_branch(self, branch: str) -> None:
        """Delete a promotion's branch once its pull request is merged or closed; one already gone is fine."""
        check_branch_name(branch)
        action = f"deleting branch {branch}"
        url = f"{self._repo_url}/git/refs/heads/{quote(branch)}"
        response = self.forge.request("DELETE", url, action=action, allow=frozenset({422}))
        if response.status_code == 422 and "does not exist" not in _message(response.json()):
            raise ConflictError(
                f"{action} in {self.forge.owner_repo} failed: {_message(response.json())}", "delete it by hand"
            )

    def branch_sha(self, branch: str) -> str | None:
        try:
            data = self._call("GET", f"/git/ref/heads/{quote(branch)}", action=f"reading branch {branch}")
        except NotFound:
            return None
        return str(data["object"]["sha"])

    def open(self, head: str, base: str, *, title: str, body: str, labels: Iterable[str] = ()) -> PullRequestState:
        """The open pull request from ``head`` into ``base``: the existing one (a re-run), else a new one."""
        check_branch_name(head)
        check_branch_name(base)
        existing = self.find_open(head, base)
        if existing is None:
            request = {"title": title, "head": head, "base": base, "body": body, "maintainer_can_modify": False}
            try:
                existing = _pull(
                    self._call("POST", "/pulls", action=f"opening a pull request from {head}", json=request)
                )
            except _AlreadyExists:  # another run opened it between our lookup and our create
                existing = self.find_open(head, base)
                if existing is None:
                    raise
        missing = [label for label in labels if label not in existing.labels]
        if missing:
            self.add_labels(existing.number, missing)
            existing = self.get(existing.number)
        return existing

    def find_open(self, head: str, base: str) -> PullRequestState | None:
        params = {"state": "open", "head": f"{self.owner}:{head}", "base": base}
        for data in self.forge.pages("/pulls", params, action=f"looking up pull requests from {head}"):
            return self.get(int(data["number"]))  # a listing lacks mergeable and merged
        return None

    def list_open(self, base: str, head_prefix: str = "") -> list[PullRequestState]:
        """Open pull requests into ``base`` whose branch starts with ``head_prefix`` (``promo/<app>/<env>/``: the
        promotions into one environment, so a newer one can close those it supersedes), oldest first."""
        check_branch_name(base)
        pages = self.forge.pages("/pulls", {"state": "open", "base": base}, action=f"listing pull requests into {base}")
        numbers = sorted(int(data["number"]) for data in pages if str(data["head"]["ref"]).startswith(head_prefix))
        return [self.get(number) for number in numbers]

    def get(self, number: int) -> PullRequestState:
        return _pull(self._call("GET", f"/pulls/{number}", action=f"reading pull request #{number}"))

    def reviews(self, number: int) -> list[Review]:
        """Submitted reviews, oldest first (pending drafts are left out: they decide nothing)."""
        pages = self.forge.pages(f"/pulls/{number}/reviews", action=f"listing reviews of pull request #{number}")
        return [_review(data) for data in pages if data.get("state") != "PENDING"]

    def review(self, number: int, event: ReviewEvent, *, body: str = "", commit: str | None = None) -> Review:
        """Submit a review as the token's user; ``commit`` is the head that was looked at (GitHub: the latest)."""
        if event == "REQUEST_CHANGES" and not body.strip():
            raise InputError("a review that requests changes needs words", "say what has to change")
        request: dict[str, Any] = {"event": event, "body": body}
        if commit is not None:
            request["commit_id"] = check_commit(commit)
        data = self._call("POST", f"/pulls/{number}/reviews", action=f"reviewing pull request #{number}", json=request)
        return _review(data)

    def checks(self, ref: str) -> Checks:
        """Commit statuses (latest per context) and check runs (latest per name) of ``ref``."""
        action = f"reading the checks of {ref}"
        combined = self._call("GET", f"/commits/{quote(ref)}/status", action=action)
        found = {status["context"]: _status(status) for status in combined["statuses"]}
        runs = self.forge.pages(
            f"/commits/{quote(ref)}/check-runs", {"filter": "latest"}, action=action, key="check_runs"
        )
        found.update((run["name"], _check_run(run)) for run in runs)
        return Checks(str(combined["sha"]), tuple(found[name] for name in sorted(found)))

    def required_checks(self, branch: str) -> RequiredChecks:
        """The checks a merge into ``branch`` needs: its branch protection's and its rulesets', as a token with
        contents read may see them (``GET /branches/{b}/protection`` would need administration read)."""
        check_branch_name(branch)
        where = quote(branch, safe="")
        try:
            data = self._call("GET", f"/branches/{where}", action=f"reading the protection of {branch}")
            rules = list(self.forge.pages(f"/rules/branches/{where}", action=f"reading the rulesets of {branch}"))
        except (AuthError, NotFound) as error:  # a rate limit is no answer: it raises as ever
            return RequiredChecks(None, str(error))
        names = set()
        if data.get("protected"):
            protection = (data.get("protection") or {}).get("required_status_checks") or {}
            if protection.get("enforcement_level", "everyone") != "off":
                names.update(protection.get("contexts") or [])
                names.update(check["context"] for check in protection.get("checks") or [])
        for rule in rules:
            if rule.get("type") == "required_status_checks":
                names.update(check["context"] for check in rule["parameters"]["required_status_checks"])
        return RequiredChecks(frozenset(names))

    def auto_merge_allowed(self) -> bool | None:
        """The repository's ``allow_auto_merge``; None when GitHub leaves it out (it shows a repository's merge
        settings only to tokens with administration read)."""
        data = self._call("GET", "", action="reading the repository's settings")
        allowed = data.get("allow_auto_merge")
        return None if allowed is None else bool(allowed)

    def merge(
        self, number: int, head_sha: str, method: MergeMethod, *, title: str | None = None, message: str | None = None
    ) -> Merged:
        """Merge only if the head is still ``head_sha``; ``title``/``message`` make the landed commit's message."""
        body: dict[str, Any] = {"sha": check_commit(head_sha), "merge_method": method}
        if title is not None:
            body["commit_title"] = title
        if message is not None:
            body["commit_message"] = message
        action = f"merging pull request #{number}"
        response = self.forge.request(
            "PUT", f"{self._repo_url}/pulls/{number}/merge", action=action, allow=_MERGE_REFUSALS, json=body
        )
        reason = _message(response.json())
        where = f"pull request #{number} of {self.forge.owner_repo}"
        if response.status_code == 409:
            raise HeadMoved(
                f"{where} is no longer at the reviewed commit {head_sha[:12]} ({reason})",
                "its branch was pushed to after the review: review the new head, or close it",
            )
        if response.status_code == 405 and "base branch was modified" in reason.lower():
            raise BaseMoved(f"{where}: the base branch moved during the merge ({reason})", "merge again")
        if response.status_code == 405:
            raise NotMergeable(
                f"GitHub will not merge {where}: {reason}", "meet the rule GitHub names, then merge again"
            )
        return Merged(str(response.json()["sha"]))

    def enable_auto_merge(
        self, pull: PullRequestState, method: MergeMethod, *, title: str | None = None, message: str | None = None
    ) -> Merged | None:
        """Let GitHub merge ``pull`` at its current head once reviews and checks allow (None: enabled); a pull request
        that is already mergeable is merged now instead (GitHub refuses auto-merge for it). NotMergeable when it is
        closed or merged by now."""
        variables = {
            "pullRequestId": pull.node_id, "mergeMethod": method.upper(), "expectedHeadOid": pull.head_sha,
            "commitHeadline": title, "commitBody": message,
        }  # fmt: skip
        action = f"enabling auto-merge of pull request #{pull.number}"
        errors = self._graphql(_ENABLE_AUTO_MERGE, variables, action=action)
        if not errors:
            return None
        if any(_ALREADY_CLEAN.search(error) for error in errors):
            return self.merge(pull.number, pull.head_sha, method, title=title, message=message)
        latest = self.get(pull.number)
        if latest.state != "open":  # merged or closed meanwhile (another run, a person)
            raise NotMergeable(f"{action}: it is closed ({'; '.join(errors)})", "read the pull request again")
        if latest.head_sha != pull.head_sha:  # pushed to since it was read: GitHub refuses the expectedHeadOid
            raise HeadMoved(
                f"{action}: its head moved from {pull.head_sha[:12]} to {latest.head_sha[:12]} ({'; '.join(errors)})",
                "read the pull request again: the new head needs its own gate",
            )
        raise ToolError(
            f"{action} failed: GitHub answered {'; '.join(errors)}", "allow auto-merge in the repository's settings"
        )

    def disable_auto_merge(self, pull: PullRequestState) -> None:
        """Stop GitHub merging ``pull`` by itself (before its branch is updated: GitHub keeps auto-merge on through
        a writer's push, and the new head has not passed promo's gate)."""
        action = f"disabling auto-merge of pull request #{pull.number}"
        errors = self._graphql(_DISABLE_AUTO_MERGE, {"pullRequestId": pull.node_id}, action=action)
        if errors and self.get(pull.number).state == "open":  # a closed one merges nothing by itself any more
            raise ToolError(f"{action} failed: GitHub answered {'; '.join(errors)}", "disable it on the pull request")

    def _graphql(self, query: str, variables: Mapping[str, Any], *, action: str) -> list[str]:
        """GraphQL's errors for ``query`` (none: done); GitHub answers them with 200."""
        answer = self.forge.request(
            "POST", _graphql_url(self.forge.api_url), action=action, json={"query": query, "variables": variables}
        )
        return [str(error.get("message", error)) for error in answer.json().get("errors") or []]

    def update_branch(self, number: int, head_sha: str) -> None:
        """Merge the base branch's head into the pull request's branch (GitHub's "Update branch"); the head moves,
        so approvals are dismissed where the repository dismisses stale reviews."""
        body = {"expected_head_sha": check_commit(head_sha)}
        action = f"updating the branch of pull request #{number}"
        self._call("PUT", f"/pulls/{number}/update-branch", action=action, json=body)

    def close(self, number: int, comment: str | None = None) -> PullRequestState:
        """Close without merging, after ``comment`` (why: superseded, stale, a cancelled run)."""
        if comment:
            self.comment(number, comment)
        return _pull(
            self._call("PATCH", f"/pulls/{number}", action=f"closing pull request #{number}", json={"state": "closed"})
        )

    def comment(self, number: int, body: str) -> None:
        self._call(
            "POST", f"/issues/{number}/comments", action=f"commenting on pull request #{number}", json={"body": body}
        )

    def add_labels(self, number: int, labels: Iterable[str]) -> None:
        body = {"labels": list(labels)}
        self._call("POST", f"/issues/{number}/labels", action=f"labelling pull request #{number}", json=body)

    def _call(self, method: str, path: str, *, action: str, **kwargs: Any) -> Any:
        url = path if path.startswith(("http://", "https://")) else f"{self._repo_url}{path}"
        return self.forge.request(method, url, action=action, **kwargs).json()


def _graphql_url(api_url: str) -> str:
    """GitHub Enterprise serves GraphQL at /api/graphql beside /api/v3; github.com (and the stand-in) at /graphql."""
    return f"{api_url.removesuffix('/api/v3')}/api/graphql" if api_url.endswith("/api/v3") else f"{api_url}/graphql"


def _message(data: Any) -> str:
    return str(data.get("message", "")) if isinstance(data, Mapping) else str(data)


def _pull(data: Mapping[str, Any]) -> PullRequestState:
    return PullRequestState(
        number=int(data["number"]),
        url=data["url"],
        html_url=data["html_url"],
        node_id=data["node_id"],
        title=data["title"],
        head=data["head"]["ref"],
        head_sha=data["head"]["sha"],
        base=data["base"]["ref"],
        state=data["state"],
        merged=bool(data.get("merged") or data.get("merged_at")),
        mergeable=data.get("mergeable"),
        mergeable_state=data.get("mergeable_state") or "unknown",
        merge_commit_sha=data.get("merge_commit_sha"),
        labels=tuple(label["name"] for label in data.get("labels") or []),
        auto_merge=data.get("auto_merge") is not None,
    )


def _review(data: Mapping[str, Any]) -> Review:
    user = data.get("user") or {}
    return Review(
        int(data["id"]),
        user.get("login"),
        data["state"],
        data.get("commit_id"),
        data.get("body") or "",
        data.get("submitted_at"),
    )


def _status(data: Mapping[str, Any]) -> Check:
    state = {"success": "success", "pending": "pending"}.get(data["state"], "failure")
    detail = data.get("description") or data["state"]
    return Check(data["context"], "status", state, detail, data.get("target_url"))  # type: ignore[arg-type]


def _check_run(data: Mapping[str, Any]) -> Check:
    conclusion = data.get("conclusion")
    if data.get("status") != "completed" or conclusion is None:
        state: CheckState = "pending"
    else:
        state = "failure" if conclusion in _CHECK_FAILURES else "success"  # neutral and skipped do not block
    return Check(data["name"], "check-run", state, conclusion or data["status"], data.get("html_url"))
