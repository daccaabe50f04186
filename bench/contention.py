"""Bench 2, contention: 32 concurrent set_version calls for 32 different apps into one GitOps remote.

Four ways to be concurrent, each started at once from a released event after every worker is up (threads) or forked
and waiting (processes): 32 threads with a cache each, 32 threads sharing one cache, and the same with 32 processes.
Then 32 processes with a cache each that serialise through the GitOps repository's Prefect lock
(``promo.tasks.limits.gitops_lock``, a global concurrency limit on a real ``prefect server start`` this bench starts
and stops by its PID): always locked, and optimistic first with the lock only after a rejected push. The floor is 32
raw pushes one after another from one cached work tree (bench/floors/raw_push_seq.sh). After every round the remote
is read back: all 32 manifests must hold the round's version and main must have exactly 32 new commits, else updates
were lost. For the locked variants each writer also records when it asked for the lock, got it and gave it back:
the wait, the hold, and the idle gap between one holder's release and the next one's grant.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
from common import RAW_PUSH_SEQ, Report, git, progress, raw_clone, read_target_revisions, run, scratch, stop_group
from common import main as cli
from gitops_fixture import app_name, build, manifest_path

N = 32
ENV, CLUSTER = "test", "preprod"
SERVER_START_SECONDS = 120.0

Hold = tuple[float, float, float]  # wall-clock time the lock was asked for, granted, given back
Outcome = tuple[float, int | None, str | None, list[Hold]]  # seconds, attempts, error, lock holds
LockMode = str | None  # None: no Prefect lock; "always"; "on conflict": only after a rejected push


def _timed_lock(url: str, mode: LockMode, holds: list[Hold]) -> Callable[[], object] | None:
    """The write lock a writer gets: ``gitops_lock`` (the limit exists, as after `promo setup`), timed; for
    "on conflict" the first attempt goes unlocked."""
    if mode is None:
        return None
    from promo.tasks.limits import gitops_lock

    calls = 0

    @contextmanager
    def held() -> Iterator[None]:
        asked = time.time()
        with gitops_lock(url, create_missing=False):
            granted = time.time()
            try:
                yield
            finally:
                holds.append((asked, granted, time.time()))

    def factory():
        nonlocal calls
        calls += 1
        return nullcontext() if mode == "on conflict" and calls == 1 else held()

    return factory


def _set_version(url: str, app: str, cache: Path, version: str, shown: str, mode: LockMode = None) -> Outcome:
    from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest

    holds: list[Hold] = []
    started = time.perf_counter()
    try:
        result = GitOpsRepo(url, "main", cache, write_lock=_timed_lock(url, mode, holds)).set_version(
            WriteRequest(
                app,
                ENV,
                [CLUSTER],
                version,
                expected={CLUSTER: shown},  # what the round starts from, as a gate would have shown it
                subject=f"promote({app}): -> {ENV} {version}",
                trailers=Trailers(approved_by="bench"),
            )
        )
        return time.perf_counter() - started, result.attempts, None, holds
    except Exception as error:  # noqa: BLE001 - reported, not raised: a failed writer is a result here
        return time.perf_counter() - started, None, f"{type(error).__name__}: {error}", holds


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


def _process_worker(
    url: str, index: int, cache: Path, version: str, shown: str, mode: LockMode, ready, go, results
) -> None:
    ready.put(index)
    go.wait()
    results.put((index, _set_version(url, app_name(index), cache, version, shown, mode)))


def _in_processes(
    url: str, caches: list[Path], version: str, shown: str, mode: LockMode = None
) -> tuple[float, list[Outcome]]:
    context = multiprocessing.get_context("fork")  # promo is imported already: workers start warm, as a pool would
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    processes = [
        context.Process(
            target=_process_worker, args=(url, index, caches[index], version, shown, mode, ready, go, results)
        )
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


@contextmanager
def prefect_server(work: Path) -> Iterator[str]:
    """``prefect server start`` (SQLite, as `promo server start` runs it) on a free port; its API URL. Stopped by
    its own process group id."""
    from promo.local.processes import free_port

    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(work / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false"
    )
    log = work / "prefect-server.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    try:
        while not _healthy(api):
            if process.poll() is not None or time.perf_counter() - started > SERVER_START_SECONDS:
                raise RuntimeError(f"the Prefect server did not come up: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        progress(f"contention: Prefect server (pid {process.pid}) up in {time.perf_counter() - started:.1f} s")
        yield api
    finally:
        stop_group(process)


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _lock_figures(outcomes: list[Outcome]) -> tuple[list[float], list[float], list[float]]:
    """Waits for the lock, holds, and the idle gaps: from one release to the next grant while someone waited."""
    holds = sorted((hold for outcome in outcomes for hold in outcome[3]), key=lambda hold: hold[1])
    waits = [granted - asked for asked, granted, _ in holds]
    held = [released - granted for _, granted, released in holds]
    gaps = [
        max(0.0, following[1] - previous[2])
        for previous, following in zip(holds, holds[1:])
        if following[0] < previous[2]  # the next holder was already waiting when the lock came free
    ]
    return waits, held, gaps


def bench(runs: int) -> Report:
    with scratch("contention") as work, prefect_server(work) as api:
        os.environ["PREFECT_API_URL"] = api  # before Prefect is imported: every writer forked later uses this server
        return _bench(runs, work)


def _bench(runs: int, work: Path) -> Report:
    import promo.tasks.limits  # noqa: F401 - imported before forking (Prefect's import alone takes seconds)
    import promo.gitops.repo  # noqa: F401

    report = Report("2 contention", f"{N} concurrent set_version into one remote vs {N} sequential raw pushes")
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
        "32 processes, a cache each, Prefect lock": lambda version, shown: _in_processes(
            url, own, version, shown, "always"
        ),
        "32 processes, a cache each, Prefect lock on conflict": lambda version, shown: _in_processes(
            url, own, version, shown, "on conflict"
        ),
    }
    if os.environ.get("BENCH_CONTENTION") != "all":  # threads behave as processes do; they double the runtime
        variants = {label: call for label, call in variants.items() if "processes" in label and "conflict" not in label}
        report.note("threads and the lock taken only on conflict left out (BENCH_CONTENTION=all runs them too)")
    _create_limit(url)
    floor = f"{N} sequential raw pushes (floor)"

    def floor_round(version: str) -> float:
        started = time.perf_counter()
        run(RAW_PUSH_SEQ, clone, version, *paths)
        return time.perf_counter() - started

    def verified(label: str, version: str, before: str, outcomes: list[Outcome] | None) -> None:
        """Read the remote back: every writer that returned must have landed, with one commit each."""
        found = read_target_revisions(remote, paths)
        outcomes = outcomes or [(0.0, 1, None, [])] * N  # the floor script stops at its first failure
        returned = [index for index, (_, _, error, _) in enumerate(outcomes) if error is None]
        missing = [index for index in returned if found.get(paths[index]) != version]
        added = int(git(remote, "rev-list", "--count", f"{before}..main"))
        entry = stats.setdefault(
            label,
            {"writes": 0, "landed": 0, "lost": 0, "extra": 0, "failed": [], "attempts": [], "lock": ([], [], [])},
        )
        entry["writes"] += N
        entry["landed"] += sum(found.get(path) == version for path in paths)
        entry["lost"] += len(missing)
        entry["extra"] += added - (len(returned) - len(missing))
        entry["failed"] += [error for _, _, error, _ in outcomes if error]
        entry["attempts"] += [attempts or 0 for _, attempts, error, _ in outcomes if error is None]
        for gathered, new in zip(entry["lock"], _lock_figures(outcomes)):
            gathered += new

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
        waits, held, gaps = entry["lock"]
        if held:
            detail += (
                f"; lock: {len(held)} holds, wait median {statistics.median(waits) * 1000:.0f} ms "
                f"(max {max(waits):.2f} s), hold median {statistics.median(held) * 1000:.0f} ms, "
                f"idle gap while others waited median {statistics.median(gaps or [0]) * 1000:.0f} ms, "
                f"{sum(gaps):.2f} s in all per {runs} rounds"
            )
        if failed:
            detail += f"; raised: {failed[0].split(';')[0][:140]}"
        every = entry["landed"] == entry["writes"] and entry["lost"] == 0 and entry["extra"] == 0
        report.check(f"{label}: every write landed", every, detail)
    for label in variants:
        report.ratio(f"{label} / sequential raw", label, floor, 2.0)
    _uncontended_lock(report, url, runs)
    return report


def _uncontended_lock(report: Report, url: str, runs: int) -> None:
    """What the lock costs a writer with nobody else around: entering and leaving ``gitops_lock`` (after the
    writers, so no Prefect client thread existed in this process when they were forked)."""
    from promo.tasks.limits import gitops_lock

    for _ in range(4 * runs):
        started = time.perf_counter()
        with gitops_lock(url, create_missing=False):
            granted = time.perf_counter()
        report.add("Prefect lock, nobody waiting: acquire", granted - started)
        report.add("Prefect lock, nobody waiting: release", time.perf_counter() - granted)


def _create_limit(url: str) -> None:
    """The repository's limit, as `promo setup` makes it, through the REST API: the Prefect client must not start
    its threads in this process before the writers are forked."""
    from promo.tasks.limits import SLOTS, gitops_limit_name

    response = httpx.post(
        f"{os.environ['PREFECT_API_URL']}/v2/concurrency_limits/",
        json={"name": gitops_limit_name(url), "limit": SLOTS},
        timeout=30,
    )
    response.raise_for_status()


if __name__ == "__main__":
    cli(bench, default_runs=5)
