"""Where releases and pull requests live: a git forge, behind one small protocol.

Two forges implement it: ``LocalForge`` (the sandbox default: releases are annotated tags, pull requests are records
in the app remote, so everything works with bare repositories on disk) and ``GitHubForge`` (the REST API). Flows
only see ``Forge``, so release-prod and hotfix run the same against either.

Every write is idempotent, because flows are re-run after a partial failure: creating what already exists in the
same form returns it; a release tag that already names another commit is a ConflictError, never moved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

import semver

from promo.errors import ConflictError, InputError

ForgeKind = Literal["local", "github"]
FORGE_KINDS: tuple[ForgeKind, ...] = ("local", "github")

_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_GITHUB_URL = re.compile(
    r"^(?:https://|ssh://git@|git@)github\.com[/:](?P<owner>[\w-]+)/(?P<name>[\w.-]+?)(?:\.git)?/?$"
)


@dataclass(frozen=True)
class Release:
    tag: str
    commit: str
    name: str
    notes: str
    url: str | None


@dataclass(frozen=True)
class PullRequest:
    """An open pull request; ``number`` and ``url`` are None where the forge has neither (the local forge)."""

    number: int | None
    head: str
    base: str
    title: str
    url: str | None
    draft: bool


class Forge(Protocol):
    def find_release(self, tag: str) -> Release | None: ...

    def create_release(self, tag: str, commit: str, *, name: str, notes: str) -> Release:
        """Release ``tag`` at ``commit`` (a full SHA); an existing release at the same commit is returned, one at
        another commit is a ConflictError."""
        ...

    def list_releases(self) -> list[Release]:
        """Newest first, by the SemVer of the tag."""
        ...

    def open_pull_request(self, head: str, base: str, *, title: str, body: str, draft: bool = True) -> PullRequest:
        """Open a pull request from branch ``head``; the open one for ``head`` is returned if there is one."""
        ...

    def list_pull_requests(self) -> list[PullRequest]: ...


def github_repository(url: str) -> str | None:
    """``owner/name`` of a github.com clone URL (https or ssh, with or without credentials), else None."""
    match = _GITHUB_URL.match(re.sub(r"^https://[^/@]*@", "https://", url))
    return f"{match['owner']}/{match['name']}" if match else None


def check_commit(commit: str) -> str:
    """A release names a full commit SHA: a short one could become ambiguous, a branch could move."""
    if not _FULL_SHA.fullmatch(commit):
        raise InputError(f"{commit!r} is not a full commit SHA", "resolve it first (git rev-parse <ref>)")
    return commit


def same_commit_or_conflict(release: Release, commit: str) -> Release:
    """The idempotency rule every forge applies to a release that already exists."""
    if release.commit != commit:
        raise ConflictError(
            f"release {release.tag} already exists at commit {release.commit}, not at {commit}",
            "a release is never moved: release the next version, or delete the release and its tag by hand",
        )
    return release


def newest_first(releases: Iterable[Release]) -> list[Release]:
    """By the SemVer of the tag (``v`` prefix optional), newest first; tags that are no SemVer last, by name."""
    versioned, other = [], []
    for release in releases:
        try:
            versioned.append((semver.Version.parse(release.tag.removeprefix("v")), release))
        except ValueError:
            other.append(release)
    versioned.sort(key=lambda pair: pair[0], reverse=True)
    return [release for _, release in versioned] + sorted(other, key=lambda release: release.tag)
