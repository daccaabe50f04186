"""Reads of a mirror's commits: files, directories, ancestry and history, straight from the objects (no work tree).

One file is a lookup in the cache's persistent ``cat-file --batch`` process; many files are listed with one ``ls-tree
-r`` and read through one ``cat-file --batch`` run, after a partial cache fetched the blobs it lacks in one request.
History reads deepen a shallow cache first, so shallowness never changes an answer.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from promo.errors import InputError, NotFound, ToolError
from promo.gitops.mirror._cache import EXECUTABLE_MODE, FILE_MODE, Cache
from promo.gitops.mirror._record_store import PARTIAL_FILTER
from promo.gitops.mirror._types import CommitRecord, LogEntry, TreeEntry, redact_url


def is_ancestor(cache: Cache, ancestor: str, ref: str) -> bool:
    try:
        ancestor_sha = cache.resolve(ancestor)
    except NotFound:
        return False
    cache.deepen()  # in a shallow cache the path between them may be cut off
    return cache.repo.is_ancestor(ancestor_sha, cache.resolve(ref))


def changed_paths(cache: Cache, base: str, ref: str) -> set[str]:
    """The paths whose content differs between two commits (trees only: a partial cache fetches no blob for it)."""
    output = cache.git("diff", "--name-only", "--no-renames", "-z", cache.resolve(base), cache.resolve(ref),
                       action="comparing two commits of")  # fmt: skip
    return {path for path in output.split("\0") if path}


def commit_times(cache: Cache, shas: Iterable[str]) -> dict[str, int]:
    """Those of ``shas`` the history of the branches and tags holds -> committer time: one listing of that history,
    not a lookup per commit (a commit a partial cache lacks would be fetched on its own, one round trip each: a minute
    for a status read of 400 verdicts). A shallow cache is deepened once when it lacks one of them."""
    wanted = set(shas)
    times = _commit_times(cache)
    if not wanted <= times.keys() and cache.deepen():
        times = _commit_times(cache)
    return {sha: times[sha] for sha in wanted if sha in times}


def _commit_times(cache: Cache) -> dict[str, int]:
    output = cache.git("log", "--all", "--format=%H %ct", action="reading the history of")
    return {sha: int(seconds) for sha, seconds in (line.split() for line in output.splitlines() if line)}


def read_files(cache: Cache, ref: str, paths: Sequence[str]) -> dict[str, str | None]:
    """One path is a ``<commit>:<path>`` lookup in the cache's persistent ``cat-file --batch`` process: git walks only
    the trees along it, so a write's read costs the same in a 1-app and a 2,000-app repository. Many paths (all
    manifests for ``promo status --all``) are listed with one ``ls-tree -r`` and read by SHA through one
    ``cat-file --batch`` run (8,000 files: ~0.25 s), after a partial cache fetched the blobs it lacks in one
    request (``_prefetch``), not one round trip each as git would on first read."""
    commit = cache.resolve(ref)
    for path in paths:
        if "\n" in path:
            raise InputError(f"{path!r} has a line break, which promo does not read", "rename the file")
    if len(paths) == 1:
        try:
            _, kind, _, data = cache.repo.git.get_object_data(f"{commit}:{paths[0]}")
            found = {paths[0]: (kind, data)}
        except ValueError:  # cat-file answered "missing": no such path at that commit
            found = {}
    else:
        blobs = _listed_blobs(cache, commit)
        wanted = {path: blobs[path][1] for path in paths if path in blobs}
        found = dict(zip(wanted, _read_blobs(cache, commit, list(wanted.values()))))
    texts: dict[str, str | None] = {}
    for path in paths:
        kind, data = found.get(path, (b"missing", b""))
        try:
            texts[path] = data.decode("utf-8") if kind == b"blob" else None
        except UnicodeDecodeError:
            raise ToolError(f"{path} in {cache.display_url} is not UTF-8 text", "save the file as UTF-8") from None
    return texts


def read_files_under(cache: Cache, ref: str, prefix: str) -> dict[str, str]:
    """Two git processes whatever the number of files: one ``ls-tree -r`` lists the blobs and one ``cat-file
    --batch`` reads them all (after a partial cache fetched the ones it lacks in one request), where a read per
    file would cost a lookup, or a round trip, each. Bytes that are not UTF-8 become U+FFFD, so one bad file reads
    as broken text for its caller to report instead of failing the rest. Symlinks and submodules are left out:
    they are not files of this tree."""
    commit = cache.resolve(ref)
    listed = _listed_blobs(cache, commit, prefix.strip("/"))
    files = {path: sha for path, (mode, sha) in listed.items() if mode in (FILE_MODE, EXECUTABLE_MODE)}
    if not files:
        return {}
    objects = _read_blobs(cache, commit, list(files.values()))
    return {path: data.decode("utf-8", errors="replace") for path, (_, data) in zip(files, objects)}


def list_dir(cache: Cache, ref: str, path: str) -> list[TreeEntry]:
    tree = cache.repo.commit(cache.resolve(ref)).tree
    try:
        tree = tree / path if path.strip("/") else tree
    except KeyError:
        return []
    if tree.type != "tree":
        return []
    return sorted((TreeEntry(item.name, item.type == "tree") for item in tree), key=lambda entry: entry.name)


def log(cache: Cache, since_ref: str | None, until_ref: str) -> list[LogEntry]:
    cache.deepen()
    until = cache.resolve(until_ref)
    revisions = f"{cache.resolve(since_ref)}..{until}" if since_ref is not None else until
    output = cache.git("log", "--format=%H%x1f%an%x1f%s", revisions, action="reading the history of")
    fields = (line.split("\x1f", 2) for line in output.splitlines() if line)
    return [LogEntry(sha, subject, author) for sha, author, subject in fields]


def log_paths(cache: Cache, ref: str, paths: Sequence[str], limit: int | None) -> list[CommitRecord]:
    cache.deepen()
    options = [f"--max-count={limit}"] if limit is not None else []
    revision = cache.resolve(ref)
    record_format = "--format=%H%x1f%ct%x1f%s%x1f%b%x1e"  # fields and records split by ASCII separators
    # --first-parent: a pull request's merge commit is the change its branch made (its first parent is the branch it
    # landed on); git's default simplification would show the pull request's own commit instead, without the review.
    log = ("log", "--first-parent", record_format, *options, revision, "--", *paths)
    output = cache.git(*log, action="reading the history of")
    records = []
    for record in output.split("\x1e"):
        if record.strip("\n"):
            sha, timestamp, subject, body = record.lstrip("\n").split("\x1f", 3)
            records.append(CommitRecord(sha, datetime.fromtimestamp(int(timestamp), timezone.utc), subject, body))
    return records


def _listed_blobs(cache: Cache, commit: str, directory: str = "") -> dict[str, tuple[int, str]]:
    """path -> (mode, blob SHA) of every blob of ``commit`` (under ``directory``, taken literally: no glob or
    ":(magic)"), from one ``ls-tree -r``: trees only, no blob is read."""
    pathspec = ["--", f"{directory}/"] if directory else []
    listed = cache.git("--literal-pathspecs", "ls-tree", "-r", "-z", commit, *pathspec, action="listing files of")
    blobs = {}
    for entry in listed.split("\0"):
        meta, _, path = entry.partition("\t")
        mode, kind, sha = meta.split(" ") if meta else ("", "", "")
        if kind == "blob":
            blobs[path] = (int(mode, 8), sha)
    return blobs


def _read_blobs(cache: Cache, commit: str, shas: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """(type, content) of each of ``commit``'s blobs ``shas``, a partial cache fetching those it lacks at once."""
    if cache.partial():
        _prefetch(cache, commit, set(shas))
    return _cat_objects(cache, shas)


