"""What each fetch of a cache brings: reads and writes fetch the followed branches and tags, never promo's records.

Records (``refs/promo/<kind>/<name>``: verdicts, pull requests) grow without bound, one per verified commit: 20,000
of them made every fetch that brought nothing cost ~0.8 s of CPU, paid by each push attempt while it held the
repository lock. So a GitOps write and a plain read fetch ``refs/heads/<branch>`` and ``refs/tags/*`` alone, and the
records are fetched only where they are read (``Mirror.records``, one kind at a time) or created (the one ref). The
cache then packs them into ``packed-refs``: 20,000 loose ref files would cost every later git command that lists refs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from promo.errors import ToolError

RECORDS = "refs/promo"
TRACKING = "refs/remotes/origin"
PARTIAL_FILTER = "blob:none"
# Every fetch: prune refs the remote deleted (within the refspecs only), no tag following, no FETCH_HEAD to write.
COMMON_OPTIONS = ("--prune", "--no-tags", "--no-write-fetch-head", "--quiet")


def branch_refspecs(branch: str | None) -> tuple[str, ...]:
    """What reads and writes fetch: the followed branch (every branch when None) and the tags; no records."""
    heads = branch or "*"
    return (f"+refs/heads/{heads}:{TRACKING}/{heads}", "+refs/tags/*:refs/tags/*")


def one_record(ref: str) -> str:
    """A pattern matching ``ref`` itself (and the few names it is a prefix of): unlike the plain name, a pattern that
    matches nothing is no error, so checking whether a record exists costs one fetch whether or not it does."""
    return f"{ref}*"


def fetch_records(git: Callable[..., str], cache: Path, pattern: str, *, partial: bool, shallow: bool) -> None:
    """Fetch (and prune) the records matching ``pattern`` (a ref with one ``*``) into ``cache`` with ``git`` (runs a
    git command there, raising a ``ToolError`` when it fails), then pack the refs if the fetch left loose files.

    Records are tag objects read for their message: the commits they name come along (git needs them), their blobs
    never do (``partial``), nor, in a ``shallow`` cache, their history (``--depth=1``)."""
    filters = (f"--filter={PARTIAL_FILTER}",) if partial else ()
    for depth in (("--depth=1",), ()) if shallow else ((),):
        try:
            git("fetch", *COMMON_OPTIONS, *depth, *filters, "origin", f"+{pattern}:{pattern}")
            break
        except ToolError:  # ``fetch --depth`` fails, saying nothing, when no remote ref matches: a plain fetch then
            if not depth:  # brings nothing, and prunes what the remote deleted
                raise
    if has_loose_refs(cache):
        git("pack-refs", "--all")


def has_loose_refs(cache: Path, namespace: str = RECORDS) -> bool:
    """Whether refs under ``namespace`` are loose files (``git pack-refs`` removes them and their directories)."""
    directory = cache / namespace
    return directory.is_dir() and any(directory.iterdir())
