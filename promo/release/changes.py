"""What a promotion changes, for the approver: the image it runs and the commits it brings."""

from __future__ import annotations

from dataclasses import dataclass

from promo.errors import NotFound
from promo.gitops.mirror import LogEntry, Mirror
from promo.versions import is_release_candidate, parse_version, sha_of

MAX_COMMITS_SHOWN = 30


@dataclass(frozen=True)
class MoveBack:
    """``incoming`` replaces ``running``, which is newer (or may be, when ``unknown`` says why it cannot be told)."""

    incoming: str
    running: str
    behind: int | None = None  # commits of running's build that incoming's lacks (two builds of one base)
    unknown: str = ""  # why the app repository cannot order the two builds; "" when incoming is known to be older

    @property
    def needs_reason(self) -> bool:
        """Only a build known to be older needs an override reason. One whose order cannot be told (built from a
        commit off the line of the other, or one the app repository no longer has) is said to be unordered in the
        first line, so the approver checks it; demanding a reason for builds that are as likely newer would make
        typing one a routine that no longer means anything."""
        return not self.unknown

    @property
    def line(self) -> str:
        """The gate page's first line; builds of one base are named by their commits, as the app repository's log
        names them."""
        if self.unknown:
            return (
                f"may replace a newer build: cannot tell whether {sha_of(self.incoming)} is older than "
                f"{sha_of(self.running)} ({self.unknown})"
            )
        if self.behind is not None:
            commits = "commit" if self.behind == 1 else "commits"
            return (
                f"replaces a newer build: {sha_of(self.incoming)} is {self.behind} {commits} behind "
                f"{sha_of(self.running)}"
            )
        return f"replaces a newer version: {self.incoming} is below {self.running}"


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
