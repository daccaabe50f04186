"""A persistent local cache of a git remote, read and written without a work tree.

One bare repository per remote lives under the cache directory and is fetched on every use, never cloned again: a
fetch costs tens of milliseconds where a fresh clone costs seconds. Files are read straight from commits, and commits
are written by building only the trees along the changed paths, so a write costs the same in a 1-app and a
2,000-app GitOps repo. ``update_branch`` is the primitive behind "concurrent promotions never lose an update": a push
rejected because someone else moved the branch is fetched again and the same edit re-applied on the new head.

Concurrent users of one cache (threads or processes) are serialised by an ``fcntl`` lock file around every
fetch-edit-push section; users of different caches race at the remote and the loser retries, or, given a
``WriteLock`` (the flows pass one held by the Prefect server, one per remote), queue for the remote instead. A
rejected push is retried for a time budget (``RetryBudget``), not a count: contention delays a write, it does not
fail it.

Credentials: a token in the URL (``https://x-access-token:TOKEN@host/...``) is passed to git on each fetch and push
and never stored; the cache has no configured remote, so ``config`` holds no URL, and every URL or git message shown
to people goes through ``redact_url`` first. (The URL is still visible in the process list while git runs; move to
``GIT_ASKPASS`` or ``http.extraHeader`` when that matters.)

Refs that name a release or a branch are created, never moved: ``create_tag``, ``create_branch`` and ``create_record``
push with a lease that requires the ref to be absent on the remote, so two writers cannot both win, and a re-run finds
what the first run made. promo's own records (a local forge's pull requests) are annotated tag objects under
``refs/promo/<kind>/<name>``: fetched and pruned like tags, but invisible to ``git tag`` and ``git branch``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from stat import S_ISDIR, S_ISLNK
from typing import Literal

from git import Actor, Repo
from git.exc import BadName, BadObject, GitCommandError
from git.objects import Commit
from git.objects.fun import tree_entries_from_data, tree_to_stream
from gitdb.base import IStream

from promo.errors import AuthError, ConflictError, InputError, NotFound, PromoError, ToolError, TransientError

DEFAULT_AUTHOR = Actor("promo", "promo@localhost")
NETWORK_TIMEOUT_SECONDS = 300.0
# How long rejected pushes are retried. 32 writers racing one remote from 32 caches, unlocked, drained in 10-41 s on
# 2 busy cores (docs/performance.md); 120 s covers several times that, and stays below the Prefect lock's own wait
# (flows/limits.py), so a write stuck behind the lock is reported by the lock, not by this budget.
DEFAULT_RETRY_SECONDS = 120.0

# Between attempts a random wait from 0 up to 50 ms x 2^attempt, at most 1 s (full jitter): writers that collided once
# do not collide again in lock-step. Short, because the winner's push is already done when the loser learns of it.
_BACKOFF_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 1.0
_TRACKING = "refs/remotes/origin"
_STALE_LOCK = re.compile(r"Unable to create '(?P<path>[^']+\.lock)': File exists")
_RECORDS = "refs/promo"
_FILE_MODE, _EXECUTABLE_MODE, _TREE_MODE, _GITLINK_MODE = 0o100644, 0o100755, 0o040000, 0o160000
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}  # fail fast instead of waiting for a password nobody will type


class _HeldLocks(threading.local):
    """The cache locks the current thread holds."""

    def __init__(self) -> None:
        self.paths: set[Path] = set()


_held_locks = _HeldLocks()

_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s]*@")
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_REJECTED = re.compile(r"non-fast-forward|fetch first|cannot lock ref|stale info|incorrect old value|already exists")
_BAD_REF_NAME = re.compile(r"[\s\x00-\x1f\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)")
_AUTH = re.compile(
    r"authentication failed|could not read (username|password)|permission denied|terminal prompts disabled"
    r"|returned error: 40[13]",
    re.IGNORECASE,
)
_MISSING = re.compile(r"does not appear to be a git repository|repository not found|returned error: 404", re.I)
_NETWORK = re.compile(
    r"could not resolve|connection (refused|timed out|reset)|timed out|timeout|early eof|hung up unexpectedly"
    r"|rpc failed|returned error: (5\d\d|429)|temporary failure|unable to access|network is unreachable",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` without userinfo (``user:token@``): the only form of a URL that may appear in messages and logs."""
    return _USERINFO.sub(r"\1", url)


