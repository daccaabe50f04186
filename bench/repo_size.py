"""Bench 3, repo size: one promotion (set_version) on a 2,000-app x 4-env GitOps repo with 20,000 commits vs a 1-app repo.

Warm: promo's cached bare mirror (each call still fetches, as every promotion does) and, for the raw floor, a cached
work tree. Cold: a promotion that starts with an empty cache directory (a fresh pod), next to ``git clone --depth 1``
of the same repository, and the same cold promotion against a copy of the remote that refuses filters. The remotes
allow filters (``uploadpack.allowFilter``), as GitHub and GitLab do. The big repository is generated once with git
fast-import and kept under bench/.cache (about a minute the first time); its promo cache and raw clone live there too,
so later runs are warm. Each round runs, interleaved: promo on the small repo, promo on the big one, the raw script on
each; then the cold rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from common import CACHE_DIR, Report, progress, raw_clone, raw_push, read_target_revisions, run, scratch, timed
from common import main as cli
from gitops_fixture import app_name, cached, manifest_path

APPS, ENVS, COMMITS = 2000, 4, 20000
ENV, CLUSTER = "test", "preprod"


def _work_remote(fixture: Path, dest: Path, *, filters: bool = True) -> Path:
    """A writable copy of the cached fixture (hardlinked objects), kept between runs: it grows a few commits a run.
    ``filters``: whether it serves partial clones (``uploadpack.allowFilter``), as a hosted forge does."""
    if not (dest / "HEAD").exists():
        run("git", "clone", "-q", "--bare", fixture, dest)
    run("git", "-C", dest, "config", "uploadpack.allowFilter", "true" if filters else "false")
    return dest


def _primitives(url: str, cache: Path, path: str, runs: int) -> dict[str, list[float]]:
    """The steps of one set_version on a warm mirror, each timed alone."""
    from promo.gitops.mirror import Mirror

    mirror = Mirror.open(url, cache, branch="main")
    mirror.fetch()
    head = mirror.resolve("main")
    text = mirror.read_file(head, path) or ""
    steps: dict[str, Callable[[], object]] = {
        "fetch with nothing new (git fetch)": mirror.fetch,
        "read the manifest: Mirror.read_file (cat-file --batch, <commit>:<path>)": lambda: mirror.read_file(head, path),
        "commit_files: splice the trees along the path, store blob + trees + commit": lambda: mirror.commit_files(
            head, {path: text + "#\n"}, "bench"
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
    from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest

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
    unfiltered = _work_remote(big_fixture, work / "big-remote-no-filters.git", filters=False)
    caches = {name: work / f"promo-cache-{name}" for name in remotes}
    clones = {name: raw_clone(remote, work / f"raw-clone-{name}") for name, remote in remotes.items()}
    apps = {"big": app_name(1), "small": app_name(0)}
    paths = {name: manifest_path(apps[name], ENV, CLUSTER) for name in remotes}
    commits = int(run("git", "-C", remotes["big"], "rev-list", "--count", "main"))
    files = len(run("git", "-C", remotes["big"], "ls-tree", "-r", "--name-only", "main").splitlines())
    report.note(f"big repo: {files} manifests, {commits} commits on main; small repo: 4 manifests")

    stamp = int(time.time())  # the major version: every run writes above what earlier runs left

    def promo(name: str, version: str, *, cache: Path | None = None, remote: Path | None = None) -> float:
        remote = remote or remotes[name]
        shown = {CLUSTER: read_target_revisions(remote, [paths[name]])[paths[name]]}  # as its gate showed it

        def call() -> object:
            repo = GitOpsRepo(remote.as_uri(), "main", cache or caches[name])  # a new client per call, as tasks do
            return repo.set_version(
                WriteRequest(
                    apps[name], ENV, [CLUSTER], version, expected=shown,
                    subject=f"bench: {version}", trailers=Trailers(approved_by="bench"),
                )
            )  # fmt: skip

        seconds, result = timed(call)
        assert result.commit is not None and result.attempts == 1, result  # type: ignore[union-attr]
        return seconds

    # Warm up: the first use of an empty cache fetches the branch's head (the cold rounds below time that).
    for name in remotes:
        promo(name, f"{stamp}.0.0")
        raw_push(clones[name], paths[name], f"{stamp}.0.1")

    progress(f"repo size: {runs} rounds")
    for round_ in range(runs):
        version = f"{stamp}.1.{2 * round_}"  # promo and the raw floor take turns, each above the other: no downgrade
        raw_version = f"{stamp}.1.{2 * round_ + 1}"
        report.add("promo set_version, 1-app repo", promo("small", version))
        report.add("promo set_version, 2,000-app repo", promo("big", version))
        report.add("raw floor (cached work tree), 1-app repo", raw_push(clones["small"], paths["small"], raw_version))
        report.add("raw floor (cached work tree), 2,000-app repo", raw_push(clones["big"], paths["big"], raw_version))
    landed = read_target_revisions(remotes["big"], [paths["big"]])
    report.check("last big-repo write landed", landed.get(paths["big"]) == raw_version, f"{paths['big']} = {landed}")

    cold_runs = max(3, runs // 3)  # each cold round is a fresh cache, a clone and a second fresh cache
    progress(f"repo size: {cold_runs} cold rounds (empty cache each)")
    for round_ in range(cold_runs):
        with scratch("promo-cold-") as fresh:
            cold = promo("big", f"{stamp}.2.{2 * round_}", cache=fresh)
            report.add("promo set_version, 2,000-app repo, empty cache", cold)
            seconds, _ = timed(lambda: run("git", "clone", "-q", "--depth", "1", remotes["big"].as_uri(), fresh / "c"))
            report.add("git clone --depth 1 of the 2,000-app repo (no edit, no push)", seconds)
            report.add(
                "promo set_version, 2,000-app repo, empty cache, remote refuses filters",
                promo("big", f"{stamp}.2.{2 * round_}", cache=fresh / "no-filters", remote=unfiltered),
            )
        warm = promo("big", f"{stamp}.2.{2 * round_ + 1}")
        report.add("promo set_version, 2,000-app repo, warm (interleaved with cold)", warm)

    progress("repo size: where set_version's time goes (its git primitives, one at a time)")
    for name in ("small", "big"):
        for label, seconds in _primitives(remotes[name].as_uri(), caches[name], paths[name], runs).items():
            report.extend(f"· {name} repo: {label}", seconds)

    report.ratio("promo: 2,000-app / 1-app", "promo set_version, 2,000-app repo", "promo set_version, 1-app repo", 1.3)
    report.ratio(
        "promo 2,000-app: empty cache / warm",
        "promo set_version, 2,000-app repo, empty cache",
        "promo set_version, 2,000-app repo, warm (interleaved with cold)",
        2.0,
    )
    report.ratio(
        "promo 2,000-app empty cache / git clone --depth 1",
        "promo set_version, 2,000-app repo, empty cache",
        "git clone --depth 1 of the 2,000-app repo (no edit, no push)",
        1.0,
    )
    report.ratio(
        "promo 2,000-app empty cache, no filters / git clone --depth 1",
        "promo set_version, 2,000-app repo, empty cache, remote refuses filters",
        "git clone --depth 1 of the 2,000-app repo (no edit, no push)",
    )
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
