"""Bench 3, repo size: one promotion (set_version) on a 2,000-app x 4-env GitOps repo with 20,000 commits vs a 1-app repo.

Both with a warm cache: promo's cached bare mirror (each call still fetches, as every promotion does) and, for the
raw floor, a cached work tree. The big repository is generated once with git fast-import and kept under
bench/.cache (about a minute the first time); its promo cache and raw clone live there too, so later runs are warm.
Each round runs, interleaved: promo on the small repo, promo on the big one, the raw script on each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from common import CACHE_DIR, Report, progress, raw_clone, raw_push, read_target_revisions, run, timed
from common import main as cli
from gitops_fixture import app_name, cached, manifest_path

APPS, ENVS, COMMITS = 2000, 4, 20000
ENV, CLUSTER = "test", "preprod"


def _work_remote(fixture: Path, dest: Path) -> Path:
    """A writable copy of the cached fixture (hardlinked objects), kept between runs: it grows a few commits a run."""
    if not (dest / "HEAD").exists():
        run("git", "clone", "-q", "--bare", fixture, dest)
    return dest


def _primitives(url: str, cache: Path, path: str, runs: int) -> dict[str, list[float]]:
    """The steps of one set_version on a warm mirror, each timed alone; plus the in-process alternatives for two of
    them (a ``<commit>:<path>`` lookup through the cat-file process GitPython keeps, and a loose-object write without
    a subprocess), to show what they would cost."""
    from io import BytesIO

    from gitdb.base import IStream
    from gitdb.db.loose import LooseObjectDB

    from promo.gitops.mirror import Mirror

    mirror = Mirror.open(url, cache)
    mirror.fetch()
    head = mirror.resolve("main")
    text = mirror.read_file(head, path) or ""
    loose = LooseObjectDB(str(mirror.path / "objects"))
    steps: dict[str, Callable[[], object]] = {
        "fetch with nothing new (git fetch)": mirror.fetch,
        "read the manifest: Mirror.read_file (GitPython tree walk)": lambda: mirror.read_file(head, path),
        "read the manifest: cat-file <commit>:<path> (alternative)": lambda: mirror._repo.git.get_object_data(
            f"{head}:{path}"
        ),
        "commit_files: rebuild trees, store blob + trees + commit": lambda: mirror.commit_files(
            head, {path: text + "#\n"}, "bench"
        ),
        "store one object: git hash-object subprocess (as now)": lambda: mirror._store(b"blob", b"bench"),
        "store one object: in-process loose write (alternative)": lambda: loose.store(
            IStream(b"blob", 5, BytesIO(b"bench"))
        ),
    }
    samples = {label: [timed(call)[0] for _ in range(runs)] for label, call in steps.items()}

    def push_new_commit() -> float:
        mirror.fetch()
        parent = mirror.resolve("main")
        commit = mirror.commit_files(parent, {path: (mirror.read_file(parent, path) or "") + "#\n"}, "bench: push")
        seconds, pushed = timed(lambda: mirror.push(commit, "main"))
        assert pushed
        return seconds

    samples["push one new commit (git push, remote ref moves)"] = [push_new_commit() for _ in range(runs)]
    return samples


def bench(runs: int) -> Report:
    from promo.gitops.repo import GitOpsRepo, Trailers

    report = Report("3 repo size", "set_version on 2,000 apps x 4 envs, 20,000 commits vs 1 app")
    started = time.perf_counter()
    big_fixture = cached(APPS, COMMITS, CACHE_DIR)
    small_fixture = cached(1, 1, CACHE_DIR)
    built = time.perf_counter() - started
    if built > 5:
        report.note(f"the big repo was generated this run (git fast-import + gc): {built:.0f} s, now cached")
    work = CACHE_DIR / "repo-size"
    remotes = {
        "big": _work_remote(big_fixture, work / "big-remote.git"),
        "small": _work_remote(small_fixture, work / "small-remote.git"),
    }
    caches = {name: work / f"promo-cache-{name}" for name in remotes}
    clones = {name: raw_clone(remote, work / f"raw-clone-{name}") for name, remote in remotes.items()}
    apps = {"big": app_name(1), "small": app_name(0)}
    paths = {name: manifest_path(apps[name], ENV, CLUSTER) for name in remotes}
    commits = int(run("git", "-C", remotes["big"], "rev-list", "--count", "main"))
    files = len(run("git", "-C", remotes["big"], "ls-tree", "-r", "--name-only", "main").splitlines())
    report.note(f"big repo: {files} manifests, {commits} commits on main; small repo: 4 manifests")

    stamp = int(time.time())

    def promo(name: str, version: str) -> float:
        shown = {CLUSTER: read_target_revisions(remotes[name], [paths[name]])[paths[name]]}  # as its gate showed it

        def call() -> object:
            repo = GitOpsRepo(remotes[name].as_uri(), "main", caches[name])  # a new client per call, as the tasks do
            return repo.set_version(
                apps[name], ENV, [CLUSTER], version, expected=shown,
                subject=f"bench: {version}", trailers=Trailers(approved_by="bench"),
            )  # fmt: skip

        seconds, result = timed(call)
        assert result.commit is not None and result.attempts == 1, result  # type: ignore[union-attr]
        return seconds

    # Warm up: the first use of an empty cache is a full fetch (what a fresh worker pays once).
    for name in remotes:
        cold = not caches[name].exists()
        seconds = promo(name, f"2.{stamp}.0")
        if cold:
            report.note(f"first promotion into an empty cache ({name} repo, full fetch): {seconds:.2f} s")
        raw_push(clones[name], paths[name], f"2.{stamp}.1")

    progress(f"repo size: {runs} rounds")
    for round_ in range(runs):
        version = f"3.{stamp}.{2 * round_}"  # promo and the raw floor take turns, each above the other: no downgrade
        raw_version = f"3.{stamp}.{2 * round_ + 1}"
        report.add("promo set_version, 1-app repo", promo("small", version))
        report.add("promo set_version, 2,000-app repo", promo("big", version))
        report.add("raw floor (cached work tree), 1-app repo", raw_push(clones["small"], paths["small"], raw_version))
        report.add("raw floor (cached work tree), 2,000-app repo", raw_push(clones["big"], paths["big"], raw_version))
    landed = read_target_revisions(remotes["big"], [paths["big"]])
    report.check("last big-repo write landed", landed.get(paths["big"]) == raw_version, f"{paths['big']} = {landed}")

    progress("repo size: where set_version's time goes (its git primitives, one at a time)")
    for name in ("small", "big"):
        for label, seconds in _primitives(remotes[name].as_uri(), caches[name], paths[name], runs).items():
            report.extend(f"· {name} repo: {label}", seconds)

    report.ratio("promo: 2,000-app / 1-app", "promo set_version, 2,000-app repo", "promo set_version, 1-app repo", 1.5)
    report.ratio(
        "raw floor: 2,000-app / 1-app",
        "raw floor (cached work tree), 2,000-app repo",
        "raw floor (cached work tree), 1-app repo",
    )
    report.ratio(
        "promo / raw floor, 2,000-app",
        "promo set_version, 2,000-app repo",
        "raw floor (cached work tree), 2,000-app repo",
    )
    return report


if __name__ == "__main__":
    cli(bench, default_runs=15)  # cheap rounds; a 2-core machine shared with others needs the extra samples
