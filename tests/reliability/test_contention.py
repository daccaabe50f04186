"""A contended GitOps repository: 32 promotions of different apps at once, plus a writer pushing unrelated commits.

Half of the promotions share one git cache (serialised by its lock file), the other half have one cache each (they
race at the remote and the losers re-apply their edit on the new head). Each promotion runs ``GitOpsRepo.set_version``
(what the ``write-environment-version`` task calls) under a loop that mirrors the task's retry policy: up to
``promo.tasks.retry.RETRIES`` more attempts, on ``TransientError`` only. A competing writer pushes commits of its own
through a plain ``git`` clone the whole time.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from promo.errors import TransientError
from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest
from promo.tasks.retry import RETRIES
from tests.fixtures.gitrepos import ROOT, application, git, make_remote

APPS = 32
SHARED_CACHE_APPS = 24  # apps 0-23 share one cache directory, 24-31 have one each (16/16 takes ~25 s here)
WRITER_MAX_SECONDS = 30.0
WRITER_PAUSE_SECONDS = 0.5  # a busy human or CI job, not a tight loop that would starve everyone
FIGURES: dict[str, object] = {}


SHOWN = "0.1.0-rc.def5678"  # what every app runs in test before the promotions, as their gates showed it


def app_name(i: int) -> str:
    return f"app-{i:02d}"


def target_version(i: int) -> str:
    return f"0.2.{i}-rc.abc{i:04d}"


def subject(i: int) -> str:
    return f"promote({app_name(i)}): dev -> test {target_version(i)}"


@pytest.fixture()
def remote(tmp_path: Path):
    files = {
        f"{ROOT}/test/preprod/{app_name(i)}.yaml": application(app_name(i), "test", SHOWN)
        for i in range(APPS)
    }
    files["README.md"] = "# GitOps\n"
    return make_remote(tmp_path / "gitops", files)


class CompetingWriter(threading.Thread):
    """Pushes unrelated commits (a new file each, and a line appended to a shared log) until told to stop."""

    def __init__(self, remote, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.remote, self.stop = remote, stop
        self.pushed: dict[str, str] = {}  # path -> text of every file it pushed successfully
        self.log_lines: list[str] = []
        self.rejected = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        work = self.remote.writer
        deadline = time.monotonic() + WRITER_MAX_SECONDS
        n = 0
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                n += 1
                git(work, "fetch", "--quiet", "origin")
                git(work, "reset", "--quiet", "--hard", "origin/main")
                path, text, line = f"other/writer-{n:03d}.txt", f"unrelated change {n}\n", f"writer line {n}"
                (work / "other").mkdir(exist_ok=True)
                (work / path).write_text(text)
                log = work / "other" / "log.txt"
                log.write_text((log.read_text() if log.exists() else "") + line + "\n")
                git(work, "add", "--all")
                git(work, "commit", "--quiet", "-m", f"writer: unrelated change {n}")
                try:
                    git(work, "push", "--quiet", "origin", "HEAD:main")
                except subprocess.CalledProcessError:
                    self.rejected += 1  # someone moved main: start over from the new head
                    continue
                self.pushed[path] = text
                self.log_lines.append(line)
                self.stop.wait(WRITER_PAUSE_SECONDS)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error


def promote(remote_url: str, cache: Path, i: int, start: threading.Barrier, results: dict) -> None:
    start.wait()
    attempts, transient = 0, []
    for _ in range(1 + RETRIES):  # the task's policy: TransientError only
        attempts += 1
        try:
            repo = GitOpsRepo(remote_url, "main", cache)
            result = repo.set_version(
                WriteRequest(
                    app_name(i), "test", ["preprod"], target_version(i), expected={"preprod": SHOWN},
                    subject=subject(i), trailers=Trailers(promoted_from="dev", chart_version=target_version(i)),
                )
            )  # fmt: skip
            results[i] = ("ok", attempts, result.attempts, transient)
            return
        except TransientError as error:
            transient.append(str(error))
            time.sleep(0.01)
        except BaseException as error:  # noqa: BLE001
            results[i] = ("error", attempts, 0, [f"{type(error).__name__}: {error}"])
            return
    results[i] = ("gave up", attempts, 0, transient)


def run_promotions(remote, tmp_path: Path, round_name: str) -> dict:
    results: dict[int, tuple] = {}
    start = threading.Barrier(APPS)
    caches = [tmp_path / "cache-shared" if i < SHARED_CACHE_APPS else tmp_path / f"cache-{i}" for i in range(APPS)]
    threads = [
        threading.Thread(target=promote, args=(remote.url, caches[i], i, start, results), daemon=True)
        for i in range(APPS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), f"{round_name}: a promotion hung"
    return results


def test_32_concurrent_promotions_all_land_once_and_revert_nothing(remote, tmp_path):
    stop = threading.Event()
    writer = CompetingWriter(remote, stop)
    started = time.monotonic()
    writer.start()
    results = run_promotions(remote, tmp_path, "first round")
    elapsed = time.monotonic() - started
    time.sleep(0.2)  # one more writer commit on top of the last promotion
    stop.set()
    writer.join(30)
    assert writer.error is None, f"the competing writer failed: {writer.error!r}"

    failed = {i: r for i, r in results.items() if r[0] != "ok"}
    assert not failed and len(results) == APPS, f"promotions that did not land: {failed}"

    # Every update is on main.
    for i in range(APPS):
        text = remote.read(f"{ROOT}/test/preprod/{app_name(i)}.yaml")
        revision = YAML(typ="safe").load(text)["spec"]["source"]["targetRevision"]
        assert revision == target_version(i), f"{app_name(i)} lost its update: {revision}"
    # Nothing of the competing writer was reverted.
    assert writer.pushed, "the competing writer never got a commit in: the test proved nothing"
    for path, text in writer.pushed.items():
        assert remote.read(path) == text, f"{path} of the competing writer was reverted"
    assert remote.read("other/log.txt").splitlines() == writer.log_lines, "the writer's log lost lines"
    # Exactly one promotion commit per app, each touching only its own manifest; nothing else was committed.
    log = [line.split("\x1f") for line in remote.git("log", "--format=%H%x1f%s", "main").splitlines()]
    subjects = [entry[1] for entry in log]
    counts = Counter(subjects)
    for i in range(APPS):
        assert counts[subject(i)] == 1, f"{app_name(i)} has {counts[subject(i)]} promotion commits"
        sha = next(entry[0] for entry in log if entry[1] == subject(i))
        changed = remote.git("show", "--name-only", "--format=", sha).split()
        assert changed == [f"{ROOT}/test/preprod/{app_name(i)}.yaml"], f"{app_name(i)}'s commit changed {changed}"
    assert len(subjects) == 1 + APPS + len(writer.pushed), "commits other than the promotions and the writer's"

    # Running every promotion again (all already current) commits nothing.
    head = remote.head()
    again = run_promotions(remote, tmp_path, "second round")
    assert all(r[0] == "ok" for r in again.values()) and remote.head() == head, "a re-run made a commit"

    push_attempts = [r[2] for r in results.values()]
    FIGURES.update(
        promotions=APPS,
        seconds=round(elapsed, 1),
        writer_commits=len(writer.pushed),
        writer_rejections=writer.rejected,
        max_push_attempts=max(push_attempts),
        task_level_retries=sum(r[1] - 1 for r in results.values()),
    )
    print(f"\ncontention figures: {FIGURES}")
