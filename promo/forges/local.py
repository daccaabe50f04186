"""The sandbox's forge: releases and pull requests kept in the app remote itself, so no server is needed.

A release is an annotated tag ``vX.Y.Z`` on the released commit whose message is the release name on the first
line, a blank line, then the notes: ``git show vX.Y.Z`` prints them, and any git host shows the tag.

A pull request is the pushed branch plus a record ``refs/promo/pulls/<head>``: an annotated tag object on the head's
commit whose message is the title, the body, and ``Base:``/``Draft:`` trailers. It is a ref rather than a file on a
branch so that opening one writes no commit anywhere, it travels with every fetch of the mirror, and it stays out of
``git tag`` and ``git branch``. Merge it with plain git; close it by deleting the ref
(``git push <remote> :refs/promo/pulls/<head>``).
"""

from __future__ import annotations

from promo.errors import InputError, NotFound
from promo.forges.base import PullRequest, Release, check_commit, newest_first
from promo.gitops.mirror import Annotation, Mirror, check_branch_name
from promo.versions import parse_release_tag

PULLS = "pulls"


class LocalForge:
    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror

    def __repr__(self) -> str:
        return f"LocalForge({self.mirror.display_url!r})"

    def find_release(self, tag: str) -> Release | None:
        parse_release_tag(tag)
        self.mirror.fetch()
        return self._release(tag, self.mirror.tags().get(tag))

    def create_release(self, tag: str, commit: str, *, name: str, notes: str) -> Release:
        """Push the annotated tag; ``Mirror.create_tag`` makes a re-run a no-op and refuses to move the tag."""
        parse_release_tag(tag)
        self.mirror.create_tag(tag, check_commit(commit), f"{' '.join(name.split()) or tag}\n\n{notes}")
        release = self._release(tag, self.mirror.tags().get(tag))
        assert release is not None  # create_tag either pushed it or found it
        return release

    def list_releases(self) -> list[Release]:
        self.mirror.fetch()
        releases = (self._release(tag, commit) for tag, commit in self.mirror.tags().items() if _is_release(tag))
        return newest_first(release for release in releases if release is not None)

    def open_pull_request(self, head: str, base: str, *, title: str, body: str, draft: bool = True) -> PullRequest:
        """Record a pull request from pushed branch ``head`` into ``base``; the existing record for ``head`` wins."""
        check_branch_name(head)
        check_branch_name(base)
        self.mirror.fetch()
        branches = self.mirror.branches()
        for branch in (head, base):
            if branch not in branches:
                raise NotFound(f"branch {branch} does not exist in {self.mirror.display_url}", "push it first")
        message = f"{' '.join(title.split())}\n\n{body.strip()}\n\nBase: {base}\nDraft: {str(draft).lower()}"
        self.mirror.create_record(PULLS, head, branches[head], message)
        return _pull_request(head, self.mirror.records(PULLS)[head])

    def list_pull_requests(self) -> list[PullRequest]:
        self.mirror.fetch()
        return [_pull_request(head, record) for head, record in sorted(self.mirror.records(PULLS).items())]

    def _release(self, tag: str, commit: str | None) -> Release | None:
        if commit is None:
            return None
        name, _, notes = (self.mirror.tag_message(tag) or "").partition("\n")  # a lightweight tag has no notes
        return Release(tag, commit, name.strip() or tag, notes.strip(), None)


def _is_release(tag: str) -> bool:
    try:
        parse_release_tag(tag)
    except InputError:
        return False
    return True


def _pull_request(head: str, record: Annotation) -> PullRequest:
    title, _, rest = (record.message or "").partition("\n")
    _, _, trailers = rest.rpartition("\n\n")
    fields = dict(line.split(": ", 1) for line in trailers.splitlines() if ": " in line)
    return PullRequest(None, head, fields.get("Base", ""), title, None, fields.get("Draft") == "true")
