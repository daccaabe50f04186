"""Pushing, and retrying a push the remote rejected because someone else moved the branch.

``update`` is the primitive behind "concurrent promotions never lose an update": a push rejected because someone else
moved the branch is fetched again and the same edit re-applied on the new head. Users of one cache are serialised by
its lock; users of different caches race at the remote and the loser retries, or, given a ``WriteLock`` (the flows
pass one held by the Prefect server, one per remote), queue for the remote instead. A rejected push is retried for a
time budget (``RetryBudget``), not a count: contention delays a write, it does not fail it. A lock file the remote
keeps on a ref is one error, not endless rejections (``_remote_lock``).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from git.exc import GitCommandError

from promo.errors import TransientError
from promo.gitops.mirror._cache import NETWORK_TIMEOUT_SECONDS, TRACKING, Cache
from promo.gitops.mirror._errors import failure
from promo.gitops.mirror._remote_lock import LockWatch
from promo.gitops.mirror._types import UpdateResult, WriteLock, check_branch_name, redact_url

# How long rejected pushes are retried. 32 writers racing one remote from 32 caches, unlocked, drained in 10-41 s on
# 2 busy cores (docs/performance.md); 120 s covers several times that, and stays below the Prefect lock's own wait
# (tasks/limits.py), so a write stuck behind the lock is reported by the lock, not by this budget.
DEFAULT_RETRY_SECONDS = 120.0

# Between attempts a random wait from 0 up to 50 ms x 2^attempt, at most 1 s (full jitter): writers that collided once
# do not collide again in lock-step. Short, because the winner's push is already done when the loser learns of it.
_BACKOFF_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 1.0
_REJECTED = re.compile(r"non-fast-forward|fetch first|cannot lock ref|stale info|incorrect old value|already exists")

PushOutcome = Literal["pushed", "up to date", "rejected"]
Build = Callable[[str], tuple[str, tuple[str, ...]] | None]
"""Builds one attempt's commit on the branch's head (its SHA): (commit, changed paths), or None for nothing to do."""


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


def update(cache: Cache, branch: str, build: Build, budget: RetryBudget, lock: WriteLock | None) -> UpdateResult:
    """Fetch, build on the head of ``branch`` and push, again on the new head after every rejection."""
    attempt, watch = 0, LockWatch(cache.display_url, budget.clock)
    for attempt in budget.attempts():
        with lock() if lock else nullcontext(), cache.locked():
            cache.fetch()
            head = cache.branch_head(branch)
            built = build(head)
            if built is None:
                return UpdateResult(None, attempt, ())
            commit, paths = built
            # "up to date" means another writer pushed a byte-identical commit (same parent, tree, message and
            # second): its edit landed, ours did not, so it counts as a rejection and is re-applied on top.
            if push_branch(cache, commit, branch, watch=watch, head=head) == "pushed":
                return UpdateResult(commit, attempt, paths)
    raise budget.exhausted(
        f"pushing to {branch} of {cache.display_url}",
        attempt,
        "other writers kept moving it",
        "run it again (each attempt re-applies the change on the newest commit)",
    )


def push_branch(
    cache: Cache, sha: str, branch: str, *, watch: LockWatch | None = None, head: str | None = None
) -> PushOutcome:
    """``watch`` follows the rejections of a retried push; ``head`` is the branch's head the attempt built on."""
    check_branch_name(branch)
    with cache.locked():
        refspec, action = f"{sha}:refs/heads/{branch}", f"pushing {branch} to"
        outcome = push_refspec(cache, refspec, action=action, watch=watch, ref_value=head)
        if outcome != "rejected":
            cache.git("update-ref", f"{TRACKING}/{branch}", sha, action="recording the push to")
    return outcome


def push_refspec(
    cache: Cache,
    refspec: str,
    *options: str,
    action: str,
    watch: LockWatch | None = None,
    ref_value: str | None = None,
    git_dir: Path | None = None,
) -> PushOutcome:
    """Push one refspec: "rejected" when the remote refused it because its ref moved (or, for a lease, exists),
    "up to date" when the remote's ref already was the pushed object. ``watch`` (with ``ref_value``, what the
    ref held when the attempt began) raises instead once the rejections are a lock the remote keeps. ``git_dir``
    pushes from another repository of the cache (the record store) instead of the cache."""
    where = (f"--git-dir={git_dir}",) if git_dir else ()
    try:
        push = ("push", "--porcelain", *options, cache.url, refspec)
        output = cache.run(*where, *push, timeout=NETWORK_TIMEOUT_SECONDS)
    except GitCommandError as exc:
        rejection = f"{exc.stdout}\n{exc.stderr}"
        if _REJECTED.search(rejection):
            if watch is not None:
                watch.rejected(redact_url(rejection), ref_value, action)
            return "rejected"
        raise failure(action, exc, cache.display_url) from None
    return "up to date" if any(line.startswith("=\t") for line in output.splitlines()) else "pushed"
