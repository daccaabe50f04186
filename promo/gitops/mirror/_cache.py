"""The core all parts of a mirror share: one bare repository per remote, its lock, how it runs git, what it fetches.

One bare repository per remote lives under the cache directory and is fetched on every use, never cloned again: a
fetch costs tens of milliseconds where a fresh clone costs seconds. Concurrent users of one cache (threads or
processes) are serialised by an ``fcntl`` lock file around every fetch-edit-push section (``Cache.locked``).

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
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from git import Repo
from git.exc import BadName, BadObject, GitCommandError

from promo.errors import NotFound
from promo.gitops.mirror._errors import failure, no_branch, removed_stale_lock
from promo.gitops.mirror._record_store import PARTIAL_FILTER, RecordStore, store_object
from promo.gitops.mirror._types import check_branch_name, redact_url

NETWORK_TIMEOUT_SECONDS = 300.0
TRACKING = "refs/remotes/origin"
FILE_MODE, EXECUTABLE_MODE = 0o100644, 0o100755
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}  # fail fast instead of waiting for a password nobody will type
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class _HeldLocks(threading.local):
    """The cache locks the current thread holds."""

    def __init__(self) -> None:
        self.paths: set[Path] = set()


_held_locks = _HeldLocks()


def cache_path(url: str, cache_dir: Path) -> Path:
    """Where the cache of ``url`` lives under ``cache_dir`` (made if missing). The directory name is readable (the
    repo's name) and unique (a hash of the URL without credentials, so a rotated token keeps its cache)."""
    display = redact_url(url)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", display.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")) or "repo"
    digest = hashlib.sha256(display.encode()).hexdigest()[:12]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir / f"{name}-{digest}.git"


