"""promo's records (``refs/promo/<kind>/<name>``), kept in a repository of their own inside a mirror's cache.

Records grow without bound, one verdict per verified commit, and every git command of a repository that looks at all
its refs pays for each one: a fetch's connectivity check, a push's list of objects the remote already has. With
20,000 verdicts fetched into the GitOps cache (as every fetch did), a warm write cost about ten times the CPU of the
same write without them, and each push attempt paid it while holding the repository lock. So the cache that branch
reads and writes use never holds a record, neither its ref nor its tag object: records are fetched only where they are
read (``Mirror.records``, one kind at a time) or checked (``Mirror.create_record``, the one ref), into
``promo-records.git`` inside the cache, blob-less and (the first time) shallow: a record is read for its message;
the commit it names comes along, its files and older history do not. They are kept packed (20,000 loose ref files
would slow every read). Record logs (``_record_log``), which replaced one ref per record, live here too.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from gitdb.base import IStream
from gitdb.db.loose import LooseObjectDB

from promo.errors import ToolError

RECORDS = "refs/promo"
PARTIAL_FILTER = "blob:none"
# Every fetch: prune refs the remote deleted (within the refspecs only), no tag following, no FETCH_HEAD to write.
FETCH_OPTIONS = ("--prune", "--no-tags", "--no-write-fetch-head", "--quiet")
_FIELDS = ("refname", "objecttype", "objectname", "*objecttype", "*objectname", "contents")

Git = Callable[..., str]
"""Runs one git command (its arguments) with the mirror's environment, raising a PromoError when it fails."""


@dataclass(frozen=True)
class Annotation:
    """What a tag or record ref names: the commit it peels to, and the annotated tag's message (None when the ref is
    a lightweight tag)."""

    commit: str
    message: str | None


def read_annotations(git: Git, namespace: str, name: str | None = None) -> dict[str, Annotation]:
    """The refs under ``namespace`` (or only ``name`` there) naming commits, read in one ``for-each-ref``."""
    pattern = f"{namespace}/{name}" if name else f"{namespace}/"
    output = git("for-each-ref", "--format=" + "%1f".join(f"%({field})" for field in _FIELDS) + "%1e", pattern)
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


def store_object(repository: Path, kind: bytes, data: bytes) -> bytes:
    """Write a loose object into ``repository`` in-process (no ``git hash-object`` per object); its binary SHA."""
    return LooseObjectDB(str(repository / "objects")).store(IStream(kind, len(data), BytesIO(data))).binsha


class RecordStore:
    """The records repository of one cache. ``git`` runs git in the cache; callers hold the cache's lock."""

    def __init__(self, cache: Path, git: Git) -> None:
        self.path = cache.absolute() / "promo-records.git"  # git runs in the cache: a relative path would miss
        self._cache_git = git

    def read(self, kind: str, prefix: str = "") -> dict[str, Annotation]:
        """The records of ``kind`` (those whose name starts with ``prefix``) as the remote has them now: fetched, then
        read."""
        self.fetch(f"{RECORDS}/{kind}/{prefix}*")
        found = read_annotations(self.git, f"{RECORDS}/{kind}")
        return {name: annotation for name, annotation in found.items() if name.startswith(prefix)}

    def existing(self, ref: str) -> str | None:
        """The commit record ``ref`` names in the remote now, or None when it has no such record."""
        self.fetch(f"{ref}*")  # a pattern, unlike a plain name, matches nothing without failing; ``ref*`` is narrow
        found = read_annotations(self.git, ref.rsplit("/", 1)[0], ref.rsplit("/", 1)[1])
        return next(iter(found.values())).commit if found else None

    def fetch(self, pattern: str, *, shallow: bool = True) -> None:
        """Fetch (and prune) the records matching ``pattern`` (a ref with one ``*``), then pack the refs if the fetch
        left loose files. Not ``shallow``: a record log, whose every entry is read, comes whole."""
        if not (self.path / "HEAD").exists():
            self._create()
        fetch = ("fetch", *FETCH_OPTIONS, f"--filter={PARTIAL_FILTER}", "origin", f"+{pattern}:{pattern}")
        # The first fetch of a pattern is shallow, so the commits records name come without their history; later ones
        # are not: ``--depth`` renegotiates every matching ref (3 s for 20,000 where a plain fetch takes 0.1 s), and
        # the commits of new records stop at those the store has.
        prefix = pattern.removesuffix("*")  # for-each-ref matches a prefix up to a "/" (its ``*`` stops at one)
        if not shallow or self.git("for-each-ref", "--count=1", "--format=%(refname)", prefix).strip():
            self.git(*fetch)
        else:
            try:
                self.git(*fetch, "--depth=1")
            except ToolError:  # ``fetch --depth`` fails, saying nothing, when no remote ref matches: a plain fetch
                self.git(*fetch)  # then brings nothing, and prunes what the remote deleted
        loose = self.path / RECORDS
        if loose.is_dir() and any(loose.iterdir()):  # ``git pack-refs`` removes loose refs and their directories
            self.git("pack-refs", "--all")

    def _create(self) -> None:
        """A bare, blob-less partial repository (what ``git clone --bare --filter=blob:none`` writes), made aside and
        renamed into place: a run killed meanwhile leaves no half-configured store."""
        building = self.path.with_name(f"{self.path.name}.new")
        shutil.rmtree(building, ignore_errors=True)
        self._cache_git("init", "--quiet", "--bare", str(building))
        for key, value in (
            ("core.repositoryformatversion", "1"),
            ("extensions.partialClone", "origin"),
            ("remote.origin.promisor", "true"),
            ("remote.origin.partialclonefilter", PARTIAL_FILTER),
            ("repack.writeBitmaps", "false"),  # a partial clone cannot have one: see ``Cache.create``
        ):
            self._cache_git(f"--git-dir={building}", "config", key, value)
        shutil.rmtree(self.path, ignore_errors=True)  # not a repository (no HEAD): nothing to keep
        building.rename(self.path)

    def put(self, kind: bytes, data: bytes) -> bytes:
        """Write a loose object into the store in-process and return its binary SHA."""
        if not (self.path / "HEAD").exists():
            self._create()
        return store_object(self.path, kind, data)

    def git(self, *args: str) -> str:
        return self._cache_git(f"--git-dir={self.path}", *args)
