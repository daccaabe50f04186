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

A mirror opened for one ``branch`` (the GitOps repository's) is lean: it follows that branch alone (plus tags), and
its first fetch into an empty cache is shallow (``--depth=1``) and, where the remote allows filters, blob-less
(``--filter=blob:none``, a partial clone): a fresh worker fetches one commit's trees, not 20,000 commits and 8,000
manifests. Blobs it reads later are fetched by git on demand (the cache's promisor remote ``origin``), and
every history read (``log``, ``log_paths``, ``is_ancestor``, a ``resolve`` that misses) first fetches the whole
history, still without blobs, so shallowness never changes an answer. A remote that refuses filters (a bare repo
without ``uploadpack.allowFilter``) gets a plain shallow fetch instead; git falls back by itself.

Credentials: a token in the URL (``https://x-access-token:TOKEN@host/...``) is passed to git on each fetch and push
and never stored; the cache's remote ``origin`` has no ``url`` in ``config``: every git process of the mirror gets it
through the environment (``GIT_CONFIG_*``), so fetches and git's on-demand blob fetches reach the remote, and every
URL or git message shown to people goes through ``redact_url`` first. (Pushes still pass the URL as an argument, so
it is visible in the process list while they run; move to ``GIT_ASKPASS`` or ``http.extraHeader`` when that matters.)

Refs that name a release or a branch are created, never moved: ``create_tag``, ``create_branch`` and ``create_record``
push with a lease that requires the ref to be absent on the remote, so two writers cannot both win, and a re-run finds
what the first run made. promo's own records (a local forge's pull requests) are annotated tag objects under
``refs/promo/<kind>/<name>``, invisible to ``git tag`` and ``git branch``; they are kept apart, fetched only by
``records`` and ``create_record`` (``record_store``), so they cost reads and writes of branches nothing. A lock file
the remote keeps on a ref is one error, not endless rejections (``remote_lock``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import shutil
import subprocess
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
from git.objects.fun import tree_entries_from_data
from gitdb.base import IStream
from gitdb.db.loose import LooseObjectDB

from promo.errors import AuthError, ConflictError, InputError, NotFound, PromoError, ToolError, TransientError
from promo.gitops.record_store import PARTIAL_FILTER as _PARTIAL_FILTER, RECORDS as _RECORDS
from promo.gitops.record_store import Annotation, RecordStore, read_annotations
from promo.gitops.remote_lock import LockWatch

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
_NO_REMOTE_BRANCH = re.compile(r"""couldn't find remote ref refs/heads/(?P<branch>[^\s'"]+)""")
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

    def __init__(self, url: str, path: Path, branch: str | None = None) -> None:
        self.url = url
        self.display_url = redact_url(url)
        self.path = path
        self.branch = branch
        self._lock_path = path.with_suffix(".lock")
        self._local = threading.local()
        # The URL reaches every git process of this mirror (GitPython's cat-file ones too) through the environment:
        # git's on-demand fetches of a partial cache's blobs need it, and it stays out of config and argv.
        self._env = {**_GIT_ENV, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "remote.origin.url"}
        self._env["GIT_CONFIG_VALUE_0"] = url

    @classmethod
    def open(cls, url: str, cache_dir: Path, *, branch: str | None = None) -> Mirror:
        """The cache of ``url`` under ``cache_dir``, created on first use (no network until the first fetch).

        The directory name is readable (the repo's name) and unique (a hash of the URL without credentials, so a
        rotated token keeps its cache). With ``branch`` the mirror is lean (see the module's doc): it fetches that
        branch alone, and a cache it creates is a blob-less partial clone, filled shallow by its first fetch.
        """
        display = redact_url(url)
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", display.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")) or "repo"
        digest = hashlib.sha256(display.encode()).hexdigest()[:12]
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        if branch is not None:
            check_branch_name(branch)
        mirror = cls(url, cache_dir / f"{name}-{digest}.git", branch)
        with mirror._locked():
            if not (mirror.path / "HEAD").exists():
                repo = Repo.init(mirror.path, bare=True, mkdir=True)
                if branch is not None:
                    with repo.config_writer() as config:  # what ``git clone --filter=blob:none`` writes
                        config.set_value("core", "repositoryformatversion", 1)
                        config.set_value("extensions", "partialClone", "origin")
                        config.set_value('remote "origin"', "promisor", "true")
                        config.set_value('remote "origin"', "partialclonefilter", _PARTIAL_FILTER)
                repo.close()
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
        for _ in range(2):  # a shallow cache may lack the commit (an old SHA, ``main~3``): deepen once and look again
            for candidate in candidates:
                try:
                    commit = self._repo.commit(candidate)
                    self._repo.odb.info(commit.binsha)  # a full SHA is taken on trust until its object is looked up
                    return commit.hexsha
                except (BadName, BadObject, ValueError):
                    continue
            if not self._deepen():
                break
        raise NotFound(f"{ref!r} is not a branch, tag or commit of {self.display_url}", "check the name; run a fetch")

    def is_ancestor(self, ancestor: str, ref: str) -> bool:
        """Whether commit ``ancestor`` is reachable from ``ref`` (a build commit on its branch); False if unknown."""
        try:
            ancestor_sha = self.resolve(ancestor)
        except NotFound:
            return False
        self._deepen()  # in a shallow cache the path between them may be cut off
        return self._repo.is_ancestor(ancestor_sha, self.resolve(ref))

    def commit_time(self, ref: str) -> int:
        """When ``ref``'s commit was committed, in seconds since the epoch (``git log -1 --format=%ct``)."""
        return self._repo.commit(self.resolve(ref)).committed_date

    def read_file(self, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref`` (line endings untouched), or None when there is no such file."""
        return self.read_files(ref, [path])[path]

    def read_files(self, ref: str, paths: Sequence[str]) -> dict[str, str | None]:
        """path -> the text of each of ``paths`` at ``ref`` (None where there is no such file).

        One path is a ``<commit>:<path>`` lookup in the cache's persistent ``cat-file --batch`` process: git walks only
        the trees along it, so a write's read costs the same in a 1-app and a 2,000-app repository. Many paths (all
        manifests for ``promo status --all``) are listed with one ``ls-tree -r`` and read by SHA through one
        ``cat-file --batch`` run (8,000 files: ~0.25 s), after a partial cache fetched the blobs it lacks in one
        request (``_prefetch``), not one round trip each as git would on first read."""
        commit = self.resolve(ref)
        for path in paths:
            if "\n" in path:
                raise InputError(f"{path!r} has a line break, which promo does not read", "rename the file")
        if len(paths) == 1:
            try:
                _, kind, _, data = self._repo.git.get_object_data(f"{commit}:{paths[0]}")
                found = {paths[0]: (kind, data)}
            except ValueError:  # cat-file answered "missing": no such path at that commit
                found = {}
        else:
            blobs = self._listed_blobs(commit)
            wanted = {path: blobs[path][1] for path in paths if path in blobs}
            found = dict(zip(wanted, self._read_blobs(commit, list(wanted.values()))))
        texts: dict[str, str | None] = {}
        for path in paths:
            kind, data = found.get(path, (b"missing", b""))
            try:
                texts[path] = data.decode("utf-8") if kind == b"blob" else None
            except UnicodeDecodeError:
                raise ToolError(f"{path} in {self.display_url} is not UTF-8 text", "save the file as UTF-8") from None
        return texts

    def _listed_blobs(self, commit: str, directory: str = "") -> dict[str, tuple[int, str]]:
        """path -> (mode, blob SHA) of every blob of ``commit`` (under ``directory``, taken literally: no glob or
        ":(magic)"), from one ``ls-tree -r``: trees only, no blob is read."""
        pathspec = ["--", f"{directory}/"] if directory else []
        listed = self._git("--literal-pathspecs", "ls-tree", "-r", "-z", commit, *pathspec, action="listing files of")
        blobs = {}
        for entry in listed.split("\0"):
            meta, _, path = entry.partition("\t")
            mode, kind, sha = meta.split(" ") if meta else ("", "", "")
            if kind == "blob":
                blobs[path] = (int(mode, 8), sha)
        return blobs

    def _read_blobs(self, commit: str, shas: Sequence[str]) -> list[tuple[bytes, bytes]]:
        """(type, content) of each of ``commit``'s blobs ``shas``, a partial cache fetching those it lacks at once."""
        if self._partial():
            self._prefetch(commit, set(shas))
        return self._cat_objects(shas)

    def _cat_objects(self, shas: Sequence[str]) -> list[tuple[bytes, bytes]]:
        """(type, content) of each object, in order, from one ``cat-file --batch`` run fed all the SHAs at once."""
        process = self._repo.git.execute(
            ["git", "cat-file", "--batch"], istream=subprocess.PIPE, as_process=True, env=self._env
        )
        output, errors = process.proc.communicate("".join(f"{sha}\n" for sha in shas).encode())
        if process.proc.returncode:
            cause = f"reading files of {self.display_url} failed: {redact_url(errors.decode(errors='replace'))}"
            raise ToolError(cause.strip(), "see git's message; repair the cache or delete it")
        objects, position = [], 0
        for _ in shas:
            newline = output.index(b"\n", position)
            header = output[position:newline].split()  # <sha> <type> <size>, then the content and a newline
            size, position = int(header[2]), newline + 1
            objects.append((header[1], output[position : position + size]))
            position += size + 1
        return objects

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

    def read_files_under(self, ref: str, prefix: str) -> dict[str, str]:
        """Every file under directory ``prefix`` at ``ref``, path (from the repository's root) -> text; empty when
        there is no such directory.

        Two git processes whatever the number of files: one ``ls-tree -r`` lists the blobs and one ``cat-file
        --batch`` reads them all (after a partial cache fetched the ones it lacks in one request), where a read per
        file would cost a lookup, or a round trip, each. Bytes that are not UTF-8 become U+FFFD, so one bad file reads
        as broken text for its caller to report instead of failing the rest. Symlinks and submodules are left out:
        they are not files of this tree.
        """
        commit = self.resolve(ref)
        listed = self._listed_blobs(commit, prefix.strip("/"))
        files = {path: sha for path, (mode, sha) in listed.items() if mode in (_FILE_MODE, _EXECUTABLE_MODE)}
        if not files:
            return {}
        objects = self._read_blobs(commit, list(files.values()))
        return {path: data.decode("utf-8", errors="replace") for path, (_, data) in zip(files, objects)}

    def log(self, since_ref: str | None, until_ref: str) -> list[LogEntry]:
        """Commits reachable from ``until_ref`` but not from ``since_ref`` (the whole history when None), newest
        first."""
        self._deepen()
        until = self.resolve(until_ref)
        revisions = f"{self.resolve(since_ref)}..{until}" if since_ref is not None else until
        output = self._git("log", "--format=%H%x1f%an%x1f%s", revisions, action="reading the history of")
        fields = (line.split("\x1f", 2) for line in output.splitlines() if line)
        return [LogEntry(sha, subject, author) for sha, author, subject in fields]

    def log_paths(self, ref: str, paths: Sequence[str] = (), *, limit: int | None = None) -> list[CommitRecord]:
        """The commits reachable from ``ref`` that touched any of ``paths`` (every commit when none), newest first;
        at most ``limit`` of them."""
        self._deepen()
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
        tags = read_annotations(self._read_git, "refs/tags")
        return {name: annotation.commit for name, annotation in tags.items()}

    def tag_message(self, name: str) -> str | None:
        """The message of annotated tag ``name``; None for a lightweight tag or no such tag."""
        check_tag_name(name)
        annotation = read_annotations(self._read_git, "refs/tags", name).get(name)
        return annotation.message if annotation else None

    def branches(self) -> dict[str, str]:
        """The remote's branches as last fetched: name -> head commit."""
        output = self._git(
            "for-each-ref", "--format=%(refname)%1f%(objectname)", f"{_TRACKING}/", action="listing the branches of"
        )
        pairs = (line.split("\x1f") for line in output.splitlines() if line)
        return {ref.removeprefix(f"{_TRACKING}/"): sha for ref, sha in pairs}

    def records(self, kind: str) -> dict[str, Annotation]:
        """promo's records of one ``kind`` (``refs/promo/<kind>/<name>``) as the remote has them now (fetched here: no
        other read fetches them): name -> what it holds."""
        _checked_kind(kind)
        with self._locked():
            return self._records.read(kind)

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
        parent_sha = self.resolve(parent)
        parent_tree = self._repo.commit(parent_sha).tree.binsha
        tree = self._write_tree(parent_tree, nested) if nested else parent_tree
        identity = f"{_one_line(author.name)} <{_one_line(author.email)}> {int(time.time())} +0000"
        header = f"tree {tree.hex()}\nparent {parent_sha}\nauthor {identity}\ncommitter {identity}\n"
        return self._store(b"commit", f"{header}\n{message}".encode()).hex()

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
        make = lambda commit: self._tag_object(name, commit, message, tagger)  # noqa: E731
        return self._create_ref(ref, ref, sha, make, record=True) is None

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
    def _loose(self) -> LooseObjectDB:
        return LooseObjectDB(str(self.path / "objects"))

    @property
    def _repo(self) -> Repo:
        """One Repo per thread: GitPython's persistent ``cat-file`` processes are not safe to share."""
        repo = getattr(self._local, "repo", None)
        if repo is None:
            repo = self._local.repo = Repo(self.path)
            repo.git.update_environment(**self._env)
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

    def _fetch(self, *mode: str) -> None:
        """Fetch the followed branches and tags (never records); ``mode`` replaces the options ``_fetch_mode`` picks
        (``_deepen`` passes its own)."""
        heads = self.branch or "*"
        refspecs = (f"+refs/heads/{heads}:{_TRACKING}/{heads}", "+refs/tags/*:refs/tags/*")
        options = ("--prune", "--no-tags", "--no-write-fetch-head", "--quiet", *(mode or self._fetch_mode()))
        self._git("fetch", *options, "origin", *refspecs, action="fetching", timeout=NETWORK_TIMEOUT_SECONDS)

    @property
    def _records(self) -> RecordStore:
        def git(*args: str) -> str:
            return self._git(*args, action="reading promo's records from", timeout=NETWORK_TIMEOUT_SECONDS)

        return RecordStore(self.path, git)

    def _read_git(self, *args: str) -> str:
        return self._git(*args, action="reading the refs of")

    def _fetch_mode(self) -> tuple[str, ...]:
        partial = self._partial()
        if self.branch is not None and self._peeled(f"{_TRACKING}/{self.branch}") is None:
            # An empty lean cache: the branch's head alone, and no blobs where the remote filters (else git warns
            # "filtering not recognized by server, ignoring" and sends them: slower, still correct).
            return ("--depth=1", f"--filter={_PARTIAL_FILTER}") if partial else ("--depth=1",)
        # Blobs of the commits fetched now are what the next write reads: take them along instead of one by one.
        return ("--no-filter",) if partial else ()

    def _partial(self) -> bool:
        """Whether the cache is a partial clone (objects may be missing, fetched by git on demand)."""
        return self._repo.config_reader("repository").has_option("extensions", "partialclone")

    def _prefetch(self, commit: str, wanted: set[str]) -> None:
        """Fetch the ``wanted`` blobs of ``commit`` that a partial cache lacks, in one request per 10,000 (argv stays
        under 0.5 MB): git alone would fetch each on first read, a round trip per file."""
        # ``--missing=print`` lists what is absent without fetching it: one walk of the commit's trees.
        walked = self._git("rev-list", "--objects", "--missing=print", commit, action="listing objects of")
        missing = sorted({line[1:] for line in walked.splitlines() if line.startswith("?")} & wanted)
        # As git's own on-demand fetch asks: no negotiation (the wants are blobs, not commits to find a base for).
        fetch = ("-c", "fetch.negotiationAlgorithm=noop", "fetch", "--no-tags", "--no-write-fetch-head")
        options = ("--recurse-submodules=no", "--quiet", f"--filter={_PARTIAL_FILTER}", "origin")
        for start in range(0, len(missing), 10_000):
            self._git(*fetch, *options, *missing[start : start + 10_000], action="fetching files from")

    def _deepen(self) -> bool:
        """Fetch the whole history into a shallow cache (without blobs, when partial): history reads need it.
        False when the cache already had it."""
        if not (self.path / "shallow").exists():
            return False
        with self._locked():
            if (self.path / "shallow").exists():
                self._fetch("--unshallow", *([f"--filter={_PARTIAL_FILTER}"] if self._partial() else []))
        return True

    def _branch_head(self, branch: str) -> str:
        check_branch_name(branch)
        try:
            return self._repo.commit(f"{_TRACKING}/{branch}").hexsha
        except (BadName, BadObject, ValueError):
            raise self._no_branch(branch) from None

    def _no_branch(self, branch: str) -> NotFound:
        return NotFound(
            f"branch {branch!r} does not exist in {self.display_url}",
            "push an initial commit to it, or set the branch in promo.yaml",
        )

    def _push_with_retry(
        self,
        branch: str,
        build: Callable[[Snapshot], tuple[str, tuple[str, ...]] | None],
        budget: RetryBudget,
        lock: WriteLock | None,
    ) -> UpdateResult:
        attempt, watch = 0, LockWatch(self.display_url, budget.clock)
        for attempt in budget.attempts():
            with lock() if lock else nullcontext(), self._locked():
                self._fetch()
                head = self._branch_head(branch)
                built = build(Snapshot(self, head))
                if built is None:
                    return UpdateResult(None, attempt, ())
                commit, paths = built
                # "up to date" means another writer pushed a byte-identical commit (same parent, tree, message and
                # second): its edit landed, ours did not, so it counts as a rejection and is re-applied on top.
                if self._push_branch(commit, branch, watch=watch, head=head) == "pushed":
                    return UpdateResult(commit, attempt, paths)
        raise budget.exhausted(
            f"pushing to {branch} of {self.display_url}",
            attempt,
            "other writers kept moving it",
            "run it again (each attempt re-applies the change on the newest commit)",
        )

    def _create_ref(
        self,
        ref: str,
        local_ref: str,
        sha: str,
        make: Callable[[str], str],
        budget: RetryBudget = RetryBudget(),
        record: bool = False,
    ) -> str | None:
        """Push ``ref`` unless the remote has it, never moving it: None when created, else the commit it names.

        ``make`` turns the commit into the object the ref holds (the commit itself, or a tag object on it). The push
        carries a lease requiring the ref to be absent, so of two concurrent creators one is rejected, fetches, and
        finds what the other made. ``local_ref`` is where the mirror keeps the remote's ref; a ``record`` is kept in
        the record store instead, and looked up there.
        """
        attempt, watch = 0, LockWatch(self.display_url, budget.clock)
        for attempt in budget.attempts():
            with self._locked():
                self._fetch()
                existing = self._records.existing(ref) if record else self._peeled(local_ref)
                if existing is not None:
                    return existing
                target = make(self.resolve(sha))
                lease = f"--force-with-lease={ref}:"
                outcome = self._push_refspec(f"{target}:{ref}", lease, action=f"pushing {ref} to", watch=watch)
                if outcome == "pushed":
                    if record:
                        self._records.existing(ref)  # fetched into the store, which never reads the cache's objects
                    else:
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

    def _push_branch(
        self, sha: str, branch: str, *, watch: LockWatch | None = None, head: str | None = None
    ) -> PushOutcome:
        """``watch`` follows the rejections of a retried push; ``head`` is the branch's head the attempt built on."""
        check_branch_name(branch)
        with self._locked():
            refspec, action = f"{sha}:refs/heads/{branch}", f"pushing {branch} to"
            outcome = self._push_refspec(refspec, action=action, watch=watch, ref_value=head)
            if outcome != "rejected":
                self._git("update-ref", f"{_TRACKING}/{branch}", sha, action="recording the push to")
        return outcome

    def _push_refspec(
        self, refspec: str, *options: str, action: str, watch: LockWatch | None = None, ref_value: str | None = None
    ) -> PushOutcome:
        """Push one refspec: "rejected" when the remote refused it because its ref moved (or, for a lease, exists),
        "up to date" when the remote's ref already was the pushed object. ``watch`` (with ``ref_value``, what the
        ref held when the attempt began) raises instead once the rejections are a lock the remote keeps."""
        try:
            output = self._run("push", "--porcelain", *options, self.url, refspec, timeout=NETWORK_TIMEOUT_SECONDS)
        except GitCommandError as exc:
            rejection = f"{exc.stdout}\n{exc.stderr}"
            if _REJECTED.search(rejection):
                if watch is not None:
                    watch.rejected(redact_url(rejection), ref_value, action)
                return "rejected"
            raise self._failure(action, exc) from None
        return "up to date" if any(line.startswith("=\t") for line in output.splitlines()) else "pushed"

    def _peeled(self, ref: str) -> str | None:
        """The commit a local ref points at through any tags, or None when there is no such ref."""
        try:
            return self._repo.commit(ref).hexsha
        except (BadName, BadObject, ValueError):
            return None

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
        trees along changed paths are read and written, and each is spliced as bytes: the entry that changes is
        replaced, the others (2,000 apps' worth in a big cluster directory) are copied untouched, not parsed."""
        raw = self._repo.odb.stream(tree).read() if tree is not None else b""
        for name, change in changes.items():
            start, end, mode, old = _tree_entry(raw, name.encode(), isinstance(change, dict))
            if isinstance(change, dict):
                if mode is not None and not S_ISDIR(mode):
                    raise InputError(f"{name!r} is a file in {self.display_url}, not a directory", "fix the path")
                mode, sha = _TREE_MODE, self._write_tree(old, change)
            else:
                if mode is not None and S_ISDIR(mode):
                    raise InputError(f"{name!r} is a directory in {self.display_url}, not a file", "fix the path")
                mode, sha = (mode if mode == _EXECUTABLE_MODE else _FILE_MODE), self._store(b"blob", change.encode())
            raw = raw[:start] + b"%o %s\0%s" % (mode, name.encode(), sha) + raw[end:]
        return self._store(b"tree", raw)

    def _store(self, kind: bytes, data: bytes) -> bytes:
        """Write a loose object in-process (no ``git hash-object`` per object) and return its binary SHA."""
        return self._loose.store(IStream(kind, len(data), BytesIO(data))).binsha

    def _run(self, *args: str, timeout: float | None = None, **kwargs: object) -> str:
        return self._repo.git.execute(["git", *args], env=self._env, kill_after_timeout=timeout, **kwargs)

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
        missing_branch = _NO_REMOTE_BRANCH.search(output)
        if missing_branch:  # a lean mirror fetches its branch by name, and git fails when the remote has none
            return self._no_branch(missing_branch["branch"])
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


def _tree_entry(raw: bytes, name: bytes, is_dir: bool) -> tuple[int, int, int | None, bytes | None]:
    """Where entry ``name`` of tree data ``raw`` is: (start, end, mode, SHA). When absent, (start, start, None, None),
    start being where git's order puts a new ``name`` (bytes compared, a directory's name as if it ended in "/")."""
    key, last = name + b"/" if is_dir else name, name + b"/"  # an existing name sorts no later than ``last``
    position, insert_at = 0, None
    while position < len(raw):
        space = raw.index(b" ", position)
        nul = raw.index(b"\0", space)
        end = nul + 21
        mode, entry = int(raw[position:space], 8), raw[space + 1 : nul]
        if entry == name:
            return position, end, mode, raw[nul + 1 : end]
        entry_key = entry + b"/" if S_ISDIR(mode) else entry
        if insert_at is None and entry_key > key:
            insert_at = position
        if entry_key > last:
            break
        position = end
    insert_at = len(raw) if insert_at is None else insert_at
    return insert_at, insert_at, None, None


def _split_path(path: str) -> list[str]:
    parts = path.split("/")
    if any(part in ("", ".", "..", ".git") for part in parts):
        raise InputError(f"{path!r} is not a relative file path inside the repository", "use a/b/c.yaml")
    return parts
