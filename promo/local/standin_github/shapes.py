"""GitHub's JSON shapes, as the stand-in answers them: every field GitHub's description requires, with its own names.

Most are links and counters no client of the stand-in reads; they are here because a response must be a whole
GitHub object (tests validate each answer against the published description). Ids are small numbers the stand-in
hands out; node ids are ``<kind>_<id>``; times are whole-second UTC ISO 8601, as GitHub's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

_REPO_LINKS = (
    "archive assignees blobs branches collaborators comments commits compare contents contributors deployments "
    "downloads events forks git_commits git_refs git_tags issue_comment issue_events issues keys labels languages "
    "merges milestones notifications pulls releases stargazers statuses subscribers subscription tags teams trees hooks"
).split()
_USER_LINKS = "followers following gists starred subscriptions organizations repos events received_events".split()


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def user(base: str, login: str, user_id: int) -> dict[str, Any]:
    html = base  # the stand-in serves no pages: its "web" links are on its own host, as GitHub Enterprise's are
    return {
        "login": login, "id": user_id, "node_id": f"U_{user_id}", "avatar_url": f"{html}/{login}.png",
        "gravatar_id": None, "url": f"{base}/users/{login}", "html_url": f"{html}/{login}",
        **{f"{link}_url": f"{base}/users/{login}/{link}" for link in _USER_LINKS},
        "type": "Bot" if login.endswith("[bot]") else "User", "site_admin": False,
    }  # fmt: skip


def private_user(base: str, login: str, user_id: int) -> dict[str, Any]:
    """``GET /user``: the token's own account."""
    counts = "public_repos public_gists followers following private_gists total_private_repos owned_private_repos"
    return {
        **user(base, login, user_id), "name": login, "company": None, "blog": None, "location": None, "email": None,
        "hireable": None, "bio": None, **{key: 0 for key in counts.split()}, "disk_usage": 0, "collaborators": 0,
        "two_factor_authentication": True, "created_at": now(), "updated_at": now(),
    }  # fmt: skip


def repository(base: str, full_name: str, repo_id: int, owner: dict[str, Any], branch: str) -> dict[str, Any]:
    url = f"{base}/repos/{full_name}"
    html = f"{base}/{full_name}"
    return {
        "id": repo_id, "node_id": f"R_{repo_id}", "name": full_name.split("/")[1], "full_name": full_name,
        "license": None, "forks": 0, "owner": owner, "private": True, "html_url": html, "description": None,
        "fork": False, "url": url, **{f"{link}_url": f"{url}/{link}" for link in _REPO_LINKS},
        "git_url": f"{url}.git", "ssh_url": f"{url}.git", "clone_url": f"{url}.git", "svn_url": html,
        "mirror_url": None, "homepage": None, "language": None, "forks_count": 0, "stargazers_count": 0,
        "watchers_count": 0, "size": 0, "default_branch": branch, "open_issues_count": 0, "has_pages": False,
        "disabled": False, "pushed_at": None, "created_at": None, "updated_at": None, "open_issues": 0, "watchers": 0,
    }  # fmt: skip


