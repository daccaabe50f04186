"""Bench 9, verdict refs: a warm GitOps write into a remote holding 20,000 verdict records vs the same remote without.

Two copies of one GitOps repository (200 apps x 4 envs, 2,000 commits): one bare, one with 20,000 verdict records
(``refs/promo/verdicts/<app>/test/<commit>``, annotated tag objects as ``Mirror.create_record`` writes them, spread over
the history). The records are made cheaply, not pushed: the tag objects with one ``git hash-object --stdin-paths``,
the refs with one ``git update-ref --stdin``, then ``git gc`` (packed, as a hosted remote keeps them); built once and
kept in bench/.cache/verdict-refs/. Each round, interleaved: one ``set_version`` into each (a new ``GitOpsRepo`` per
call on a warm cache, as the tasks do), one plain read of each (``environment_version``: fetch + read), and, in the
remote with records, one ``records("verdicts")`` (where they are fetched now). The "before" reference is what every
write's fetch paid until issue 16: the same no-op fetch with ``+refs/promo/*`` added, in a cache that holds the
20,000 records as loose refs (which is how that fetch left them).
"""

from __future__ import annotations

import resource
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from common import CACHE_DIR, Report, progress, raw_clone, raw_push, read_target_revisions, run, timed
from common import main as cli
from gitops_fixture import app_name, build, manifest_path

APPS, COMMITS, RECORDS = 200, 2000, 20000
ENV, CLUSTER = "test", "preprod"
WORK = CACHE_DIR / "verdict-refs"
PLAIN, WITH = "no verdict refs", "20,000 verdict refs"
OLD_FETCH = "git fetch of the branch, tags and refs/promo/* with nothing new, 20,000 loose refs (every write, before)"
# What every fetch of a cache asked for before issue 16: the branch, the tags and all of promo's records.
OLD_REFSPECS = ("+refs/heads/main:refs/remotes/origin/main", "+refs/tags/*:refs/tags/*", "+refs/promo/*:refs/promo/*")


def _remotes() -> dict[str, Path]:
    """The two remotes: the plain one and its copy with RECORDS verdict records, built once."""
    plain, verdicts = WORK / "plain.git", WORK / "verdicts.git"
    if not (plain / "HEAD").exists():
        build(plain, apps=APPS, commits=COMMITS)
    if not (verdicts / "packed-refs").exists() or len(_records(verdicts)) != RECORDS:
        shutil.rmtree(verdicts, ignore_errors=True)
        run("git", "clone", "-q", "--bare", plain, verdicts)
        _add_verdicts(verdicts)
    return {PLAIN: plain, WITH: verdicts}


def _records(remote: Path) -> list[str]:
    return run("git", "-C", remote, "for-each-ref", "--format=%(refname)", "refs/promo/verdicts/").split()


