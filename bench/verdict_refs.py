"""Bench 9, verdict records at scale: a warm GitOps write into a remote with 20,000 verdicts vs the same without.

Two copies of one GitOps repository (200 apps x 4 envs, 2,000 commits): one bare, one with 20,000 verdicts in record
logs as promo writes them (``refs/promo/log/verdicts/<app>/<env>``, one log per app and environment: 50 apps x 4 envs,
100 signed entries each, about commits spread over the history), and the allowed-signers file that makes them
trusted. The logs are made cheaply, not pushed: signed in-process, imported with one ``git fast-import``, then
``git gc`` (packed, as a hosted remote keeps them); built once and kept in bench/.cache/verdict-refs/. Each round,
interleaved: one ``set_version`` into each (a new ``GitOpsRepo`` per call on a warm cache, as the tasks do), the raw
floor (plain git in a full clone) into each, one plain read of each (``environment_version``: fetch + read), and, in
the remote with verdicts, what ``promo status`` reads for one app: ``read_verdicts_by_env`` (its fetches of the app's
4 logs and records of old, and every entry's signature checked).
"""

from __future__ import annotations

import resource
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from common import CACHE_DIR, Report, progress, raw_clone, raw_push, read_target_revisions, run, timed
from common import main as cli
from gitops_fixture import ENVIRONMENTS, app_name, build, manifest_path
from record_logs import commit_signers, import_logs, verdict_entries

APPS, COMMITS, RECORDS, LOGGED_APPS = 200, 2000, 20000, 50
ENV, CLUSTER = "test", "preprod"
WORK = CACHE_DIR / "verdict-refs"
PLAIN, WITH = "no verdicts", "20,000 verdicts"
STATUS_READ = f"status read of one app (read_verdicts_by_env: 4 logs, {RECORDS // LOGGED_APPS} verdicts), {WITH}"


def _remotes() -> dict[str, Path]:
    """The two remotes: the plain one and its copy with RECORDS verdicts in record logs, built once."""
    plain, verdicts = WORK / "plain.git", WORK / "logs.git"
    if not (plain / "HEAD").exists():
        build(plain, apps=APPS, commits=COMMITS)
    if not (verdicts / "packed-refs").exists() or _entries(verdicts) != RECORDS:
        shutil.rmtree(verdicts, ignore_errors=True)
        run("git", "clone", "-q", "--bare", plain, verdicts)
        _add_verdicts(verdicts)
    return {PLAIN: plain, WITH: verdicts}


def _logs(repository: Path) -> list[str]:
    return run("git", "-C", repository, "for-each-ref", "--format=%(refname)", "refs/promo/").split()


def _entries(remote: Path) -> int:
    logs = _logs(remote)
    return int(run("git", "-C", remote, "rev-list", "--count", *logs).strip()) if logs else 0


def _add_verdicts(remote: Path) -> None:
    from promo.gitops.signing import SigningKey
    from promo.gitops.verdicts import Verdict

    commits = run("git", "-C", remote, "rev-list", "--reverse", "main").split()
    key = SigningKey.generate()
    commit_signers(remote, key.public.allowed_signers_line() + "\n")
    checked_at = datetime(2026, 12, 1, 9, tzinfo=timezone.utc)
    per_log = RECORDS // (LOGGED_APPS * len(ENVIRONMENTS))
    verdicts = (  # log by log, each about every 20th commit of the history, oldest first
        Verdict(app_name(app), env, "1.0.0", commits[(entry * len(commits)) // per_log], True, "synced", checked_at)
        for app in range(LOGGED_APPS)
        for env, _ in ENVIRONMENTS
        for entry in range(per_log)
    )
    import_logs(remote, verdict_entries(key, verdicts))
    run("git", "-C", remote, "gc", "-q")  # one pack, packed refs: as a hosted remote keeps them


def _cpu() -> float:
    """CPU seconds of this process and of the git processes it waited for (a file:// push's receive-pack too)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench(runs: int) -> Report:
    from promo.gitops.mirror import Mirror
    from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest
    from promo.gitops.verdicts import read_verdicts_by_env

    report = Report("9 verdict refs", "a warm GitOps write with 20,000 verdicts (in record logs) in the remote vs none")
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
                WriteRequest(
                    app, ENV, [CLUSTER], version, expected=shown, subject=f"bench: {version}", trailers=Trailers()
                )
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
        # Both caches hold the whole history, as a long-lived one does once anything read history (a status read of
        # verdicts about old commits does): the writes compare like with like.
        Mirror.open(remotes[label].as_uri(), caches[label], branch="main").log(None, "main")
    records_mirror = Mirror.open(remotes[WITH].as_uri(), caches[WITH], branch="main")
    records_mirror.fetch()
    first_read, first_found = timed(lambda: read_verdicts_by_env(records_mirror, app))  # its 4 logs, all new

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
        seconds, found = timed(lambda: read_verdicts_by_env(records_mirror, app))
        report.add(STATUS_READ, seconds)

    landed = {label: read_target_revisions(remote, [path])[path] for label, remote in remotes.items()}
    version = f"{stamp}.1.{2 * runs - 1}"
    report.check("every write landed", all(value == version for value in landed.values()), f"{path}: {landed}")
    report.note(f"the first status read of {app} (its 4 logs new to the cache) took {first_read:.2f} s")
    verdicts = [verdict for envs in found.values() for verdict in envs.values()]  # type: ignore[union-attr]
    per_app = RECORDS // LOGGED_APPS
    detail = f"{len(verdicts)} verdicts, {sum(verdict.trusted for verdict in verdicts)} trusted"
    report.check(f"the status read sees all {per_app} of {app}, trusted", len(verdicts) == per_app == sum(
        verdict.trusted for verdict in verdicts
    ), detail)
    cache = next(caches[WITH].glob("*.git"))
    store = cache / "promo-records.git"
    loose = sum(1 for entry in (store / "refs").rglob("*") if entry.is_file())
    kept = f"{len(_logs(store))} logs in the record store, {loose} loose refs"
    report.check("the record store holds the app's 4 logs, packed", loose == 0 and len(_logs(store)) == 4, kept)
    detail = f"{len(_logs(cache))} refs/promo/* in the cache the writes and reads used"
    report.check("writes and plain reads fetch no records", not _logs(cache), detail)
    remote_refs = len(run("git", "-C", remotes[WITH], "for-each-ref").splitlines())
    report.note(f"the remote with verdicts holds {remote_refs} refs in all ({len(_logs(remotes[WITH]))} logs)")
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
        f"{APPS} apps x 4 envs, {COMMITS} commits; {RECORDS} verdicts in {LOGGED_APPS} apps x 4 envs logs; the status "
        "read goes through the same mirror as the writes, between them (its record store)"
    )
    return report


if __name__ == "__main__":
    cli(bench, default_runs=15)