def pull(base: str, repo: dict[str, Any], record: dict[str, Any], users: dict[str, dict[str, Any]],
         head_sha: str, base_sha: str, *, simple: bool = False, mergeable: bool | None = None,
         mergeable_state: str = "unknown") -> dict[str, Any]:  # fmt: skip
    """A pull request; ``simple`` is a listing's item, which lacks merged, mergeable and the counters."""
    number, url = record["number"], f"{repo['url']}/pulls/{record['number']}"
    html, issue = f"{repo['html_url']}/pull/{number}", f"{repo['url']}/issues/{number}"
    author = users[record["user"]]
    links = {"self": url, "html": html, "issue": issue, "comments": f"{issue}/comments",
             "review_comments": f"{url}/comments", "review_comment": f"{repo['url']}/pulls/comments{{/number}}",
             "commits": f"{url}/commits", "statuses": f"{repo['url']}/statuses/{head_sha}"}  # fmt: skip
    data = {
        "url": url, "id": record["id"], "node_id": f"PR_{record['id']}", "html_url": html, "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch", "issue_url": issue, "commits_url": links["commits"],
        "review_comments_url": links["review_comments"], "review_comment_url": links["review_comment"],
        "comments_url": links["comments"], "statuses_url": links["statuses"], "number": number,
        "state": record["state"], "locked": False, "title": record["title"], "user": author, "body": record["body"],
        "labels": [label(repo, name) for name in record["labels"]], "milestone": None,
        "created_at": record["created_at"], "updated_at": record["updated_at"], "closed_at": record["closed_at"],
        "merged_at": record["merged_at"], "merge_commit_sha": record["merge_commit_sha"], "assignee": None,
        "assignees": [], "requested_reviewers": [], "requested_teams": [],
        "head": {"label": f"{repo['owner']['login']}:{record['head']}", "ref": record["head"], "sha": head_sha,
                 "repo": repo, "user": repo["owner"]},
        "base": {"label": f"{repo['owner']['login']}:{record['base']}", "ref": record["base"], "sha": base_sha,
                 "repo": repo, "user": repo["owner"]},
        "_links": {name: {"href": href} for name, href in links.items()},
        "author_association": "COLLABORATOR", "auto_merge": record["auto_merge"], "draft": record["draft"],
    }  # fmt: skip
    if not simple:
        merged_by = record["merged_by"]
        data.update({
            "merged": record["merged_at"] is not None, "mergeable": mergeable, "rebaseable": mergeable,
            "mergeable_state": mergeable_state, "merged_by": users[merged_by] if merged_by else None, "comments": 0,
            "review_comments": 0, "maintainer_can_modify": False, "commits": 1, "additions": 0, "deletions": 0,
            "changed_files": 0,
        })  # fmt: skip
    return data


def review(repo: dict[str, Any], number: int, record: dict[str, Any], users: dict[str, dict[str, Any]],
           association: str) -> dict[str, Any]:  # fmt: skip
    pull_url, html = f"{repo['url']}/pulls/{number}", f"{repo['html_url']}/pull/{number}"
    return {
        "id": record["id"], "node_id": f"PRR_{record['id']}", "user": users[record["user"]], "body": record["body"],
        "state": record["state"], "html_url": f"{html}#pullrequestreview-{record['id']}",
        "pull_request_url": pull_url, "_links": {"html": {"href": html}, "pull_request": {"href": pull_url}},
        "submitted_at": record["submitted_at"], "commit_id": record["commit_id"], "author_association": association,
    }  # fmt: skip


def status(repo: dict[str, Any], record: dict[str, Any], creator: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"], "node_id": f"SC_{record['id']}", "url": f"{repo['url']}/statuses/{record['sha']}",
        "avatar_url": None, "state": record["state"], "description": record["description"],
        "target_url": record["target_url"], "context": record["context"], "created_at": record["created_at"],
        "updated_at": record["created_at"], "creator": creator,
    }  # fmt: skip


def combined_status(repo: dict[str, Any], sha: str, statuses: list[dict[str, Any]]) -> dict[str, Any]:
    states = {item["state"] for item in statuses}
    state = (
        "failure" if states & {"failure", "error"} else "pending" if not statuses or "pending" in states else "success"
    )
    minimal = {key: value for key, value in repo.items() if key not in {"license", "forks", "watchers"}}
    return {
        "state": state,
        "statuses": statuses,
        "sha": sha,
        "total_count": len(statuses),
        "repository": minimal,
        "commit_url": f"{repo['url']}/commits/{sha}",
        "url": f"{repo['url']}/commits/{sha}/status",
    }


