"""Bench 7, the estate at a glance: `promo status --all` on the 2,000-app x 4-env GitOps repo (20,000 commits, 500
verdicts), a new process each run on a warm cache, next to its floor: `git ls-tree -r` of the environments root
piped into one `git cat-file --batch` in the same cache (what the command must read at least, with no parsing).

The repository is bench 3's cached fixture, copied once (hardlinks) so verdict records can be added without touching
the fixture; copy, verdicts and promo's cache live in bench/.cache/status-all/ and stay warm between runs. Also, in
process: each step of the command (fetch, read, parse, verdicts) timed alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from cli import imported_prefect, run_once
from common import CACHE_DIR, Report, hyperfine, progress, read_target_revisions, run, timed
from common import main as cli
from gitops_fixture import ROOT, app_name, cached, manifest_path
from record_logs import commit_signers, import_logs, verdict_entries

APPS, COMMITS, VERIFIED_APPS = 2000, 20000, 500
PROMO = Path(sys.executable).with_name("promo")
WORK = CACHE_DIR / "status-all"
FLOOR = "git ls-tree -r + git cat-file --batch (floor)"
COMMAND = "promo status --all"


def _remote_with_verdicts() -> Path:
    """A copy of the 2,000-app fixture whose first VERIFIED_APPS apps have a 'verified' verdict on their dev version,
    signed as promo signs them, in their logs, by a key its branch lists in one more commit (so every signature is
    checked)."""
    from promo.gitops.signing import SigningKey
    from promo.gitops.verdicts import Verdict

    remote = WORK / "remote.git"
    if (remote / "HEAD").exists() and run("git", "-C", remote, "for-each-ref", "refs/promo/log/verdicts/").strip():
        return remote
    run("rm", "-rf", remote)
    run("git", "clone", "-q", "--bare", cached(APPS, COMMITS, CACHE_DIR), remote)
    key = SigningKey.generate()
    head = commit_signers(remote, key.public.allowed_signers_line() + "\n")
    paths = [manifest_path(app_name(index), "dev", "preprod") for index in range(VERIFIED_APPS)]
    versions = read_target_revisions(remote, paths)
    checked_at = datetime.now(timezone.utc).replace(microsecond=0)
    verdicts = (
        Verdict(app_name(index), "dev", versions[path], head, True, "synced and healthy", checked_at)
        for index, path in enumerate(paths)
    )
    import_logs(remote, verdict_entries(key, verdicts))
    return remote


def _config(remote: Path) -> Path:
    settings = {
        "app": app_name(0),
        "app_repo": {"url": (WORK / "no-app-repo.git").as_uri()},
        "gitops": {"url": remote.as_uri(), "root": ROOT},
        "chart": {"path": "charts/app", "repository": "127.0.0.1:9/charts"},  # never asked: --all reads git only
        "image": {"repository": "127.0.0.1:9/app"},
        "environments": [
            {"name": env, "clusters": [cluster]}
            for env, cluster in (("dev", "preprod"), ("test", "preprod"), ("stage", "preprod"), ("prod", "prod"))
        ],
        "cache_dir": str(WORK / "cache"),
    }
    path = WORK / "promo.yaml"
    path.write_text(json.dumps(settings))
    return path


def _floor_script(mirror: Path) -> str:
    listing = f"git --git-dir={mirror} ls-tree -r refs/remotes/origin/main -- {ROOT}/"
    return f"{listing} | awk '{{print $3}}' | git --git-dir={mirror} cat-file --batch > /dev/null"


def _steps(config_path: Path, runs: int) -> dict[str, list[float]]:
    """The command's steps, in process, each timed alone (the parse with its per-line memory cleared each run)."""
    from promo.config import load_config
    from promo.gitops import manifests
    from promo.gitops.mirror import Mirror
    from promo.reports.estate import _newest_verdicts, estate_at

    config = load_config(config_path)
    mirror = Mirror.open(config.gitops.url, config.resolved_cache_dir)
    commit = mirror.snapshot(config.gitops.branch).commit
    files = mirror.read_files_under(commit, ROOT)

    def parse() -> None:
        manifests.read_target_revision.cache_clear()
        manifests._LINE_SHAPES.clear()
        manifests._LINE_VALUES.clear()
        for path, text in files.items():
            manifests.read_target_revision(text, path)

    steps = {
        "step: fetch with nothing new": lambda: mirror.snapshot(config.gitops.branch),
        "step: Mirror.read_files_under (ls-tree + cat-file, 8,000 files)": lambda: mirror.read_files_under(
            commit, ROOT
        ),
        "step: read targetRevision of 8,000 manifests": parse,
        "step: read every verdict (its fetches + its logs read)": lambda: _newest_verdicts(mirror),
        "step: estate_at (read + parse + verdicts + table data)": lambda: estate_at(
            mirror, commit, ROOT, config.environment_names
        ),
    }
    return {label: [timed(call)[0] for _ in range(runs)] for label, call in steps.items()}


