"""git's failures, translated: the one error (cause; fix) a caller acts on, whose message never carries credentials;
and a lock file a killed git left in the cache, told apart from a real failure and cleared."""

from __future__ import annotations

import re
from pathlib import Path

from git.exc import GitCommandError

from promo.errors import AuthError, NotFound, PromoError, ToolError, TransientError
from promo.gitops.mirror._types import redact_url

_STALE_LOCK = re.compile(r"Unable to create '(?P<path>[^']+\.lock)': File exists")
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


def failure(action: str, exc: GitCommandError, display_url: str) -> PromoError:
    """Map a failed git command to the error a caller acts on; the message never carries credentials."""
    output = redact_url(str(exc.stderr or exc.stdout or ""))
    lines = [line.strip().removeprefix("stderr:").strip("'\" ") for line in output.splitlines()]
    messages = [line for line in lines if line.startswith(("fatal:", "error:"))] or [line for line in lines if line]
    detail = messages[0] if messages else f"exit status {exc.status}"
    cause = f"{action} {display_url} failed: {detail}"
    missing_branch = _NO_REMOTE_BRANCH.search(output)
    if missing_branch:  # a lean mirror fetches its branch by name, and git fails when the remote has none
        return no_branch(missing_branch["branch"], display_url)
    if _AUTH.search(output):
        return AuthError(cause, "check that the git credentials (token in the URL, credential helper) have access")
    if _MISSING.search(output):
        return NotFound(cause, "check the repository URL in promo.yaml")
    if _NETWORK.search(output):
        return TransientError(cause, "retry; check the network and that the git server is reachable")
    return ToolError(cause, "see git's message; fix the repository or its URL in promo.yaml")


def no_branch(branch: str, display_url: str) -> NotFound:
    return NotFound(
        f"branch {branch!r} does not exist in {display_url}",
        "push an initial commit to it, or set the branch in promo.yaml",
    )


def removed_stale_lock(exc: GitCommandError, cache: Path) -> bool:
    """A git process killed mid-write (a run SIGKILLed during a fetch) leaves ``<ref>.lock`` in the cache, and
    every later write there fails with "File exists". promo's writes into the cache all hold its flock, so one
    found while we hold it belongs to nobody alive: remove it (only inside the ``cache`` directory) and let the caller
    retry. Call it only while holding the cache's lock."""
    found = _STALE_LOCK.search(str(exc.stderr or ""))
    if found is None:
        return False
    lock = Path(found["path"]).resolve()
    if not (lock.name.endswith(".lock") and lock.is_relative_to(cache.resolve()) and lock.is_file()):
        return False
    lock.unlink()
    return True
