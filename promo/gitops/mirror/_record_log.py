"""Record logs: one ref per log (``refs/promo/log/<kind>/<subject>``), a chain of commits with one entry each.

One ref per record (``refs/promo/verdicts/<app>/<env>/<commit>-<nonce>``) made every ``git push`` of the repository
pay for every record: receive-pack advertises all refs to every push, so with 20,000 verdicts a warm write cost
4.9 times the same write without them. A log keeps the number of refs at the number of (kind, subject) pairs, however
many records they hold.

An entry is a commit whose parent is the log's previous tip and whose tree is empty: its message is the record.
Nothing in a log names a GitOps commit as an object (the record names it in its text), so fetching a log brings its
entries and nothing of the GitOps history. Logs live in the cache's record store (``_record_store``), fetched only
where they are read or appended to, never by the branch reads and writes.

Appending is a fast-forward push, never a force: a push rejected because another writer appended meanwhile fetches
that one log again and appends on its new tip, within a ``RetryBudget``. Whether an entry is to be believed is not
this module's business (``promo.gitops.record_log``): it hands out every entry, oldest first, whoever made it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from git import Actor

from promo.errors import ConflictError
from promo.gitops.mirror._cache import Cache
from promo.gitops.mirror._push import RetryBudget, push_refspec
from promo.gitops.mirror._record_store import RECORDS, Git
from promo.gitops.mirror._remote_lock import LockWatch
from promo.gitops.mirror._types import check_ref_name, checked_kind, one_line

LOGS = f"{RECORDS}/log"
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass(frozen=True)
class RecordEntry:
    """One entry of a record log: the commit that holds it, and its message (the record, as written)."""

    id: str
    message: str


def log_ref(kind: str, subject: str) -> str:
    """The ref of the log of ``kind`` about ``subject`` (``hello/test``)."""
    check_ref_name(subject, "record log subject", "hello/test")
    return f"{LOGS}/{checked_kind(kind)}/{subject}"


def read_logs(
    cache: Cache, kind: str, subject: str | None = None, *, under: bool = False
) -> dict[str, list[RecordEntry]]:
    """The logs of ``kind`` as the remote has them now (``subject``'s alone, or those under ``subject/`` with
    ``under``): fetched, then read. Log ref -> its entries, oldest first (parents before children)."""
    if subject is None:
        prefix = f"{LOGS}/{checked_kind(kind)}/"
    else:
        prefix = log_ref(kind, subject) + ("/" if under else "")
    with cache.locked():
        store = cache.records
        # A pattern, unlike a plain name, matches nothing without failing; ``<ref>*`` may bring a sibling log whose
        # name begins alike, which the filter below leaves out.
        store.fetch(f"{prefix}*", shallow=False)
        tips = _tips(store.git, prefix, exact=subject is not None and not under)
        return _entries(store.git, tips)


def append(cache: Cache, ref: str, message: str, author: Actor, budget: RetryBudget = RetryBudget()) -> str:
    """Append an entry holding ``message`` to the log ``ref`` and push it as a fast-forward; after a rejection (another
    writer appended), fetch the log and append on its new tip. The entry's id is returned."""
    attempt, watch = 0, LockWatch(cache.display_url, budget.clock)
    for attempt in budget.attempts():
        with cache.locked():
            store = cache.records
            store.fetch(f"{ref}*", shallow=False)
            tip = _tips(store.git, ref, exact=True).get(ref)
            entry = _commit(cache, tip, message, author)
            action = f"appending to {ref} in"
            refspec = f"{entry}:{ref}"  # no "+": the remote takes a fast-forward only
            outcome = push_refspec(cache, refspec, action=action, watch=watch, ref_value=tip, git_dir=store.path)
            if outcome != "rejected":
                store.git("update-ref", ref, entry)
                return entry
            if tip is None:  # no log to append to, yet the push was refused: something is in its place
                _refuse_blockers(cache, ref, store.git("for-each-ref", "--format=%(objecttype)", ref).strip())
    raise budget.exhausted(
        f"appending to {ref} in {cache.display_url}",
        attempt,
        "other writers kept appending to it",
        "run it again (each attempt appends on the log's newest entry)",
    )


def _tips(git: Git, prefix: str, *, exact: bool) -> dict[str, str]:
    output = git("for-each-ref", "--format=%(refname) %(objectname) %(objecttype)", prefix)
    tips = {}
    for line in output.splitlines():
        ref, sha, kind = line.split(" ")
        if kind == "commit" and (ref == prefix if exact else ref.startswith(prefix)):
            tips[ref] = sha
    return tips


def _entries(git: Git, tips: dict[str, str]) -> dict[str, list[RecordEntry]]:
    """Each log's entries, oldest first, from one ``git log`` over every tip (logs share no entries, unless someone
    made them so: each log then gets every entry it reaches)."""
    if not tips:
        return {}
    output = git("log", "--topo-order", "--reverse", "--format=%H %P%x1f%B%x1e", *sorted(set(tips.values())))
    order: dict[str, int] = {}
    parents: dict[str, list[str]] = {}
    messages: dict[str, str] = {}
    for record in output.split("\x1e"):
        if not record.strip("\n"):
            continue
        head, _, message = record.lstrip("\n").partition("\x1f")
        sha, *parent_shas = head.split()
        order[sha], parents[sha], messages[sha] = len(order), parent_shas, message.strip("\n")
    logs = {}
    for ref, tip in sorted(tips.items()):
        reached: set[str] = set()
        stack = [tip]
        while stack:
            sha = stack.pop()
            if sha in reached or sha not in order:  # a shallow or missing parent ends the walk there
                continue
            reached.add(sha)
            stack.extend(parents[sha])
        logs[ref] = [RecordEntry(sha, messages[sha]) for sha in sorted(reached, key=order.__getitem__)]
    return logs


def _commit(cache: Cache, parent: str | None, message: str, author: Actor) -> str:
    """Store an entry (a commit of the empty tree on ``parent``) in the record store and return its SHA."""
    store = cache.records
    store.put(b"tree", b"")
    who = f"{one_line(author.name)} <{one_line(author.email)}> {int(time.time())} +0000"
    header = f"tree {_EMPTY_TREE}\n" + (f"parent {parent}\n" if parent else "") + f"author {who}\ncommitter {who}\n"
    return store.put(b"commit", f"{header}\n{message.strip()}\n".encode()).hex()


def _refuse_blockers(cache: Cache, ref: str, kind_there: str) -> None:
    """A ref where a directory of the log's name must be (git holds a ref ``X`` or refs under ``X/``, never both), or
    something else than a commit at the log's own name, refuses every append, whatever is retried: name it, and how to
    remove it. ``kind_there`` is the type of the object at ``ref`` ("" when there is none)."""
    parts = ref.split("/")
    candidates = ["/".join(parts[:end]) for end in range(3, len(parts))]
    listed = cache.git("ls-remote", "origin", *candidates, f"{ref}/*", action="listing the refs of")
    blockers = [line.split("\t", 1)[-1] for line in listed.splitlines()]
    blockers = [name for name in blockers if name in candidates or name.startswith(f"{ref}/")]
    if kind_there:
        blockers.append(ref)
    if blockers:
        raise ConflictError(
            f"{blockers[0]} in {cache.display_url} is no log of promo's, and git cannot hold the log {ref} beside it",
            f"delete it (git push <remote> :{blockers[0]}); see docs/records.md",
        )
