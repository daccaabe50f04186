"""What a promotion changes, for the approver: the image it runs and the commits it brings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from promo.errors import NotFound
from promo.gitops.mirror import LogEntry, Mirror
from promo.release.versions import is_release_candidate, parse_version, sha_of

if TYPE_CHECKING:  # moving_back reads versions' commits with version_commit, from here
    from promo.release.moving_back import MoveBack

MAX_COMMITS_SHOWN = 30


@dataclass(frozen=True)
class ChangeDescription:
    image: str | None
    commits: tuple[LogEntry, ...]
    since: str | None
    moves_back: MoveBack | None = None  # it replaces a newer build in the target

    def commit_lines(self) -> list[str]:
        lines = [f"- `{entry.sha[:7]}` {entry.subject} ({entry.author})" for entry in self.commits[:MAX_COMMITS_SHOWN]]
        if len(self.commits) > MAX_COMMITS_SHOWN:
            lines.append(f"- … and {len(self.commits) - MAX_COMMITS_SHOWN} more")
        return lines


def version_commit(mirror: Mirror, version: str | None) -> str | None:
    """The app commit a chart version was built from: the SHA in an RC, or the commit of a release's tag."""
    if not version:
        return None
    try:
        if is_release_candidate(version):
            return mirror.resolve(sha_of(version))
        return mirror.tags().get(f"v{parse_version(version).finalize_version()}")
    except NotFound:
        return None


def commits_between(mirror: Mirror, running: str | None, incoming: str) -> tuple[LogEntry, ...]:
    """The commits ``incoming`` brings over what runs now (all of its history when nothing runs yet)."""
    until = version_commit(mirror, incoming)
    if until is None:
        return ()
    return tuple(mirror.log(version_commit(mirror, running), until))