def bench(runs: int) -> Report:
    report = Report("7 status --all", "promo status --all on 2,000 apps x 4 envs (warm cache) vs ls-tree + cat-file")
    WORK.mkdir(parents=True, exist_ok=True)
    progress("status-all: fixture and verdicts (about a minute the first time)")
    remote = _remote_with_verdicts()
    config_path = _config(remote)
    argv = [str(PROMO), "status", "--all", "-c", str(config_path)]
    first = subprocess.run(argv, capture_output=True, text=True, check=True)  # warms the cache (a clone, first time)
    mirror = next((WORK / "cache").glob("*.git"))
    floor = ["bash", "-c", _floor_script(mirror)]

    printed = json.loads(subprocess.run([*argv, "--json"], capture_output=True, text=True, check=True).stdout)
    apps = {entry["app"]: entry["environments"] for entry in printed["apps"]}
    cells = sum(1 for envs in apps.values() for placement in envs.values() if placement is not None)
    shown_all = len(apps) == APPS and cells == APPS * 4
    report.check("every app x env is shown", shown_all, f"{len(apps)} apps, {cells} cells")
    verified = sum(1 for envs in apps.values() for p in envs.values() if p and p["verdict"] == "verified")
    report.check("the verified versions are marked", verified == VERIFIED_APPS, f"{verified} marked verified")
    places = (("dev", "preprod"), ("prod", "prod"))
    sample = [manifest_path(app_name(index), env, cluster) for index in range(0, APPS, 97) for env, cluster in places]
    expected = read_target_revisions(remote, sample)
    shown = {
        manifest_path(app, env, cluster): placement["clusters"][cluster]
        for app, envs in apps.items()
        for env, placement in envs.items()
        for cluster in placement["clusters"]
    }
    wrong = [path for path in sample if shown.get(path) != expected[path]]
    report.check("versions agree with git (sample of 42)", not wrong, f"{len(wrong)} differ")
    loaded = imported_prefect(argv)
    report.check(f"{COMMAND} imports no Prefect", not loaded, f"{len(loaded)} prefect modules loaded")
    report.check("the table has a row per app", len(first.stdout.splitlines()) >= APPS + 1, "")

    progress(f"status-all: {runs} rounds, interleaved")
    for _ in range(runs):
        for label, command in ((COMMAND, argv), (FLOOR, floor)):
            seconds, cpu = run_once(command)
            report.add(label, seconds)
            report.add(f"{label} (CPU time)", cpu)
    quoted = {COMMAND: " ".join(argv), FLOOR: f"bash -c \"{_floor_script(mirror)}\""}
    for label, times in hyperfine(quoted, runs=max(5, runs)).items():
        report.extend(f"{label} (hyperfine)", times)
    progress("status-all: the steps, in process")
    for label, times in _steps(config_path, runs).items():
        report.extend(label, times)

    report.ratio(f"{COMMAND} / floor", COMMAND, FLOOR)
    report.ratio(f"{COMMAND} / floor, CPU time", f"{COMMAND} (CPU time)", f"{FLOOR} (CPU time)")
    report.absolute_goal(f"{COMMAND}, 2,000 apps x 4 envs, warm", COMMAND, 2.0)
    report.absolute_goal(f"{COMMAND}, 2,000 apps x 4 envs, warm, CPU time", f"{COMMAND} (CPU time)", 2.0)
    report.note(f"{COMMAND} is a new process of {PROMO}, fetch included; the floor reads the same blobs, parses none")
    return report


if __name__ == "__main__":
    cli(bench, default_runs=7)