def _add_verdicts(remote: Path) -> None:
    from promo.gitops.verdicts import Verdict

    commits = run("git", "-C", remote, "rev-list", "main").split()
    checked_at = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    tags = WORK / "tags"
    tags.mkdir(parents=True, exist_ok=True)
    names, files = [], []
    for index in range(RECORDS):  # one verdict per (app, commit): apps 0.., each over every commit of the history
        app, commit = app_name(index // len(commits)), commits[index % len(commits)]
        name = f"{app}/{ENV}/{commit}"
        message = Verdict(app, ENV, "1.0.0", commit, True, "synced and healthy", checked_at, ("argocd",)).message()
        tag = tags / f"{index}.tag"  # a tag object as Mirror.create_record writes it
        tagger = "tagger bench <bench@localhost> 1764579600 +0000"
        tag.write_text(f"object {commit}\ntype commit\ntag {name}\n{tagger}\n\n{message}")
        names.append(name)
        files.append(str(tag))
    shas = run("git", "-C", remote, "hash-object", "-t", "tag", "-w", "--stdin-paths", input="\n".join(files).encode())
    updates = "".join(f"create refs/promo/verdicts/{name} {sha}\n" for name, sha in zip(names, shas.split()))
    run("git", "-C", remote, "update-ref", "--stdin", input=updates.encode())
    run("git", "-C", remote, "gc", "-q")  # one pack, packed refs: as a hosted remote keeps them
    shutil.rmtree(tags)


def _old_fetch_cache(remote: Path) -> Path:
    """A bare cache that fetched refs/promo/* the way every fetch did before: 20,000 loose refs."""
    cache = WORK / "old-fetch-cache.git"
    if not (cache / "refs" / "promo" / "verdicts").is_dir():
        shutil.rmtree(cache, ignore_errors=True)
        run("git", "init", "-q", "--bare", cache)
        run("git", "-C", cache, "fetch", "-q", remote.as_uri(), *OLD_REFSPECS)
    return cache


def _cpu() -> float:
    """CPU seconds of this process and of the git processes it waited for (a file:// push's receive-pack too)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench(runs: int) -> Report:
    from promo.gitops.mirror import Mirror
    from promo.gitops.repo import GitOpsRepo, Trailers

    report = Report("9 verdict refs", "a warm GitOps write with 20,000 verdict refs in the remote vs none")
    WORK.mkdir(parents=True, exist_ok=True)
    progress("verdict-refs: remotes (about a minute the first time)")
    started = time.perf_counter()
    remotes = _remotes()
    if time.perf_counter() - started > 5:
        report.note(f"the remotes were built this run: {time.perf_counter() - started:.0f} s, now cached")
    caches = {label: WORK / f"promo-cache-{index}" for index, label in enumerate(remotes)}
    app = app_name(1)
    path = manifest_path(app, ENV, CLUSTER)
    stamp = int(time.time())  # every run writes above what earlier runs left

    def write(label: str, version: str, *, warm: bool = True) -> float:
        remote = remotes[label]
        shown = {CLUSTER: read_target_revisions(remote, [path])[path]}  # as its gate showed it

        def call() -> object:
            gitops = GitOpsRepo(remote.as_uri(), "main", caches[label])  # a new client per call, as tasks do
            return gitops.set_version(
                app, ENV, [CLUSTER], version, expected=shown, subject=f"bench: {version}", trailers=Trailers()
            )

        cpu = _cpu()
        seconds, result = timed(call)
        if warm:
            report.add(f"warm set_version, {label} (CPU time, git included)", _cpu() - cpu)
        assert result.commit is not None and result.attempts == 1, result  # type: ignore[union-attr]
        return seconds

    def read(label: str) -> float:
        gitops = GitOpsRepo(remotes[label].as_uri(), "main", caches[label])
        return timed(lambda: gitops.environment_version(app, ENV, [CLUSTER]))[0]

    clones = {label: raw_clone(remotes[label], WORK / f"raw-clone-{index}") for index, label in enumerate(remotes)}
    for label in remotes:  # warm up: the first write into an empty cache is a cold one
        write(label, f"{stamp}.0.0", warm=False)
        raw_push(clones[label], path, f"{stamp}.0.1")
    records_mirror = Mirror.open(remotes[WITH].as_uri(), caches[WITH], branch="main")
    first_read, first_records = timed(lambda: records_mirror.records("verdicts"))  # fetches all 20,000
    found = len(first_records)  # type: ignore[arg-type]
    old_cache = _old_fetch_cache(remotes[WITH])
    old_fetch = ("git", "-C", str(old_cache), "fetch", "--prune", "--no-tags", "--no-write-fetch-head", "--quiet")
    old_fetch += (remotes[WITH].as_uri(), *OLD_REFSPECS)

    progress(f"verdict-refs: {runs} rounds, interleaved")
    for round_ in range(runs):
        version, raw_version = f"{stamp}.1.{2 * round_}", f"{stamp}.1.{2 * round_ + 1}"
        for label in remotes:
            report.add(f"warm set_version, {label}", write(label, version))
        for label in remotes:
            report.add(f"raw floor (fetch, sed, commit, push in a full work tree), {label}", raw_push(
                clones[label], path, raw_version
            ))
        for label in remotes:
            report.add(f"plain read (environment_version), {label}", read(label))
        records_read = timed(lambda: records_mirror.records("verdicts"))[0]
        report.add(f"records('verdicts'), {WITH} (its fetch + read)", records_read)
        report.add(OLD_FETCH, timed(lambda: run(*old_fetch))[0])

    landed = {label: read_target_revisions(remote, [path])[path] for label, remote in remotes.items()}
    version = f"{stamp}.1.{2 * runs - 1}"
    report.check("every write landed", all(value == version for value in landed.values()), f"{path}: {landed}")
    report.note(f"the first records() read into the warm write cache (all {RECORDS} new) took {first_read:.2f} s")
    cache = next(caches[WITH].glob("*.git"))
    store = cache / "promo-records.git"
    report.check("records() sees all 20,000", found == RECORDS, f"{found} records")
    loose = sum(1 for entry in (store / "refs").rglob("*") if entry.is_file())
    kept = f"{len(_records(store))} refs in the record store, {loose} loose"
    report.check("the record store keeps them packed", loose == 0, kept)
    in_cache = _records(cache)
    detail = f"{len(in_cache)} records in the cache the writes and reads used"
    report.check("writes and plain reads fetch no records", not in_cache, detail)
    report.ratio(f"warm set_version: {WITH} / {PLAIN}", f"warm set_version, {WITH}", f"warm set_version, {PLAIN}", 1.2)
    report.ratio(
        f"warm set_version, CPU time: {WITH} / {PLAIN}",
        f"warm set_version, {WITH} (CPU time, git included)",
        f"warm set_version, {PLAIN} (CPU time, git included)",
    )
    report.ratio(
        f"raw floor: {WITH} / {PLAIN} (what the remote's refs cost any client)",
        f"raw floor (fetch, sed, commit, push in a full work tree), {WITH}",
        f"raw floor (fetch, sed, commit, push in a full work tree), {PLAIN}",
    )
    report.ratio(
        f"plain read: {WITH} / {PLAIN}",
        f"plain read (environment_version), {WITH}",
        f"plain read (environment_version), {PLAIN}",
    )
    report.note(
        f"{APPS} apps x 4 envs, {COMMITS} commits; {RECORDS} verdicts ({RECORDS // COMMITS} apps x every commit); "
        "records() is read through the same mirror as the writes, between them (its record store)"
    )
    return report


if __name__ == "__main__":
    cli(bench, default_runs=15)
