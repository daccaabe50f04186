"""A persistent local cache of a git remote, read and written without a work tree.

One bare repository per remote lives under the cache directory and is fetched on every use, never cloned again. Files
are read straight from commits, and commits are written by building only the trees along the changed paths, so a
write costs the same in a 1-app and a 2,000-app GitOps repo. ``update_branch`` is the primitive behind "concurrent
promotions never lose an update": a push rejected because someone else moved the branch is fetched again and the
same edit re-applied on the new head.

``Mirror`` is the one surface; each job lives in a private module of its own, which the facade calls:

- ``_cache``: the bare repository, its lock, running git, fetch policy (lean, shallow, partial caches), credentials
- ``_reads``: files, directories, ancestry and history of commits
- ``_trees``: commits written as loose objects, splicing only the trees along changed paths
- ``_push``: pushes, and re-applying a rejected one within a ``RetryBudget``
- ``_refs``: tags, branches and promo's records, created and never moved (``_record_store``, ``_remote_lock``)
- ``_record_log``: record logs, one ref per (kind, subject), appended to by fast-forward pushes
- ``_export``: a commit's tree written out for a build
- ``_errors``: git's failures as the one error a caller acts on
- ``_types``: the values the mirror hands out, and the checks on the names it takes

The parts share ``_cache.Cache`` and never import this facade.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from git import Actor

from promo.gitops.mirror import _export, _reads, _record_log, _refs, _trees
from promo.gitops.mirror._cache import Cache, cache_path
from promo.gitops.mirror._push import RetryBudget, push_branch, update
from promo.gitops.mirror._record_log import RecordEntry, log_ref
from promo.gitops.mirror._record_store import Annotation
from promo.gitops.mirror._types import (
    DEFAULT_AUTHOR,
    CommitRecord,
    LogEntry,
    TreeEntry,
    UpdateResult,
    WriteLock,
    check_branch_name,
    check_tag_name,
    redact_url,
)

__all__ = [
    "DEFAULT_AUTHOR",
    "Annotation",
    "CommitRecord",
    "Edit",
    "LogEntry",
    "Mirror",
    "RecordEntry",
    "RetryBudget",
    "Snapshot",
    "TreeEntry",
    "UpdateResult",
    "WriteLock",
    "check_branch_name",
    "check_tag_name",
    "log_ref",
    "redact_url",
]


@dataclass(frozen=True)
class Snapshot:
    """One commit of a mirror, read-only: what an edit function sees."""

    mirror: Mirror
    commit: str

    def read_file(self, path: str) -> str | None:
        return self.mirror.read_file(self.commit, path)

    def list_dir(self, path: str) -> list[TreeEntry]:
        return self.mirror.list_dir(self.commit, path)


Edit = Callable[[Snapshot], Mapping[str, str] | None]


class Mirror:
    """The cache of one remote: a bare repository whose ``refs/remotes/origin/*`` follow the remote's branches."""

    def __init__(self, url: str, path: Path, branch: str | None = None) -> None:
        self._cache = Cache(url, path, branch)
        self.url, self.display_url, self.path, self.branch = url, self._cache.display_url, path, branch

    @classmethod
    def open(cls, url: str, cache_dir: Path, *, branch: str | None = None) -> Mirror:
        """The cache of ``url`` under ``cache_dir``, created on first use (no network until the first fetch).

        The same URL, whatever its credentials, finds the same cache. With ``branch`` the mirror is lean (see
        ``_cache``): it fetches that branch alone, and a cache it creates is a blob-less partial clone, filled shallow
        by its first fetch.
        """
        path = cache_path(url, cache_dir)
        if branch is not None:
            check_branch_name(branch)
        mirror = cls(url, path, branch)
        mirror._cache.create()
        return mirror

    # -- reading ---------------------------------------------------------------------------------------------------

    def fetch(self) -> None:
        with self._cache.locked():
            self._cache.fetch()

    def snapshot(self, branch: str) -> Snapshot:
        """The remote's ``branch`` as it is now: fetch, then pin its head commit."""
        with self._cache.locked():
            self._cache.fetch()
            return Snapshot(self, self._cache.branch_head(branch))

    def fetch_branch(self, branch: str) -> str | None:
        """Fetch the remote's ``branch`` besides the followed one (a pull request's head, to read what it holds): its
        head commit, or None when the remote has no such branch."""
        return _refs.fetch_branch(self._cache, branch)

    def resolve(self, ref: str) -> str:
        """The commit SHA of a branch (as last fetched), tag, SHA or revision expression (``main~1``)."""
        return self._cache.resolve(ref)

    def is_ancestor(self, ancestor: str, ref: str) -> bool:
        """Whether commit ``ancestor`` is reachable from ``ref`` (a build commit on its branch); False if unknown."""
        return _reads.is_ancestor(self._cache, ancestor, ref)

    def changed_paths(self, base: str, ref: str) -> set[str]:
        """The paths whose content differs between commits ``base`` and ``ref`` (added, removed or changed)."""
        return _reads.changed_paths(self._cache, base, ref)

    def commit_time(self, ref: str) -> int:
        """When ``ref``'s commit was committed, in seconds since the epoch (``git log -1 --format=%ct``)."""
        return self._cache.repo.commit(self._cache.resolve(ref)).committed_date

    def commit_times(self, shas: Iterable[str]) -> dict[str, int]:
        """Commit -> when it was committed, for those of ``shas`` the history of the branches (and tags) holds; the
        others are left out. One read for any number of commits."""
        return _reads.commit_times(self._cache, shas)

    def read_file(self, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref`` (line endings untouched), or None when there is no such file."""
        return self.read_files(ref, [path])[path]

    def read_files(self, ref: str, paths: Sequence[str]) -> dict[str, str | None]:
        """path -> the text of each of ``paths`` at ``ref`` (None where there is no such file)."""
        return _reads.read_files(self._cache, ref, paths)

    def list_dir(self, ref: str, path: str) -> list[TreeEntry]:
        """The entries of directory ``path`` at ``ref``, by name; empty when there is no such directory."""
        return _reads.list_dir(self._cache, ref, path)

    def read_files_under(self, ref: str, prefix: str) -> dict[str, str]:
        """Every file under directory ``prefix`` at ``ref``, path (from the repository's root) -> text; empty when
        there is no such directory. Bytes that are not UTF-8 become U+FFFD; symlinks and submodules are left out."""
        return _reads.read_files_under(self._cache, ref, prefix)

    def log(self, since_ref: str | None, until_ref: str) -> list[LogEntry]:
        """Commits reachable from ``until_ref`` but not from ``since_ref`` (the whole history when None), newest
        first."""
        return _reads.log(self._cache, since_ref, until_ref)

    def log_paths(self, ref: str, paths: Sequence[str] = (), *, limit: int | None = None) -> list[CommitRecord]:
        """The commits reachable from ``ref`` that touched any of ``paths`` (every commit when none), newest first;
        at most ``limit`` of them."""
        return _reads.log_paths(self._cache, ref, paths, limit)

    def tags(self) -> dict[str, str]:
        """Tag name -> the commit it points at (annotated tags peeled), as last fetched."""
        return _refs.tags(self._cache)

    def tag_message(self, name: str) -> str | None:
        """The message of annotated tag ``name``; None for a lightweight tag or no such tag."""
        return _refs.tag_message(self._cache, name)

    def branches(self) -> dict[str, str]:
        """The remote's branches as last fetched: name -> head commit."""
        return _refs.branches(self._cache)

    def records(self, kind: str, prefix: str = "") -> dict[str, Annotation]:
        """promo's records of one ``kind`` (``refs/promo/<kind>/<name>``, those whose name starts with ``prefix``) as
        the remote has them now (fetched here: no other read fetches them): name -> what it holds."""
        return _refs.records(self._cache, kind, prefix)

    def read_logs(self, kind: str, subject: str | None = None, *, under: bool = False) -> dict[str, list[RecordEntry]]:
        """The record logs of ``kind`` (``refs/promo/log/<kind>/<subject>``: every subject's, ``subject``'s alone, or
        with ``under`` those under ``subject/``) as the remote has them now, fetched here alone: log ref -> its
        entries, oldest first, whoever wrote them."""
        return _record_log.read_logs(self._cache, kind, subject, under=under)

    def append_log(
        self,
        kind: str,
        subject: str,
        message: str,
        *,
        author: Actor = DEFAULT_AUTHOR,
        budget: RetryBudget = RetryBudget(),
    ) -> str:
        """Append an entry holding ``message`` to the log of ``kind`` about ``subject``: a fast-forward push, made
        again on the log's new tip when another writer appended first. Returns the entry's id."""
        return _record_log.append(self._cache, log_ref(kind, subject), message, author, budget)

    # -- writing ---------------------------------------------------------------------------------------------------

    def commit_files(
        self, parent: str, changes: Mapping[str, str], message: str, author: Actor = DEFAULT_AUTHOR
    ) -> str:
        """A new commit on ``parent`` with ``changes`` (path -> text) written, not pushed; no changes: an empty one."""
        return _trees.commit_files(self._cache, parent, changes, message, author)

    def push(self, sha: str, branch: str) -> bool:
        """Move the remote's ``branch`` to ``sha`` if that is a fast-forward; False when the remote moved meanwhile."""
        return push_branch(self._cache, sha, branch) != "rejected"

    def create_tag(self, name: str, sha: str, message: str, *, tagger: Actor = DEFAULT_AUTHOR) -> bool:
        """Push annotated tag ``name`` on commit ``sha`` (any ref that resolves to it) with ``message``.

        True when created; False when the remote already has it on that commit (a re-run). A tag on another commit
        is a ConflictError naming both: a release tag is never moved.
        """
        return _refs.create_tag(self._cache, name, sha, message, tagger)

    def create_branch(self, name: str, sha: str) -> bool:
        """Push a new branch ``name`` at commit ``sha``. True when created; False when it already points there; a
        branch elsewhere is a ConflictError (it may hold someone's work, so it is never moved)."""
        return _refs.create_branch(self._cache, name, sha)

    def create_record(
        self, kind: str, name: str, sha: str, message: str, *, tagger: Actor = DEFAULT_AUTHOR
    ) -> bool:
        """Push record ``refs/promo/<kind>/<name>`` naming commit ``sha`` with ``message``, unless one exists (False,
        whatever it names: a record is written once)."""
        return _refs.create_record(self._cache, kind, name, sha, message, tagger)

    def update_branch(
        self,
        branch: str,
        edit: Edit,
        message_fn: Callable[[Mapping[str, str]], str],
        *,
        author: Actor = DEFAULT_AUTHOR,
        budget: RetryBudget = RetryBudget(),
        lock: WriteLock | None = None,
    ) -> UpdateResult:
        """Apply ``edit`` to the head of ``branch`` and push it, re-applying it on the new head after every rejection.

        ``edit`` returns the files to write (path -> text), or None/{} when nothing needs changing; files it returns
        unchanged are dropped, and with nothing left no commit is made. ``message_fn`` gets the files actually
        changed. An edit is called once per attempt, on the head of that attempt, so it must be a function of the
        snapshot it is given. ``lock``, when given, is held around every attempt's fetch-edit-push.
        """

        def build(head_commit: str) -> tuple[str, tuple[str, ...]] | None:
            head = Snapshot(self, head_commit)
            changes = {path: text for path, text in (edit(head) or {}).items() if head.read_file(path) != text}
            if not changes:
                return None
            return self.commit_files(head.commit, changes, message_fn(changes), author), tuple(sorted(changes))

        return update(self._cache, branch, build, budget, lock)

    def commit_empty(
        self, branch: str, message: str, *, author: Actor = DEFAULT_AUTHOR, budget: RetryBudget = RetryBudget()
    ) -> str:
        """Push an empty commit on top of ``branch`` (a fresh SHA to build from) and return its SHA."""
        build = lambda head: (self.commit_files(head, {}, message, author), ())  # noqa: E731
        result = update(self._cache, branch, build, budget, None)
        assert result.commit is not None  # an empty commit is always built
        return result.commit

    def export_tree(self, ref: str, dest: Path) -> None:
        """Write the tree of ``ref`` into ``dest`` (a new or empty directory) exactly as the commit holds it.

        Every file byte for byte with its executable bit, and symlinks as symlinks. A symlink that leads out of the
        tree (absolute, or climbing out) is refused, and so is a submodule: its files live in another repository,
        which promo does not fetch, and a build without them is not the build of this commit.
        """
        _export.export_tree(self._cache, ref, dest)
