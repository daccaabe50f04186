"""Tags, branches and promo's records: read as last fetched, and created, never moved.

Refs that name a release or a branch are created, never moved: ``create_tag``, ``create_branch`` and ``create_record``
push with a lease that requires the ref to be absent on the remote, so two writers cannot both win, and a re-run finds
what the first run made. promo's own records (a local forge's pull requests) are annotated tag objects under
``refs/promo/<kind>/<name>``, invisible to ``git tag`` and ``git branch``; they are kept apart, fetched only by
``records`` and ``create_record`` (``_record_store``), so they cost reads and writes of branches nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from git import Actor

from promo.errors import ConflictError
from promo.gitops.mirror._cache import NETWORK_TIMEOUT_SECONDS, TRACKING, Cache
from promo.gitops.mirror._push import RetryBudget, push_refspec
from promo.gitops.mirror._record_store import RECORDS, Annotation, read_annotations
from promo.gitops.mirror._remote_lock import LockWatch
from promo.gitops.mirror._types import check_branch_name, check_ref_name, check_tag_name, checked_kind, one_line


def tags(cache: Cache) -> dict[str, str]:
    tags = read_annotations(cache.read_git, "refs/tags")
    return {name: annotation.commit for name, annotation in tags.items()}


def tag_message(cache: Cache, name: str) -> str | None:
    check_tag_name(name)
    annotation = read_annotations(cache.read_git, "refs/tags", name).get(name)
    return annotation.message if annotation else None


def branches(cache: Cache) -> dict[str, str]:
    output = cache.git(
        "for-each-ref", "--format=%(refname)%1f%(objectname)", f"{TRACKING}/", action="listing the branches of"
    )
    pairs = (line.split("\x1f") for line in output.splitlines() if line)
    return {ref.removeprefix(f"{TRACKING}/"): sha for ref, sha in pairs}


def records(cache: Cache, kind: str, prefix: str = "") -> dict[str, Annotation]:
    checked_kind(kind)
    with cache.locked():
        return cache.records.read(kind, prefix)


def create_tag(cache: Cache, name: str, sha: str, message: str, tagger: Actor) -> bool:
    check_tag_name(name)
    ref = f"refs/tags/{name}"
    existing = _create_ref(cache, ref, ref, sha, lambda commit: _tag_object(cache, name, commit, message, tagger))
    fix = "a pushed tag is never moved: release under another version, or delete the tag by hand if it is wrong"
    return _created_here(cache, f"tag {name}", existing, sha, fix)


def fetch_branch(cache: Cache, name: str) -> str | None:
    check_branch_name(name)
    with cache.locked():
        listed = cache.git("ls-remote", "origin", f"refs/heads/{name}", action="listing branches of",
                           timeout=NETWORK_TIMEOUT_SECONDS)  # fmt: skip
        if not listed.strip():
            # Deleted there (a pull request's branch after its merge or close): forgotten here too, or creating it
            # again (``create_branch``) would find the old commit and refuse. A lean fetch prunes its one branch only.
            if cache.peeled(f"{TRACKING}/{name}") is not None:
                cache.git("update-ref", "-d", f"{TRACKING}/{name}", action="forgetting a deleted branch of")
            return None
        refspec = f"+refs/heads/{name}:{TRACKING}/{name}"
        cache.git("fetch", "--no-tags", "--no-write-fetch-head", "--quiet", "origin", refspec, action="fetching",
                  timeout=NETWORK_TIMEOUT_SECONDS)  # fmt: skip
        return cache.branch_head(name)


def create_branch(cache: Cache, name: str, sha: str) -> bool:
    check_branch_name(name)
    existing = _create_ref(cache, f"refs/heads/{name}", f"{TRACKING}/{name}", sha, lambda commit: commit)
    fix = f"use that branch as it is, or delete it first if it is stale (git push <remote> :{name})"
    return _created_here(cache, f"branch {name}", existing, sha, fix)


def create_record(cache: Cache, kind: str, name: str, sha: str, message: str, tagger: Actor) -> bool:
    check_ref_name(name, "record", "hotfix-1-2-4")
    ref = f"{RECORDS}/{checked_kind(kind)}/{name}"
    make = lambda commit: _tag_object(cache, name, commit, message, tagger)  # noqa: E731
    return _create_ref(cache, ref, ref, sha, make, record=True) is None


def _create_ref(
    cache: Cache,
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
    attempt, watch = 0, LockWatch(cache.display_url, budget.clock)
    for attempt in budget.attempts():
        with cache.locked():
            cache.fetch()
            existing = cache.records.existing(ref) if record else cache.peeled(local_ref)
            if existing is not None:
                return existing
            target = make(cache.resolve(sha))
            lease = f"--force-with-lease={ref}:"
            outcome = push_refspec(cache, f"{target}:{ref}", lease, action=f"pushing {ref} to", watch=watch)
            if outcome == "pushed":
                if record:
                    cache.records.existing(ref)  # fetched into the store, which never reads the cache's objects
                else:
                    cache.git("update-ref", local_ref, target, action="recording the push to")
                return None
    raise budget.exhausted(
        f"creating {ref} in {cache.display_url}",
        attempt,
        "yet it does not exist there",
        "run it again; check that the remote accepts pushes to this ref",
    )


def _created_here(cache: Cache, what: str, existing: str | None, sha: str, fix: str) -> bool:
    """True when ``_create_ref`` created the ref, False when it already named ``sha``'s commit, else a conflict."""
    if existing is None:
        return True
    commit = cache.resolve(sha)
    if existing != commit:
        cause = f"{what} already exists in {cache.display_url} at commit {existing}, not at {commit}"
        raise ConflictError(cause, fix)
    return False


def _tag_object(cache: Cache, name: str, commit: str, message: str, tagger: Actor) -> str:
    """Store an annotated tag object on ``commit`` (as ``git tag -a`` writes it) and return its SHA."""
    header = (
        f"object {commit}\ntype commit\ntag {name}\n"
        f"tagger {one_line(tagger.name)} <{one_line(tagger.email)}> {int(time.time())} +0000\n"
    )
    return cache.store(b"tag", f"{header}\n{message.strip()}\n".encode()).hex()