def _prefetch(cache: Cache, commit: str, wanted: set[str]) -> None:
    """Fetch the ``wanted`` blobs of ``commit`` that a partial cache lacks, in one request per 10,000 (argv stays
    under 0.5 MB): git alone would fetch each on first read, a round trip per file."""
    # ``--missing=print`` lists what is absent without fetching it: one walk of the commit's trees.
    walked = cache.git("rev-list", "--objects", "--missing=print", commit, action="listing objects of")
    missing = sorted({line[1:] for line in walked.splitlines() if line.startswith("?")} & wanted)
    # As git's own on-demand fetch asks: no negotiation (the wants are blobs, not commits to find a base for).
    fetch = ("-c", "fetch.negotiationAlgorithm=noop", "fetch", "--no-tags", "--no-write-fetch-head")
    options = ("--recurse-submodules=no", "--quiet", f"--filter={PARTIAL_FILTER}", "origin")
    for start in range(0, len(missing), 10_000):
        cache.git(*fetch, *options, *missing[start : start + 10_000], action="fetching files from")


def _cat_objects(cache: Cache, shas: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """(type, content) of each object, in order, from one ``cat-file --batch`` run fed all the SHAs at once."""
    process = cache.repo.git.execute(
        ["git", "cat-file", "--batch"], istream=subprocess.PIPE, as_process=True, env=cache.env
    )
    output, errors = process.proc.communicate("".join(f"{sha}\n" for sha in shas).encode())
    if process.proc.returncode:
        cause = f"reading files of {cache.display_url} failed: {redact_url(errors.decode(errors='replace'))}"
        raise ToolError(cause.strip(), "see git's message; repair the cache or delete it")
    objects, position = [], 0
    for _ in shas:
        newline = output.index(b"\n", position)
        header = output[position:newline].split()  # <sha> <type> <size>, then the content and a newline
        size, position = int(header[2]), newline + 1
        objects.append((header[1], output[position : position + size]))
        position += size + 1
    return objects
