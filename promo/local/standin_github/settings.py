"""The stand-in's answers about a repository's settings and its branch's rules, as a client without admin rights
reads them: ``GET``/``PATCH /repos/{o}/{r}`` (``allow_auto_merge``), ``GET /branches/{b}`` (the branch protection's
summary: its required status checks) and ``GET /rules/branches/{b}`` (a ruleset's rules).

``Protection.source`` says where GitHub would show the stand-in's rule: as classic branch protection (the
branch's ``protection``) or as a ruleset (the rules of the branch). ``allow_auto_merge`` is kept in the state file
per repository, seeded from the settings, so a ``PATCH`` survives a restart; ``enablePullRequestAutoMerge`` is
refused while it is off, in GitHub's words.
"""

from __future__ import annotations

from typing import Any, ClassVar

from promo.local.standin_github import shapes
from promo.local.standin_github.world import ApiError, Protection, World, validation_failed

ROUTES = [
    ("GET", r"/repos/{o}/{r}", "get_repository"),
    ("PATCH", r"/repos/{o}/{r}", "update_repository"),
    ("GET", r"/repos/{o}/{r}/branches/(?P<branch>.+)", "get_branch"),
    ("GET", r"/repos/{o}/{r}/rules/branches/(?P<branch>.+)", "branch_rules"),
]
AUTO_MERGE_REFUSED = "Auto merge is not allowed for this repository"


def allow_auto_merge(world: World, name: str, allowed: bool | None = None) -> bool:
    """Whether repository ``name`` allows auto-merge; ``allowed`` sets it first (kept with the stand-in's state)."""
    records = world.records(name)
    if allowed is not None:
        records["allow_auto_merge"] = allowed
    return bool(records.get("allow_auto_merge", False))


class SettingsRoutes:
    """Route handlers mixed into the stand-in's request handler (server.py); each answers (status, body, headers)."""

    world: ClassVar[World]

    def get_repository(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        return 200, _full_repository(self.world, p["repo"]), {}

    def update_repository(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        self.world.repository(p["repo"])
        if not isinstance(body, dict) or set(body) - {"allow_auto_merge"}:
            raise validation_failed("the stand-in changes allow_auto_merge only", "Repository")
        if "allow_auto_merge" in body:
            allow_auto_merge(self.world, p["repo"], bool(body["allow_auto_merge"]))
        return 200, _full_repository(self.world, p["repo"]), {}

    def get_branch(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        repo_json, branch = self.world.repository(p["repo"]), p["branch"]
        sha = self.world.repos[p["repo"]].commit_of(f"refs/heads/{branch}")
        if sha is None:
            raise ApiError(404, "Branch not found")
        rule = self._rule(p["repo"], branch, "branch-protection")
        checks = rule.required_checks if rule else []
        protection = {
            "enabled": rule is not None,
            "required_status_checks": {
                "enforcement_level": "non_admins" if checks else "off", "contexts": checks,
                "checks": [{"context": check, "app_id": None} for check in checks],
            },
        }  # fmt: skip
        url = f"{repo_json['url']}/branches/{branch}"
        commit = {
            "sha": sha, "node_id": f"C_{sha[:12]}", "url": f"{repo_json['url']}/commits/{sha}",
            "html_url": f"{repo_json['html_url']}/commit/{sha}", "comments_url": f"{repo_json['url']}/comments",
            "author": None, "committer": None, "parents": [],
            "commit": {"url": f"{repo_json['url']}/git/commits/{sha}", "author": None, "committer": None,
                       "message": "", "comment_count": 0,
                       "tree": {"sha": sha, "url": f"{repo_json['url']}/git/trees/{sha}"}},
        }  # fmt: skip
        return 200, {
            "name": branch, "commit": commit, "protected": rule is not None, "protection": protection,
            "protection_url": f"{url}/protection",
            "_links": {"self": url, "html": f"{repo_json['html_url']}/tree/{branch}"},
        }, {}  # fmt: skip

    def branch_rules(self, login: str, p: dict, q: dict, body: Any) -> tuple[int, Any, dict]:
        self.world.repository(p["repo"])
        rule = self._rule(p["repo"], p["branch"], "ruleset")
        if rule is None:
            return 200, [], {}
        source = f"{self.world.owner}/{p['repo']}"
        ruleset = {"ruleset_source_type": "Repository", "ruleset_source": source, "ruleset_id": 1}
        rules: list[dict[str, Any]] = [{"type": "pull_request", **ruleset, "parameters": {
            "required_approving_review_count": rule.required_approvals,
            "dismiss_stale_reviews_on_push": rule.dismiss_stale_reviews, "require_code_owner_review": False,
            "require_last_push_approval": False, "required_review_thread_resolution": False,
        }}]  # fmt: skip
        if rule.required_checks:
            rules.append({"type": "required_status_checks", **ruleset, "parameters": {
                "strict_required_status_checks_policy": False,
                "required_status_checks": [{"context": check} for check in rule.required_checks],
            }})  # fmt: skip
        return 200, rules, {}

    def _rule(self, name: str, branch: str, source: str) -> Protection | None:
        rule = self.world.protection.get(name)
        return rule if rule is not None and rule.branch == branch and rule.source == source else None


def _full_repository(world: World, name: str) -> dict[str, Any]:
    """``GET /repos/{o}/{r}``: the repository with the settings a full answer carries (GitHub shows the merge
    settings to admins only; the stand-in shows them to every token)."""
    stamp = shapes.now()
    return {
        **world.repository(name), "license": None, "forks": 0, "open_issues": 0, "watchers": 0,
        "has_issues": True, "has_projects": False, "has_wiki": False, "has_discussions": False, "archived": False,
        "pushed_at": stamp, "created_at": stamp, "updated_at": stamp, "subscribers_count": 0, "network_count": 0,
        "allow_merge_commit": True, "allow_squash_merge": True, "allow_rebase_merge": False,
        "allow_auto_merge": allow_auto_merge(world, name), "delete_branch_on_merge": False,
    }  # fmt: skip
