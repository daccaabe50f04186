"""What the GitHub stand-in knows and the rules it applies: pull requests, reviews, checks, releases, protection.

State lives in memory under one lock and is written to a JSON file after every change, so a restarted stand-in
still knows its pull requests. Git is the sandbox's bare repositories (``repos.BareRepo``): a pull request's head
is its branch's commit while it is open, as on GitHub.

Branch protection of a repository's protected branch, as GitHub applies it on merge:
- ``required_approvals`` approvals, counting each writer's latest APPROVED or CHANGES_REQUESTED review (a requested
  change blocks until that writer approves); ``writers`` are the logins with write access (none listed: everyone in
  the tokens file), and a review by anyone else is kept but does not count;
- with ``dismiss_stale_reviews``, an approval of an older head is DISMISSED when the head moves;
- ``required_checks``: each must be a successful commit status or check run on the head;
- the merge names the head it expects (``sha``): 409 when the head moved; a base that moved during it is 405.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from promo.local.standin_github import shapes
from promo.local.standin_github.repos import BareRepo, GitFailed

WRITE_ASSOCIATION, READ_ASSOCIATION = "COLLABORATOR", "NONE"


class Protection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    branch: str = "main"
    required_approvals: int = Field(default=1, ge=0, le=6)
    writers: list[str] = Field(default_factory=list, description="logins with write access; none: every login")
    dismiss_stale_reviews: bool = True
    required_checks: list[str] = Field(default_factory=list)
    guarded_paths: list[str] = Field(default_factory=list, description="what a direct push may not change; none: all")
    source: Literal["branch-protection", "ruleset"] = Field(
        default="branch-protection", description="where a client reads the rule: the branch's protection, or rulesets"
    )


class ApiError(Exception):
    """An error answer: HTTP status, GitHub's message, and its ``errors`` items."""

    def __init__(self, status: int, message: str, *errors: dict[str, Any] | str) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def validation_failed(message: str, resource: str = "PullRequest") -> ApiError:
    return ApiError(422, "Validation Failed", {"resource": resource, "code": "custom", "message": message})