class Cache:
    """The bare repository of one remote: ``refs/remotes/origin/*`` follow the remote's branches (``branch`` alone
    when given)."""

    def __init__(self, url: str, path: Path, branch: str | None = None) -> None:
        self.url = url
        self.display_url = redact_url(url)
        self.path = path
        self.branch = branch
        self._lock_path = path.with_suffix(".lock")
        self._local = threading.local()
        # The URL reaches every git process of this mirror (GitPython's cat-file ones too) through the environment:
        # git's on-demand fetches of a partial cache's blobs need it, and it stays out of config and argv.
        self.env = {**_GIT_ENV, "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "remote.origin.url"}
        self.env["GIT_CONFIG_VALUE_0"] = url

    def create(self) -> None:
        """Make the bare repository unless it exists; a lean cache's is a blob-less partial clone."""
        with self.locked():
            if not (self.path / "HEAD").exists():
                repo = Repo.init(self.path, bare=True, mkdir=True)
                if self.branch is not None:
                    with repo.config_writer() as config:  # what ``git clone --filter=blob:none`` writes
                        config.set_value("core", "repositoryformatversion", 1)
                        config.set_value("extensions", "partialClone", "origin")
                        config.set_value('remote "origin"', "promisor", "true")
                        config.set_value('remote "origin"', "partialclonefilter", PARTIAL_FILTER)
                repo.close()
            if self.partial() and not self.repo.config_reader("repository").has_option("repack", "writebitmaps"):
                # git's automatic gc of a bare repository writes a bitmap, which a partial clone cannot (objects are
                # missing): the repack fails, its gc.log stops every later automatic gc, and loose objects and packs
                # pile up until a fetch with nothing new costs several times what it should. Caches made before
                # this line get it on their next open.
                with self.repo.config_writer("repository") as config:
                    config.set_value("repack", "writeBitmaps", "false")

    @property
    def repo(self) -> Repo:
        """One Repo per thread: GitPython's persistent ``cat-file`` processes are not safe to share."""
        repo = getattr(self._local, "repo", None)
        if repo is None:
            repo = self._local.repo = Repo(self.path)
            repo.git.update_environment(**self.env)
        return repo

    @contextmanager
    def locked(self) -> Iterator[None]:
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

    def run(self, *args: str, timeout: float | None = None, **kwargs: object) -> str:
        return self.repo.git.execute(["git", *args], env=self.env, kill_after_timeout=timeout, **kwargs)

    def git(self, *args: str, action: str, timeout: float | None = None) -> str:
        """Run git in the cache; a failure is the error a caller acts on (``action`` says what was being done)."""
        try:
            return self.run(*args, timeout=timeout)
        except GitCommandError as exc:
            if not (self._lock_path in _held_locks.paths and removed_stale_lock(exc, self.path)):
                raise failure(action, exc, self.display_url) from None
        try:
            return self.run(*args, timeout=timeout)
        except GitCommandError as exc:
            raise failure(action, exc, self.display_url) from None

    def read_git(self, *args: str) -> str:
        return self.git(*args, action="reading the refs of")

    def fetch(self, *mode: str) -> None:
        """Fetch the followed branches and tags (never records); ``mode`` replaces the options ``_fetch_mode`` picks
        (``deepen`` passes its own)."""
        heads = self.branch or "*"
        refspecs = (f"+refs/heads/{heads}:{TRACKING}/{heads}", "+refs/tags/*:refs/tags/*")
        options = ("--prune", "--no-tags", "--no-write-fetch-head", "--quiet", *(mode or self._fetch_mode()))
        self.git("fetch", *options, "origin", *refspecs, action="fetching", timeout=NETWORK_TIMEOUT_SECONDS)

    def _fetch_mode(self) -> tuple[str, ...]:
        partial = self.partial()
        if self.branch is not None and self.peeled(f"{TRACKING}/{self.branch}") is None:
            # An empty lean cache: the branch's head alone, and no blobs where the remote filters (else git warns
            # "filtering not recognized by server, ignoring" and sends them: slower, still correct).
            return ("--depth=1", f"--filter={PARTIAL_FILTER}") if partial else ("--depth=1",)
        # Blobs of the commits fetched now are what the next write reads: take them along instead of one by one.
        return ("--no-filter",) if partial else ()

    def partial(self) -> bool:
        """Whether the cache is a partial clone (objects may be missing, fetched by git on demand)."""
        return self.repo.config_reader("repository").has_option("extensions", "partialclone")

    def deepen(self) -> bool:
        """Fetch the whole history into a shallow cache (without blobs, when partial): history reads need it.
        False when the cache already had it."""
        if not (self.path / "shallow").exists():
            return False
        with self.locked():
            if (self.path / "shallow").exists():
                self.fetch("--unshallow", *([f"--filter={PARTIAL_FILTER}"] if self.partial() else []))
        return True

    @property
    def records(self) -> RecordStore:
        def git(*args: str) -> str:
            return self.git(*args, action="reading promo's records from", timeout=NETWORK_TIMEOUT_SECONDS)

        return RecordStore(self.path, git)

    def resolve(self, ref: str) -> str:
        """The commit SHA of a branch (as last fetched), tag, SHA or revision expression (``main~1``)."""
        candidates = [ref] if _FULL_SHA.fullmatch(ref) else [f"{TRACKING}/{ref}", f"refs/tags/{ref}", ref]
        for _ in range(2):  # a shallow cache may lack the commit (an old SHA, ``main~3``): deepen once and look again
            for candidate in candidates:
                try:
                    commit = self.repo.commit(candidate)
                    self.repo.odb.info(commit.binsha)  # a full SHA is taken on trust until its object is looked up
                    return commit.hexsha
                except (BadName, BadObject, ValueError):
                    continue
            if not self.deepen():
                break
        raise NotFound(f"{ref!r} is not a branch, tag or commit of {self.display_url}", "check the name; run a fetch")

    def peeled(self, ref: str) -> str | None:
        """The commit a local ref points at through any tags, or None when there is no such ref."""
        try:
            return self.repo.commit(ref).hexsha
        except (BadName, BadObject, ValueError):
            return None

    def branch_head(self, branch: str) -> str:
        """The head of the remote's ``branch`` as last fetched."""
        check_branch_name(branch)
        try:
            return self.repo.commit(f"{TRACKING}/{branch}").hexsha
        except (BadName, BadObject, ValueError):
            raise no_branch(branch, self.display_url) from None

    def store(self, kind: bytes, data: bytes) -> bytes:
        """Write a loose object in-process (no ``git hash-object`` per object) and return its binary SHA."""
        return store_object(self.path, kind, data)
