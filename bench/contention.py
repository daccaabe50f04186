"""Bench 2, contention: 32 concurrent set_version calls for 32 different apps into one GitOps remote.

Four ways to be concurrent, each started at once from a released event after every worker is up (threads) or forked
and waiting (processes): 32 threads with a cache each, 32 threads sharing one cache, and the same with 32 processes.
The floor is 32 raw pushes one after another from one cached work tree (bench/floors/raw_push_seq.sh). After every
round the remote is read back: all 32 manifests must hold the round's version and main must have exactly 32 new
commits, else updates were lost.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import RAW_PUSH_SEQ, Report, git, progress, raw_clone, read_target_revisions, run, scratch
from common import main as cli
from gitops_fixture import app_name, build, manifest_path

N = 32
ENV, CLUSTER = "test", "preprod"

Outcome = tuple[float, int | None, str | None]  # seconds, attempts, error


def _set_version(url: str, app: str, cache: Path, version: str, shown: str) -> Outcome:
    from promo.gitops.repo import GitOpsRepo, Trailers

    started = time.perf_counter()
    try:
        result = GitOpsRepo(url, "main", cache).set_version(
            app,
            ENV,
            [CLUSTER],
            version,
            expected={CLUSTER: shown},  # what the round starts from, as a gate would have shown it
            subject=f"promote({app}): -> {ENV} {version}",
            trailers=Trailers(approved_by="bench"),
        )
        return time.perf_counter() - started, result.attempts, None
    except Exception as error:  # noqa: BLE001 - reported, not raised: a failed writer is a result here
        return time.perf_counter() - started, None, f"{type(error).__name__}: {error}"


def _in_threads(url: str, caches: list[Path], version: str, shown: str) -> tuple[float, list[Outcome]]:
    go = threading.Event()
    outcomes: list[Outcome | None] = [None] * N
    ready = threading.Barrier(N + 1)

    def work(index: int) -> None:
        ready.wait()
        go.wait()
        outcomes[index] = _set_version(url, app_name(index), caches[index], version, shown)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(N)]
    for thread in threads:
        thread.start()
    ready.wait()
    started = time.perf_counter()
    go.set()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, [outcome for outcome in outcomes if outcome is not None]


def _process_worker(url: str, index: int, cache: Path, version: str, shown: str, ready, go, results) -> None:
    ready.put(index)
    go.wait()
    results.put((index, _set_version(url, app_name(index), cache, version, shown)))


def _in_processes(url: str, caches: list[Path], version: str, shown: str) -> tuple[float, list[Outcome]]:
    context = multiprocessing.get_context("fork")  # promo is imported already: workers start warm, as a pool would
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    processes = [
        context.Process(target=_process_worker, args=(url, index, caches[index], version, shown, ready, go, results))
        for index in range(N)
    ]
    for process in processes:
        process.start()
    for _ in range(N):
        ready.get(timeout=60)
    started = time.perf_counter()
    go.set()
    outcomes: list[Outcome | None] = [None] * N
    for _ in range(N):
        index, outcome = results.get(timeout=600)
        outcomes[index] = outcome  # by worker, not by finishing order
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
    return seconds, [outcome for outcome in outcomes if outcome is not None]


def bench(runs: int) -> Report:
    import promo.gitops.repo  # noqa: F401 - imported before forking

    report = Report("2 contention", f"{N} concurrent set_version into one remote vs {N} sequential raw pushes")
    with scratch("contention") as work:
        remote = build(work / "gitops.git", apps=N, commits=1, gc=False)
        url = remote.as_uri()
        paths = [manifest_path(app_name(index), ENV, CLUSTER) for index in range(N)]
        clone = raw_clone(remote, work / "raw-clone")
        own = [work / "caches" / f"worker-{index:02d}" for index in range(N)]
        shared = [work / "caches" / "shared"] * N
        variants: dict[str, Callable[[str, str], tuple[float, list[Outcome]]]] = {
            "32 processes, a cache each": lambda version, shown: _in_processes(url, own, version, shown),
            "32 processes, one shared cache": lambda version, shown: _in_processes(url, shared, version, shown),
            "32 threads, a cache each": lambda version, shown: _in_threads(url, own, version, shown),
            "32 threads, one shared cache": lambda version, shown: _in_threads(url, shared, version, shown),
        }
        if os.environ.get("BENCH_CONTENTION") != "all":  # threads behave as processes do; they double the runtime
            variants = {label: call for label, call in variants.items() if "processes" in label}
            report.note("threads left out (BENCH_CONTENTION=all runs them too)")
        floor = f"{N} sequential raw pushes (floor)"

        def floor_round(version: str) -> float:
            started = time.perf_counter()
            run(RAW_PUSH_SEQ, clone, version, *paths)
            return time.perf_counter() - started

        def verified(label: str, version: str, before: str, outcomes: list[Outcome] | None) -> None:
            """Read the remote back: every writer that returned must have landed, with one commit each."""
            found = read_target_revisions(remote, paths)
            outcomes = outcomes or [(0.0, 1, None)] * N  # the floor script stops at its first failure
            returned = [index for index, (_, _, error) in enumerate(outcomes) if error is None]
            missing = [index for index in returned if found.get(paths[index]) != version]
            added = int(git(remote, "rev-list", "--count", f"{before}..main"))
            entry = stats.setdefault(
                label, {"writes": 0, "landed": 0, "lost": 0, "extra": 0, "failed": [], "attempts": []}
            )
            entry["writes"] += N
            entry["landed"] += sum(found.get(path) == version for path in paths)
            entry["lost"] += len(missing)
            entry["extra"] += added - (len(returned) - len(missing))
            entry["failed"] += [error for _, _, error in outcomes if error]
            entry["attempts"] += [attempts or 0 for _, attempts, error in outcomes if error is None]

        stats: dict[str, dict] = {}
        progress("contention: warming the caches (one fetch each)")
        from promo.gitops.mirror import Mirror

        for cache in dict.fromkeys(own + shared):
            Mirror.open(url, cache).fetch()
        floor_round("1.0.1")

        progress(f"contention: {runs} rounds")
        for round_ in range(runs):
            version = f"2.{round_}.0"
            before = git(remote, "rev-parse", "main").strip()
            report.add(floor, floor_round(version))
            verified(floor, version, before, None)
            for index, (label, call) in enumerate(variants.items()):
                shown, version = version, f"3.{round_}.{index}"  # every app runs the previous write's version
                before = git(remote, "rev-parse", "main").strip()
                seconds, outcomes = call(version, shown)
                report.add(label, seconds)
                verified(label, version, before, outcomes)

        for label in [floor, *variants]:
            entry = stats[label]
            attempts, failed = entry["attempts"], entry["failed"]
            detail = (
                f"{entry['landed']}/{entry['writes']} landed; {len(failed)} raised; "
                f"{entry['lost']} silently lost; {entry['extra']} stray commits"
            )
            if attempts and label != floor:
                detail += (
                    f"; attempts per landed write: median {statistics.median(attempts):g}, max {max(attempts)}; "
                    f"{sum(a - 1 for a in attempts)} rejected pushes re-applied"
                )
            if failed:
                detail += f"; raised: {failed[0].split(';')[0][:140]}"
            every = entry["landed"] == entry["writes"] and entry["lost"] == 0 and entry["extra"] == 0
            report.check(f"{label}: every write landed", every, detail)
        for label in variants:
            report.ratio(f"{label} / sequential raw", label, floor, 2.0)
    return report


if __name__ == "__main__":
    cli(bench, default_runs=5)