@dataclass(frozen=True)
class TreeEntry:
    name: str
    is_dir: bool


@dataclass(frozen=True)
class LogEntry:
    sha: str
    subject: str
    author: str


@dataclass(frozen=True)
class CommitRecord:
    """One commit as history shows it: ``body`` is the message after the subject (trailers included)."""

    sha: str
    committed_at: datetime  # the committer date, in UTC: when the change landed on the branch
    subject: str
    body: str


@dataclass(frozen=True)
class Annotation:
    """What a tag or record ref names: the commit it peels to, and the annotated tag's message (None when the ref is
    a lightweight tag)."""

    commit: str
    message: str | None


@dataclass(frozen=True)
class UpdateResult:
    """What ``update_branch`` did: ``commit`` is None when the edit found nothing to change."""

    commit: str | None
    attempts: int
    changed_paths: tuple[str, ...]


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
PushOutcome = Literal["pushed", "up to date", "rejected"]
WriteLock = Callable[[], AbstractContextManager[object]]
"""Makes the context held around one fetch-edit-push: serialises the writers of one remote across caches and hosts."""


@dataclass(frozen=True)
class RetryBudget:
    """Re-apply a rejected push for up to ``seconds``: attempts go on while time is left, a random, doubling while
    apart (full jitter, capped), never sleeping past the deadline. ``clock``/``sleep``/``uniform`` are seams for
    tests."""

    seconds: float = DEFAULT_RETRY_SECONDS
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    uniform: Callable[[float, float], float] = random.uniform

    def attempts(self) -> Iterator[int]:
        """1, 2, ...: the caller makes attempt n and stops iterating once one succeeds; iteration ends when the
        budget has run out (the last attempt starts before the deadline)."""
        deadline = self.clock() + self.seconds
        attempt = 1
        while True:
            yield attempt
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self.sleep(min(remaining, self.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_SECONDS * 2**attempt))))
            attempt += 1

    def exhausted(self, what: str, attempts: int, why: str, fix: str) -> TransientError:
        """The one line for a budget that ran out: what was rejected, how often in how long, why, and the fix."""
        return TransientError(f"{what} was rejected {attempts} times in {self.seconds:g} s: {why}", fix)


