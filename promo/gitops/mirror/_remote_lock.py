"""A ref lock the remote kept, told apart from a remote that is merely busy.

git updates a ref by creating ``<ref>.lock`` next to it and renaming it into place; the lock lives milliseconds,
unless the ``receive-pack`` holding it is killed mid-update (a SIGKILLed push over ``file://`` or ssh takes the remote's
receive-pack with it). From then on every push of that ref fails with "cannot lock ref ...: Unable to create
'<path>.lock': File exists", which reads like losing a compare-and-swap race. Retried as one, a write would spend its
whole budget and blame "other writers" that do not exist.

So a push that fails on such a lock is watched across attempts: the same lock file while the ref stays where it was
is a lock nobody is releasing, and after ``STALE_LOCK_SECONDS`` it ends the write with one error naming the file and
the fix, not retried (a ``ToolError``, not a ``TransientError``). A ref that moves between attempts means a live
writer held the lock, and the watch starts over. promo never removes the file: it cannot see whether the
receive-pack that made it is still running on the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from promo.errors import ToolError

# A live push holds a ref lock for milliseconds (tens on a loaded machine); seconds of the same lock with the ref
# unmoved is a lock nobody will release. Low enough that the error comes well within 15 s (attempts back off <= 1 s).
STALE_LOCK_SECONDS = 5.0

_LOCKED = re.compile(r"cannot lock ref '(?P<ref>[^']+)': Unable to create '(?P<path>[^']+\.lock)': File exists")


@dataclass(frozen=True)
class RemoteLock:
    """A lock file the remote reported: ``ref`` it guards, ``path`` as the server named it."""

    ref: str
    path: str

    @property
    def file(self) -> str:
        """The lock file inside the repository (``refs/heads/main.lock``, ``packed-refs.lock``)."""
        path = os.path.normpath(self.path)
        return f"{self.ref}.lock" if path.endswith(f"/{self.ref}.lock") else os.path.basename(path)


def remote_lock(output: str) -> RemoteLock | None:
    """The remote ref lock a failed push's output reports, if any."""
    found = _LOCKED.search(output)
    return RemoteLock(found["ref"], found["path"]) if found else None


class LockWatch:
    """Follows one write's rejected attempts and raises once the remote has kept the same lock on an unmoved ref for
    ``stale_after`` seconds. ``clock`` is the retry budget's, so tests move time without waiting."""

    def __init__(self, display_url: str, clock: Callable[[], float], stale_after: float = STALE_LOCK_SECONDS) -> None:
        self.display_url = display_url
        self.clock = clock
        self.stale_after = stale_after
        self._seen: tuple[str, str | None] | None = None  # (lock path, the ref's value) when first seen
        self._since = 0.0

    def rejected(self, output: str, ref_value: str | None, action: str) -> None:
        """Note one rejected push: ``output`` is git's, ``ref_value`` what the ref held when the attempt began (None:
        absent), ``action`` what was being done ("pushing main to")."""
        lock = remote_lock(output)
        if lock is None:
            self._seen = None
            return
        seen = (lock.path, ref_value)
        now = self.clock()
        if seen != self._seen:
            self._seen, self._since = seen, now
            return
        if now - self._since >= self.stale_after:
            raise ToolError(
                f"{action} {self.display_url} failed: the remote repository has kept the lock file {lock.file} for "
                f"{now - self._since:.0f} s while {lock.ref} did not move: a git push killed mid-update left it, and "
                f"no push can change {lock.ref} until it is gone",
                f"once no push to {self.display_url} is running, remove {lock.file} in the remote repository "
                f"(on the server: {os.path.normpath(lock.path)}), then run it again",
            )