class World:
    def __init__(self, base_url: str, owner: str, repositories: dict[str, Path], protection: dict[str, Protection],
                 logins: list[str], state_file: Path) -> None:  # fmt: skip
        self.base, self.owner, self.lock = base_url, owner, threading.Lock()
        self.repos = {name: BareRepo(path) for name, path in repositories.items()}
        self.protection = protection
        self.logins = logins
        self.state_file = state_file
        self.state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {"next_id": 1}
        # told (repository, pull record, login, review or None) of each review submitted and each close, merges
        # included: the webhook deliveries (webhooks.py) when the settings name any
        self.announce: Callable[[str, dict[str, Any], str, dict[str, Any] | None], None] = lambda *change: None
        for name, rule in protection.items():
            self.repos[name].protect(rule.branch, rule.guarded_paths)

    # -- identities and objects ------------------------------------------------------------------------------------

    def users(self) -> dict[str, dict[str, Any]]:
        return {login: shapes.user(self.base, login, 1000 + i) for i, login in enumerate(self.logins)}

    def repository(self, name: str) -> dict[str, Any]:
        if name not in self.repos:
            raise ApiError(404, "Not Found")
        owner = shapes.user(self.base, self.owner, 999)
        branch = self.protection.get(name, Protection()).branch
        return shapes.repository(self.base, f"{self.owner}/{name}", 100 + sorted(self.repos).index(name), owner, branch)

    def records(self, name: str) -> dict[str, Any]:
        return self.state.setdefault(name, {"next_number": 1, "pulls": {}, "statuses": [], "check_runs": [],
                                            "releases": [], "comments": []})  # fmt: skip

    def new_id(self) -> int:
        self.state["next_id"] += 1
        return int(self.state["next_id"])

    def save(self) -> None:
        scratch = self.state_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(self.state, indent=1))
        scratch.replace(self.state_file)

    # -- pull requests ---------------------------------------------------------------------------------------------

    def pull_record(self, name: str, number: int) -> dict[str, Any]:
        record = self.records(name)["pulls"].get(str(number))
        if record is None:
            raise ApiError(404, "Not Found")
        return record

    def head_sha(self, name: str, record: dict[str, Any]) -> str:
        """An open pull request follows its branch; a closed one keeps the head it was closed at."""
        if record["state"] == "open":
            record["head_sha"] = self.repos[name].commit_of(f"refs/heads/{record['head']}") or record["head_sha"]
        return str(record["head_sha"])

    def pull_json(self, name: str, record: dict[str, Any], *, simple: bool = False) -> dict[str, Any]:
        self.settle(name, record)
        head = self.head_sha(name, record)
        base = self.repos[name].commit_of(f"refs/heads/{record['base']}") or head
        mergeable, state = (None, "unknown") if record["state"] != "open" else self.merge_state(name, record)
        return shapes.pull(self.base, self.repository(name), record, self.users(), head, base, simple=simple,
                           mergeable=mergeable, mergeable_state=state)  # fmt: skip

    def create_pull(self, name: str, login: str, body: dict[str, Any]) -> dict[str, Any]:
        repo, records = self.repos[name], self.records(name)
        head, base = str(body["head"]).split(":")[-1], str(body["base"])
        head_sha, base_sha = repo.commit_of(f"refs/heads/{head}"), repo.commit_of(f"refs/heads/{base}")
        if head_sha is None or base_sha is None:
            missing = "head" if head_sha is None else "base"
            raise ApiError(422, "Validation Failed", {"resource": "PullRequest", "field": missing, "code": "invalid"})
        for other in records["pulls"].values():
            if other["state"] == "open" and other["head"] == head and other["base"] == base:
                raise validation_failed(f"A pull request already exists for {self.owner}:{head}.")
        if repo.is_ancestor(head_sha, base_sha):
            raise validation_failed(f"No commits between {base} and {head}")
        number, stamp = records["next_number"], shapes.now()
        records["next_number"] += 1
        record = {
            "number": number, "id": self.new_id(), "title": body.get("title") or head, "body": body.get("body"),
            "head": head, "base": base, "head_sha": head_sha, "user": login, "state": "open",
            "draft": bool(body.get("draft")), "labels": [], "reviews": [], "auto_merge": None, "created_at": stamp,
            "updated_at": stamp, "closed_at": None, "merged_at": None, "merged_by": None, "merge_commit_sha": None,
        }  # fmt: skip
        records["pulls"][str(number)] = record
        return record

    def update_pull(self, name: str, record: dict[str, Any], login: str, body: dict[str, Any]) -> None:
        self.head_sha(name, record)  # fix the head before a close freezes it
        for key in ("title", "body"):
            if key in body:
                record[key] = body[key]
        if body.get("state") == "closed" and record["state"] == "open":
            record.update(state="closed", closed_at=shapes.now(), auto_merge=None)
            self.announce(name, record, login, None)
        elif body.get("state") == "open" and record["state"] == "closed" and record["merged_at"] is None:
            record.update(state="open", closed_at=None)
        record["updated_at"] = shapes.now()

    # -- reviews ---------------------------------------------------------------------------------------------------

    def writers(self, name: str) -> list[str]:
        return self.protection.get(name, Protection()).writers or self.logins

    def association(self, name: str, login: str) -> str:
        return WRITE_ASSOCIATION if login in self.writers(name) else READ_ASSOCIATION

    def add_review(self, name: str, record: dict[str, Any], login: str, body: dict[str, Any]) -> dict[str, Any]:
        event, words = body.get("event"), body.get("body") or ""
        if event not in ("APPROVE", "REQUEST_CHANGES", "COMMENT"):
            raise validation_failed("the stand-in takes submitted reviews only: APPROVE, REQUEST_CHANGES or COMMENT",
                                    "PullRequestReview")  # fmt: skip
        if record["state"] != "open":
            raise ApiError(422, "Unprocessable Entity", "Can not review a closed pull request")
        if event != "COMMENT" and login == record["user"]:
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise ApiError(422, "Unprocessable Entity", f"Review Can not {verb} your own pull request")
        if event != "APPROVE" and not words.strip():
            raise validation_failed("Body is required for a review that requests changes or comments",
                                    "PullRequestReview")  # fmt: skip
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}[event]
        review = {
            "id": self.new_id(), "user": login, "body": words, "state": state, "submitted_at": shapes.now(),
            "commit_id": body.get("commit_id") or self.head_sha(name, record),
        }  # fmt: skip
        record["reviews"].append(review)
        self.announce(name, record, login, review)
        return review

    def review_json(self, name: str, record: dict[str, Any], review: dict[str, Any]) -> dict[str, Any]:
        association = self.association(name, review["user"])
        return shapes.review(self.repository(name), record["number"], review, self.users(), association)

    def dismiss_stale(self, name: str, record: dict[str, Any]) -> None:
        rule = self.protection.get(name)
        if rule is None or not rule.dismiss_stale_reviews or record["state"] != "open":
            return
        head = self.head_sha(name, record)
        for review in record["reviews"]:
            if review["state"] == "APPROVED" and review["commit_id"] != head:
                review["state"] = "DISMISSED"

    # -- merging ---------------------------------------------------------------------------------------------------

    def merge_state(self, name: str, record: dict[str, Any]) -> tuple[bool | None, str]:
        """(mergeable, mergeable_state) of an open pull request, as GitHub words them."""
        repo, head = self.repos[name], self.head_sha(name, record)
        base = repo.commit_of(f"refs/heads/{record['base']}")
        if base is None or repo.test_merge(base, head) is None:
            return False, "dirty"
        if record["draft"]:
            return True, "draft"
        if self.blocked_by(name, record):
            return True, "blocked"
        failing = [check for check, state in self.check_states(name, head).items() if state == "failure"]
        return True, "unstable" if failing else "clean"

    def blocked_by(self, name: str, record: dict[str, Any]) -> str | None:
        """The protection rule a merge would break now, in GitHub's words; None when it may merge."""
        rule = self.protection.get(name)
        if rule is None or rule.branch != record["base"]:
            return None
        latest: dict[str, str] = {}
        for review in record["reviews"]:
            if review["user"] in self.writers(name) and review["state"] != "COMMENTED":
                latest[review["user"]] = review["state"]
        if "CHANGES_REQUESTED" in latest.values():
            return "Changes must be made before merging: a reviewer with write access requested changes."
        approvals = sum(state == "APPROVED" for state in latest.values())
        if approvals < rule.required_approvals:
            count = rule.required_approvals
            reviews = "reviews are" if count > 1 else "review is"
            return f"At least {count} approving {reviews} required by reviewers with write access."
        states = self.check_states(name, self.head_sha(name, record))
        for check in rule.required_checks:
            if states.get(check) != "success":
                verb = "failing" if states.get(check) == "failure" else "expected"
                return f'Required status check "{check}" is {verb}.'
        return None

    def check_states(self, name: str, sha: str) -> dict[str, str]:
        """success, pending or failure of every status context and check run name on ``sha`` (the latest each)."""
        records, found = self.records(name), {}
        for status in records["statuses"]:
            if status["sha"] == sha:
                found[status["context"]] = {"error": "failure"}.get(status["state"], status["state"])
        for run in records["check_runs"]:
            if run["head_sha"] == sha:
                done = run["status"] == "completed"
                bad = run["conclusion"] in ("failure", "cancelled", "timed_out", "action_required")
                found[run["name"]] = "pending" if not done else "failure" if bad else "success"
        return found

    def merge(self, name: str, record: dict[str, Any], login: str, body: dict[str, Any]) -> str:
        """Merge and return the commit that landed; ApiError 405/409 when GitHub would refuse."""
        repo, head = self.repos[name], self.head_sha(name, record)
        if record["state"] != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        if record["draft"]:
            raise ApiError(405, "Pull Request is still a draft")
        if body.get("sha") and body["sha"] != head:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        method = body.get("merge_method") or "merge"
        if method not in ("merge", "squash"):
            raise ApiError(405, f"{method.capitalize()} merges are not allowed on this repository.")
        base_ref = f"refs/heads/{record['base']}"
        base = repo.commit_of(base_ref)
        tree = repo.test_merge(base, head) if base is not None else None
        if base is None or tree is None:
            raise ApiError(405, "Pull Request is not mergeable")
        rule = self.blocked_by(name, record)
        if rule is not None:
            raise ApiError(405, rule)
        number, title = record["number"], record["title"]
        if method == "squash":
            message = f"{body.get('commit_title') or f'{title} (#{number})'}\n\n{body.get('commit_message') or ''}"
            parents = [base]
        else:
            subject = body.get("commit_title") or f"Merge pull request #{number} from {self.owner}/{record['head']}"
            message, parents = f"{subject}\n\n{body.get('commit_message') or title}", [base, head]
        landed = repo.commit(tree, parents, message.strip() + "\n", login)
        try:
            repo.move_ref(base_ref, landed, base)
        except GitFailed:
            raise ApiError(405, "Base branch was modified. Review and try the merge again.") from None
        stamp = shapes.now()
        record.update(state="closed", merged_at=stamp, closed_at=stamp, updated_at=stamp, merged_by=login,
                      merge_commit_sha=landed, auto_merge=None)  # fmt: skip
        self.announce(name, record, login, None)
        return landed

    def update_branch(self, name: str, record: dict[str, Any], login: str, body: dict[str, Any]) -> None:
        """Merge the base into the pull request's branch (GitHub's "Update branch")."""
        repo, head = self.repos[name], self.head_sha(name, record)
        expected = body.get("expected_head_sha")
        if expected and expected != head:
            raise ApiError(422, "expected head sha didn't match current head ref.")
        base = repo.commit_of(f"refs/heads/{record['base']}")
        if base is None or repo.is_ancestor(base, head):
            return
        tree = repo.test_merge(head, base)
        if tree is None:
            raise ApiError(422, "merge conflict between base and head")
        message = f"Merge branch '{record['base']}' into {record['head']}\n"
        updated = repo.commit(tree, [head, base], message, login)
        repo.move_ref(f"refs/heads/{record['head']}", updated, head)
        if record["auto_merge"] and login in self.writers(name):  # GitHub keeps auto-merge through a writer's push
            record["auto_merge"]["expected_head"] = updated

    def enable_auto_merge(self, name: str, record: dict[str, Any], login: str, inputs: dict[str, Any]) -> None:
        if record["state"] != "open":
            raise ApiError(422, "Pull request is closed")
        mergeable, state = self.merge_state(name, record)
        if state in ("clean", "unstable", "has_hooks"):
            raise ApiError(422, f"Pull request Pull request is in {state} status")
        if inputs.get("expectedHeadOid") and inputs["expectedHeadOid"] != self.head_sha(name, record):
            raise ApiError(422, "Head sha didn't match expected head sha")
        record["auto_merge"] = {
            "enabled_by": self.users()[login], "merge_method": str(inputs.get("mergeMethod") or "MERGE").lower(),
            "commit_title": inputs.get("commitHeadline") or "", "commit_message": inputs.get("commitBody") or "",
            "expected_head": self.head_sha(name, record),
        }  # fmt: skip

    def settle(self, name: str, record: dict[str, Any]) -> None:
        """What GitHub does by itself: dismiss stale approvals, and merge an auto-merge pull request once it may."""
        self.dismiss_stale(name, record)
        auto = record.get("auto_merge")
        if record["state"] != "open" or not auto:
            return
        if auto["expected_head"] != self.head_sha(name, record):  # a git push: the stand-in cannot tell a writer's
            record["auto_merge"] = None
        elif self.merge_state(name, record)[1] in ("clean", "unstable"):
            body = {"merge_method": auto["merge_method"], "commit_title": auto["commit_title"] or None,
                    "commit_message": auto["commit_message"] or None, "sha": auto["expected_head"]}  # fmt: skip
            try:
                self.merge(name, record, auto["enabled_by"]["login"], body)
            except ApiError:  # the base moved meanwhile: GitHub tries again later, so does the next read
                pass