def check_run(repo: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    url = f"{repo['url']}/check-runs/{record['id']}"
    return {
        "id": record["id"], "head_sha": record["head_sha"], "node_id": f"CR_{record['id']}", "external_id": None,
        "url": url, "html_url": f"{repo['html_url']}/runs/{record['id']}", "details_url": record["details_url"],
        "status": record["status"], "conclusion": record["conclusion"], "started_at": record["started_at"],
        "completed_at": record["completed_at"], "name": record["name"], "check_suite": None, "app": None,
        "pull_requests": [], "output": {"title": record["title"], "summary": record["summary"], "text": None,
                                        "annotations_count": 0, "annotations_url": f"{url}/annotations"},
    }  # fmt: skip


def ref(repo: dict[str, Any], name: str, sha: str, kind: str = "commit") -> dict[str, Any]:
    return {
        "ref": name,
        "node_id": f"REF_{sha[:12]}",
        "url": f"{repo['url']}/git/{name}",
        "object": {"type": kind, "sha": sha, "url": f"{repo['url']}/git/{kind}s/{sha}"},
    }


def git_tag(repo: dict[str, Any], sha: str, tag: str, message: str, target: str, kind: str) -> dict[str, Any]:
    return {
        "node_id": f"TAG_{sha[:12]}",
        "tag": tag,
        "sha": sha,
        "url": f"{repo['url']}/git/tags/{sha}",
        "message": message,
        "tagger": {"date": now(), "email": "sandbox@promo.local", "name": "promo sandbox"},
        "object": {"type": kind, "sha": target, "url": f"{repo['url']}/git/{kind}s/{target}"},
        "verification": None,
    }


def tag(repo: dict[str, Any], name: str, sha: str) -> dict[str, Any]:
    return {
        "name": name,
        "commit": {"sha": sha, "url": f"{repo['url']}/commits/{sha}"},
        "node_id": f"T_{sha[:12]}",
        "zipball_url": f"{repo['url']}/zipball/{name}",
        "tarball_url": f"{repo['url']}/tarball/{name}",
    }


def release(repo: dict[str, Any], record: dict[str, Any], author: dict[str, Any]) -> dict[str, Any]:
    url, tag_name = f"{repo['url']}/releases/{record['id']}", record["tag_name"]
    return {
        "url": url, "html_url": f"{repo['html_url']}/releases/tag/{tag_name}", "assets_url": f"{url}/assets",
        "upload_url": f"{url}/assets{{?name,label}}", "tarball_url": f"{repo['url']}/tarball/{tag_name}",
        "zipball_url": f"{repo['url']}/zipball/{tag_name}", "id": record["id"], "node_id": f"RE_{record['id']}",
        "tag_name": tag_name, "target_commitish": record["target_commitish"], "name": record["name"],
        "body": record["body"], "draft": record["draft"], "prerelease": False, "created_at": record["created_at"],
        "published_at": record["created_at"], "author": author, "assets": [],
    }  # fmt: skip


def label(repo: dict[str, Any], name: str) -> dict[str, Any]:
    label_id = sum(name.encode()) + len(name) * 1000  # stable per name; labels are made on first use
    return {
        "id": label_id,
        "node_id": f"LA_{label_id}",
        "url": f"{repo['url']}/labels/{name}",
        "name": name,
        "description": None,
        "color": "ededed",
        "default": False,
        "archived_at": None,
        "archived_by": None,
    }


def comment(repo: dict[str, Any], number: int, record: dict[str, Any], author: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"],
        "node_id": f"IC_{record['id']}",
        "url": f"{repo['url']}/issues/comments/{record['id']}",
        "html_url": f"{repo['html_url']}/pull/{number}#issuecomment-{record['id']}",
        "body": record["body"],
        "user": author,
        "created_at": record["created_at"],
        "updated_at": record["created_at"],
        "issue_url": f"{repo['url']}/issues/{number}",
        "author_association": "COLLABORATOR",
    }


def error(message: str, *errors: dict[str, Any] | str) -> dict[str, Any]:
    data: dict[str, Any] = {"message": message, "documentation_url": "https://docs.github.com/rest"}
    if errors:
        data["errors"] = list(errors)
    return data