class Mirror:
    """The cache of one remote: a bare repository whose ``refs/remotes/origin/*`` follow the remote's branches."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        self.display_url = redact_url(url)
        self.path = path
        self._lock_path = path.with_suffix(".lock")
        self._local = threading.local()

    @classmethod
    def open(cls, url: str, cache_dir: Path) -> Mirror:
        """The cache of ``url`` under ``cache_dir``, created on first use (no network until the first fetch).

        The directory name is readable (the repo's name) and unique (a hash of the URL without credentials, so a
        rotated token keeps its cache).
        """
        display = redact_url(url)
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", display.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")) or "repo"
        digest = hashlib.sha256(display.encode()).hexdigest()[:12]
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        mirror = cls(url, cache_dir / f"{name}-{digest}.git")
        with mirror._locked():
            if not (mirror.path / "HEAD").exists():
                Repo.init(mirror.path, bare=True, mkdir=True)
        return mirror

    # -- reading ---------------------------------------------------------------------------------------------------

    def fetch(self) -> None:
        with self._locked():
            self._fetch()

    def snapshot(self, branch: str) -> Snapshot:
        """The remote's ``branch`` as it is now: fetch, then pin its head commit."""
        with self._locked():
            self._fetch()
            return Snapshot(self, self._branch_head(branch))

    def resolve(self, ref: str) -> str:
        """The commit SHA of a branch (as last fetched), tag, SHA or revision expression (``main~1``)."""
        candidates = [ref] if _FULL_SHA.fullmatch(ref) else [f"{_TRACKING}/{ref}", f"refs/tags/{ref}", ref]
        for candidate in candidates:
            try:
                commit = self._repo.commit(candidate)
                self._repo.odb.info(commit.binsha)  # a full SHA is taken on trust until its object is looked up
                return commit.hexsha
            except (BadName, BadObject, ValueError):
                continue
        raise NotFound(f"{ref!r} is not a branch, tag or commit of {self.display_url}", "check the name; run a fetch")

    def is_ancestor(self, ancestor: str, ref: str) -> bool:
        """Whether commit ``ancestor`` is reachable from ``ref`` (a build commit on its branch); False if unknown."""
        try:
            ancestor_sha = self.resolve(ancestor)
        except NotFound:
            return False
        return self._repo.is_ancestor(ancestor_sha, self.resolve(ref))

    def commit_time(self, ref: str) -> int:
        """When ``ref``'s commit was committed, in seconds since the epoch (``git log -1 --format=%ct``)."""
        return self._repo.commit(self.resolve(ref)).committed_date

    def read_file(self, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref`` (line endings untouched), or None when there is no such file."""
        try:
            blob = self._repo.commit(self.resolve(ref)).tree / path
        except KeyError:
            return None
        if blob.type != "blob":
            return None
        try:
            return blob.data_stream.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path} in {self.display_url} is not UTF-8 text", "save the file as UTF-8") from None

    def list_dir(self, ref: str, path: str) -> list[TreeEntry]:
        """The entries of directory ``path`` at ``ref``, by name; empty when there is no such directory."""
        tree = self._repo.commit(self.resolve(ref)).tree
        try:
            tree = tree / path if path.strip("/") else tree
        except KeyError:
            return []
        if tree.type != "tree":
            return []
        return sorted((TreeEntry(item.name, item.type == "tree") for item in tree), key=lambda entry: entry.name)

    def log(self, since_ref: str | None, until_ref: str) -> list[LogEntry]:
        """Commits reachable from ``until_ref`` but not from ``since_ref`` (the whole history when None), newest
        first."""
        until = self.resolve(until_ref)
        revisions = f"{self.resolve(since_ref)}..{until}" if since_ref is not None else until
        output = self._git("log", "--format=%H%x1f%an%x1f%s", revisions, action="reading the history of")
        fields = (line.split("\x1f", 2) for line in output.splitlines() if line)
        return [LogEntry(sha, subject, author) for sha, author, subject in fields]

    def log_paths(self, ref: str, paths: Sequence[str] = (), *, limit: int | None = None) -> list[CommitRecord]:
        """The commits reachable from ``ref`` that touched any of ``paths`` (every commit when none), newest first;
        at most ``limit`` of them."""
        options = [f"--max-count={limit}"] if limit is not None else []
        revision = self.resolve(ref)
        record_format = "--format=%H%x1f%ct%x1f%s%x1f%b%x1e"  # fields and records split by ASCII separators
        output = self._git("log", record_format, *options, revision, "--", *paths, action="reading the history of")
        records = []
        for record in output.split("\x1e"):
            if record.strip("\n"):
                sha, timestamp, subject, body = record.lstrip("\n").split("\x1f", 3)
                records.append(CommitRecord(sha, datetime.fromtimestamp(int(timestamp), timezone.utc), subject, body))
        return records

    def tags(self) -> dict[str, str]:
        """Tag name -> the commit it points at (annotated tags peeled), as last fetched."""
        return {name: annotation.commit for name, annotation in self._annotations("refs/tags").items()}

    def tag_message(self, name: str) -> str | None:
        """The message of annotated tag ``name``; None for a lightweight tag or no such tag."""
        check_tag_name(name)
        annotation = self._annotations("refs/tags", name).get(name)
        return annotation.message if annotation else None

    def branches(self) -> dict[str, str]:
        """The remote's branches as last fetched: name -> head commit."""
        output = self._git(
            "for-each-ref", "--format=%(refname)%1f%(objectname)", f"{_TRACKING}/", action="listing the branches of"
        )
        pairs = (line.split("\x1f") for line in output.splitlines() if line)
        return {ref.removeprefix(f"{_TRACKING}/"): sha for ref, sha in pairs}

    def records(self, kind: str) -> dict[str, Annotation]:
        """promo's records of one ``kind`` (``refs/promo/<kind>/<name>``) as last fetched: name -> what it holds."""
        return self._annotations(f"{_RECORDS}/{_checked_kind(kind)}")

    # -- writing ---------------------------------------------------------------------------------------------------

    def commit_files(
        self, parent: str, changes: Mapping[str, str], message: str, author: Actor = DEFAULT_AUTHOR
    ) -> str:
        """A new commit on ``parent`` with ``changes`` (path -> text) written, not pushed; no changes: an empty one."""
        nested: dict = {}
        for path, text in changes.items():
            *dirs, name = _split_path(path)
            node = nested
            for part in dirs:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise InputError(f"{path!r} goes through a file written in the same commit", "fix the paths")
            node[name] = text
        parent_commit = self._repo.commit(self.resolve(parent))
        tree = self._write_tree(parent_commit.tree.binsha, nested) if nested else parent_commit.tree.binsha
        commit = Commit.create_from_tree(
            self._repo, tree.hex(), message, parent_commits=[parent_commit], author=author, committer=author
        )
        return commit.hexsha

    def push(self, sha: str, branch: str) -> bool:
        """Move the remote's ``branch`` to ``sha`` if that is a fast-forward; False when the remote moved meanwhile."""
        return self._push_branch(sha, branch) != "rejected"

    def create_tag(self, name: str, sha: str, message: str, *, tagger: Actor = DEFAULT_AUTHOR) -> bool:
        """Push annotated tag ``name`` on commit ``sha`` (any ref that resolves to it) with ``message``.

        True when created; False when the remote already has it on that commit (a re-run). A tag on another commit
        is a ConflictError naming both: a release tag is never moved.
        """
        check_tag_name(name)
        ref = f"refs/tags/{name}"
        existing = self._create_ref(ref, ref, sha, lambda commit: self._tag_object(name, commit, message, tagger))
        fix = "a pushed tag is never moved: release under another version, or delete the tag by hand if it is wrong"
        return self._created_here(f"tag {name}", existing, sha, fix)

    def create_branch(self, name: str, sha: str) -> bool:
        """Push a new branch ``name`` at commit ``sha``. True when created; False when it already points there; a
        branch elsewhere is a ConflictError (it may hold someone's work, so it is never moved)."""
        check_branch_name(name)
        existing = self._create_ref(f"refs/heads/{name}", f"{_TRACKING}/{name}", sha, lambda commit: commit)
        fix = f"use that branch as it is, or delete it first if it is stale (git push <remote> :{name})"
        return self._created_here(f"branch {name}", existing, sha, fix)

    def create_record(
        self, kind: str, name: str, sha: str, message: str, *, tagger: Actor = DEFAULT_AUTHOR
    ) -> bool:
        """Push record ``refs/promo/<kind>/<name>`` naming commit ``sha`` with ``message``, unless one exists (False,
        whatever it names: a record is written once)."""
        _check_ref_name(name, "record", "hotfix-1-2-4")
        ref = f"{_RECORDS}/{_checked_kind(kind)}/{name}"
        return self._create_ref(ref, ref, sha, lambda commit: self._tag_object(name, commit, message, tagger)) is None

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

        def build(head: Snapshot) -> tuple[str, tuple[str, ...]] | None:
            changes = {path: text for path, text in (edit(head) or {}).items() if head.read_file(path) != text}
            if not changes:
                return None
            return self.commit_files(head.commit, changes, message_fn(changes), author), tuple(sorted(changes))

        return self._push_with_retry(branch, build, budget, lock)

    def commit_empty(
        self, branch: str, message: str, *, author: Actor = DEFAULT_AUTHOR, budget: RetryBudget = RetryBudget()
    ) -> str:
        """Push an empty commit on top of ``branch`` (a fresh SHA to build from) and return its SHA."""
        result = self._push_with_retry(
            branch, lambda head: (self.commit_files(head.commit, {}, message, author), ()), budget, None
        )
        assert result.commit is not None  # an empty commit is always built
        return result.commit

    def export_tree(self, ref: str, dest: Path) -> None:
        """Write the tree of ``ref`` into ``dest`` (a new or empty directory) exactly as the commit holds it.

        Every file byte for byte with its executable bit, and symlinks as symlinks. Not ``git archive``: its
        ``export-ignore`` and ``export-subst`` attributes would let ``.gitattributes`` change what is built from a
        commit. A symlink that leads out of the tree (absolute, or climbing out) is refused, and so is a submodule:
        its files live in another repository, which promo does not fetch, and a build without them is not the build
        of this commit. Objects are read through the cache's one ``cat-file --batch`` process, not one per file.
        """
        sha = self.resolve(ref)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise InputError(f"{dest} is not empty, so an export there would mix in other files", "export elsewhere")
        links: list[tuple[str, str]] = []
        self._export_entries(sha, self._repo.commit(sha).tree.binsha, dest, "", links)
        root = dest.resolve()
        for path, target in links:
            # Checked once the whole tree is written: a link can lead out through other links of the tree.
            if target.startswith("/") or not Path(os.path.realpath(dest / path)).is_relative_to(root):
                raise InputError(
                    f"{path} in commit {sha} of {self.display_url} is a symlink to {target!r}, outside the repository",
                    "make it a relative link to a file inside the repository, or commit the file instead of the link",
                )

    # -- internals -------------------------------------------------------------------------------------------------

    @property
    def _repo(self) -> Repo:
        """One Repo per thread: GitPython's persistent ``cat-file`` processes are not safe to share."""
        repo = getattr(self._local, "repo", None)
        if repo is None:
            repo = self._local.repo = Repo(self.path)
        return repo

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the cache's lock; re-entrant within a thread, so locked operations compose."""
        held = _held_locks.paths
        if self._lock_path in held:
            yield
            return
        # A fresh open() per holder: flock then excludes other threads of this process too, not only other processes.
        with open(self._lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            held.add(self._lock_path)
            try:
                yield
            finally:
                held.discard(self._lock_path)

    def _fetch(self) -> None:
        refspecs = (f"+refs/heads/*:{_TRACKING}/*", "+refs/tags/*:refs/tags/*", f"+{_RECORDS}/*:{_RECORDS}/*")
        options = ("--prune", "--no-tags", "--no-write-fetch-head", "--quiet")
        self._git("fetch", *options, self.url, *refspecs, action="fetching", timeout=NETWORK_TIMEOUT_SECONDS)

    def _branch_head(self, branch: str) -> str:
        check_branch_name(branch)
        try:
            return self._repo.commit(f"{_TRACKING}/{branch}").hexsha
        except (BadName, BadObject, ValueError):
            raise NotFound(
                f"branch {branch!r} does not exist in {self.display_url}",
                "push an initial commit to it, or set the branch in promo.yaml",
            ) from None

    def _push_with_retry(
        self,
        branch: str,
        build: Callable[[Snapshot], tuple[str, tuple[str, ...]] | None],
        budget: RetryBudget,
        lock: WriteLock | None,
    ) -> UpdateResult:
        attempt = 0
        for attempt in budget.attempts():
            with lock() if lock else nullcontext(), self._locked():
                self._fetch()
                built = build(Snapshot(self, self._branch_head(branch)))
                if built is None:
                    return UpdateResult(None, attempt, ())
                commit, paths = built
                # "up to date" means another writer pushed a byte-identical commit (same parent, tree, message and
                # second): its edit landed, ours did not, so it counts as a rejection and is re-applied on top.
                if self._push_branch(commit, branch) == "pushed":
                    return UpdateResult(commit, attempt, paths)
        raise budget.exhausted(
            f"pushing to {branch} of {self.display_url}",
            attempt,
            "other writers kept moving it",
            "run it again (each attempt re-applies the change on the newest commit)",
        )

    def _create_ref(
        self, ref: str, local_ref: str, sha: str, make: Callable[[str], str], budget: RetryBudget = RetryBudget()
    ) -> str | None:
        """Push ``ref`` unless the remote has it, never moving it: None when created, else the commit it names.

        ``make`` turns the commit into the object the ref holds (the commit itself, or a tag object on it). The push
        carries a lease requiring the ref to be absent, so of two concurrent creators one is rejected, fetches, and
        finds what the other made. ``local_ref`` is where the mirror keeps the remote's ref.
        """
        attempt = 0
        for attempt in budget.attempts():
            with self._locked():
                self._fetch()
                existing = self._peeled(local_ref)
                if existing is not None:
                    return existing
                target = make(self.resolve(sha))
                lease = f"--force-with-lease={ref}:"
                if self._push_refspec(f"{target}:{ref}", lease, action=f"pushing {ref} to") == "pushed":
                    self._git("update-ref", local_ref, target, action="recording the push to")
                    return None
        raise budget.exhausted(
            f"creating {ref} in {self.display_url}",
            attempt,
            "yet it does not exist there",
            "run it again; check that the remote accepts pushes to this ref",
        )

    def _created_here(self, what: str, existing: str | None, sha: str, fix: str) -> bool:
        """True when ``_create_ref`` created the ref, False when it already named ``sha``'s commit, else a conflict."""
        if existing is None:
            return True
        commit = self.resolve(sha)
        if existing != commit:
            cause = f"{what} already exists in {self.display_url} at commit {existing}, not at {commit}"
            raise ConflictError(cause, fix)
        return False

    def _push_branch(self, sha: str, branch: str) -> PushOutcome:
        check_branch_name(branch)
        with self._locked():
            outcome = self._push_refspec(f"{sha}:refs/heads/{branch}", action=f"pushing {branch} to")
            if outcome != "rejected":
                self._git("update-ref", f"{_TRACKING}/{branch}", sha, action="recording the push to")
        return outcome

    def _push_refspec(self, refspec: str, *options: str, action: str) -> PushOutcome:
        """Push one refspec: "rejected" when the remote refused it because its ref moved (or, for a lease, exists),
        "up to date" when the remote's ref already was the pushed object."""
        try:
            output = self._run("push", "--porcelain", *options, self.url, refspec, timeout=NETWORK_TIMEOUT_SECONDS)
        except GitCommandError as exc:
            if _REJECTED.search(f"{exc.stdout}\n{exc.stderr}"):
                return "rejected"
            raise self._failure(action, exc) from None
        return "up to date" if any(line.startswith("=\t") for line in output.splitlines()) else "pushed"

    def _peeled(self, ref: str) -> str | None:
        """The commit a local ref points at through any tags, or None when there is no such ref."""
        try:
            return self._repo.commit(ref).hexsha
        except (BadName, BadObject, ValueError):
            return None

    def _annotations(self, namespace: str, name: str | None = None) -> dict[str, Annotation]:
        """The refs under ``namespace`` (or only ``name`` there) naming commits, read in one ``for-each-ref``."""
        fields = ("refname", "objecttype", "objectname", "*objecttype", "*objectname", "contents")
        output = self._git(
            "for-each-ref",
            "--format=" + "%1f".join(f"%({field})" for field in fields) + "%1e",
            f"{namespace}/{name}" if name else f"{namespace}/",
            action="reading the refs of",
        )
        annotations = {}
        for record in output.split("\x1e"):
            if not record.strip("\n"):
                continue
            ref, kind, sha, peeled_kind, peeled_sha, contents = record.lstrip("\n").split("\x1f", 5)
            if kind == "commit":
                annotations[ref.removeprefix(f"{namespace}/")] = Annotation(sha, None)
            elif kind == "tag" and peeled_kind == "commit":
                annotations[ref.removeprefix(f"{namespace}/")] = Annotation(peeled_sha, contents.rstrip("\n"))
        return {key: value for key, value in annotations.items() if name is None or key == name}

    def _tag_object(self, name: str, commit: str, message: str, tagger: Actor) -> str:
        """Store an annotated tag object on ``commit`` (as ``git tag -a`` writes it) and return its SHA."""
        header = (
            f"object {commit}\ntype commit\ntag {name}\n"
            f"tagger {_one_line(tagger.name)} <{_one_line(tagger.email)}> {int(time.time())} +0000\n"
        )
        return self._store(b"tag", f"{header}\n{message.strip()}\n".encode()).hex()

    def _export_entries(
        self, sha: str, tree: bytes, directory: Path, prefix: str, links: list[tuple[str, str]]
    ) -> None:
        """Write the entries of ``tree`` into ``directory``, recursively; symlinks made are appended to ``links``.

        Nothing is written through an existing path (``O_EXCL``, ``mkdir``), so no link can redirect a write.
        """
        try:
            entries = tree_entries_from_data(self._repo.odb.stream(tree).read())
        except ValueError as exc:  # GitPython refuses names such as "..", ".git" or "a/b" that git never writes
            raise ToolError(
                f"commit {sha} of {self.display_url} has a malformed tree under {prefix or '/'}: {exc}",
                "repair the repository (git fsck); promo does not export trees that git itself would not check out",
            ) from None
        for blob, mode, name in entries:
            path, target = f"{prefix}{name}", directory / name
            if S_ISDIR(mode):
                target.mkdir()
                self._export_entries(sha, blob, target, f"{path}/", links)
            elif S_ISLNK(mode):
                link = os.fsdecode(self._repo.odb.stream(blob).read())
                os.symlink(link, target)
                links.append((path, link))
            elif mode == _GITLINK_MODE:
                raise InputError(
                    f"{path} in commit {sha} of {self.display_url} is a git submodule, whose files promo does not "
                    "fetch into the build",
                    f"vendor its files into the repository, or remove the submodule (git rm {path})",
                )
            else:
                executable = mode & 0o111
                handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if executable else 0o666)
                with open(handle, "wb") as out:
                    shutil.copyfileobj(self._repo.odb.stream(blob), out)

    def _write_tree(self, tree: bytes | None, changes: dict) -> bytes:
        """Store a copy of ``tree`` with ``changes`` (name -> text, or name -> nested changes) applied; only the
        trees along changed paths are read and written."""
        raw = self._repo.odb.stream(tree).read() if tree is not None else b""
        entries = {name: (mode, sha) for sha, mode, name in tree_entries_from_data(raw)}
        for name, change in changes.items():
            mode, old = entries.get(name, (None, None))
            if isinstance(change, dict):
                if mode is not None and not S_ISDIR(mode):
                    raise InputError(f"{name!r} is a file in {self.display_url}, not a directory", "fix the path")
                entries[name] = (_TREE_MODE, self._write_tree(old, change))
            else:
                if mode is not None and S_ISDIR(mode):
                    raise InputError(f"{name!r} is a directory in {self.display_url}, not a file", "fix the path")
                kept_mode = mode if mode == _EXECUTABLE_MODE else _FILE_MODE
                entries[name] = (kept_mode, self._store(b"blob", change.encode()))
        # git orders tree entries by name, with directories compared as if they ended in "/".
        ordered = sorted(entries.items(), key=lambda item: item[0] + "/" if S_ISDIR(item[1][0]) else item[0])
        data = BytesIO()
        tree_to_stream([(sha, mode, name) for name, (mode, sha) in ordered], data.write)
        return self._store(b"tree", data.getvalue())

    def _store(self, kind: bytes, data: bytes) -> bytes:
        return self._repo.odb.store(IStream(kind, len(data), BytesIO(data))).binsha

    def _run(self, *args: str, timeout: float | None = None, **kwargs: object) -> str:
        return self._repo.git.execute(["git", *args], env=_GIT_ENV, kill_after_timeout=timeout, **kwargs)

    def _git(self, *args: str, action: str, timeout: float | None = None) -> str:
        try:
            return self._run(*args, timeout=timeout)
        except GitCommandError as exc:
            if not self._removed_stale_lock(exc):
                raise self._failure(action, exc) from None
        try:
            return self._run(*args, timeout=timeout)
        except GitCommandError as exc:
            raise self._failure(action, exc) from None

    def _removed_stale_lock(self, exc: GitCommandError) -> bool:
        """A git process killed mid-write (a run SIGKILLed during a fetch) leaves ``<ref>.lock`` in the cache, and
        every later write there fails with "File exists". promo's writes into the cache all hold its flock, so one
        found while we hold it belongs to nobody alive: remove it (only inside this cache) and let the caller retry."""
        if self._lock_path not in _held_locks.paths:
            return False
        found = _STALE_LOCK.search(str(exc.stderr or ""))
        if found is None:
            return False
        lock = Path(found["path"]).resolve()
        if not (lock.name.endswith(".lock") and lock.is_relative_to(self.path.resolve()) and lock.is_file()):
            return False
        lock.unlink()
        return True

    def _failure(self, action: str, exc: GitCommandError) -> PromoError:
        """Map a failed git command to the error a caller acts on; the message never carries credentials."""
        output = redact_url(str(exc.stderr or exc.stdout or ""))
        lines = [line.strip().removeprefix("stderr:").strip("'\" ") for line in output.splitlines()]
        messages = [line for line in lines if line.startswith(("fatal:", "error:"))] or [line for line in lines if line]
        detail = messages[0] if messages else f"exit status {exc.status}"
        cause = f"{action} {self.display_url} failed: {detail}"
        if _AUTH.search(output):
            return AuthError(cause, "check that the git credentials (token in the URL, credential helper) have access")
        if _MISSING.search(output):
            return NotFound(cause, "check the repository URL in promo.yaml")
        if _NETWORK.search(output):
            return TransientError(cause, "retry; check the network and that the git server is reachable")
        return ToolError(cause, "see git's message; fix the repository or its URL in promo.yaml")


def check_branch_name(branch: str) -> None:
    """Branch names become git arguments: refuse option-like and malformed ones before git sees them."""
    _check_ref_name(branch, "branch", "main or release-1.2")


def check_tag_name(tag: str) -> None:
    """Tag names become git arguments too: the same rules as branches (``git check-ref-format``)."""
    _check_ref_name(tag, "tag", "v1.2.3")


def _check_ref_name(name: str, what: str, example: str) -> None:
    if not name or name.startswith(("-", "/", ".")) or name.endswith(("/", ".")) or _BAD_REF_NAME.search(name):
        raise InputError(f"{name!r} is not a valid git {what} name", f"use a name such as {example}")


def _checked_kind(kind: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", kind):
        raise InputError(f"{kind!r} is not a record kind", "use a lowercase word such as pulls")
    return kind


def _one_line(text: str) -> str:
    """``text`` fit for an identity line of a git object: no angle brackets or control characters."""
    return " ".join(re.sub(r"[<>\x00-\x1f]", "", text).split())


def _split_path(path: str) -> list[str]:
    parts = path.split("/")
    if any(part in ("", ".", "..", ".git") for part in parts):
        raise InputError(f"{path!r} is not a relative file path inside the repository", "use a/b/c.yaml")
    return parts
