"""A ref lock the remote keeps (a push killed mid-update leaves ``refs/heads/main.lock``) against real bare remotes:
one clear error within seconds, never retried as a race; a ref that really moves is still retried and lands."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from promo.errors import PromoError, ToolError, TransientError
from promo.gitops.mirror import RetryBudget, Snapshot
from promo.gitops.manifests import set_target_revision
from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest
from tests.fixtures.gitrepos import ROOT, GitRemote

TEST_HELLO = f"{ROOT}/test/preprod/hello.yaml"


def lock_of(remote: GitRemote) -> Path:
    """Where a receive-pack killed while updating main leaves its lock (main is a loose ref in these remotes)."""
    assert (remote.path / "refs" / "heads" / "main").exists()
    return remote.path / "refs" / "heads" / "main.lock"


@pytest.mark.parametrize("lock_file", ["refs/heads/main.lock", "HEAD.lock"])  # HEAD: main's symref, locked too
def test_a_lock_the_remote_keeps_is_one_error_naming_the_file_and_the_fix_within_15_seconds(
    gitops_remote: GitRemote, cache_dir: Path, lock_file: str
) -> None:
    gitops = GitOpsRepo(gitops_remote.url, "main", cache_dir)  # the default budget: 120 s of retries
    shown = gitops.plan("hello", "test", ["preprod"], "0.3.0").current
    head = gitops_remote.head()
    lock_of(gitops_remote)  # main is a loose ref, as the crash suite's remotes have it
    lock = gitops_remote.path / lock_file
    lock.write_text(f"{'0' * 40}\n")  # what a receive-pack killed mid-update leaves behind (the crash suite met both)

    def write() -> str | None:
        return gitops.set_version(
            WriteRequest(
                "hello", "test", ["preprod"], "0.3.0", expected=shown, subject="Promote 0.3.0", trailers=Trailers()
            )
        ).commit

    started = time.monotonic()
    with pytest.raises(PromoError) as raised:
        write()
    seconds = time.monotonic() - started

    error = raised.value
    assert seconds < 15, f"the stale lock took {seconds:.1f} s to report"
    assert isinstance(error, ToolError) and not isinstance(error, TransientError)  # tasks retry TransientError only
    message = str(error)
    assert "\n" not in message
    assert lock_file in message and gitops_remote.url in message
    assert "other writers" not in message  # nobody else is writing: the old message blamed them
    assert f"remove {lock_file} in the remote repository (on the server: {lock})" in error.fix
    assert error.fix.startswith(f"once no push to {gitops_remote.url} is running")
    assert lock.exists(), "promo cannot know the push that made it is dead: the lock is never removed by promo"
    assert gitops_remote.head() == head

    lock.unlink()  # the fix the error names
    commit = write()
    assert commit == gitops_remote.head() and 'targetRevision: "0.3.0"' in gitops_remote.read(TEST_HELLO)


class BusyRemote:
    """The budget's clock and sleep: each wait stands for one second in which another writer's push takes main's
    lock, moves main, and the next writer's push already holds the lock again when ours arrives. Real pushes to the
    real remote; only the clock is fake, so the test needs no wall-clock seconds."""

    def __init__(self, remote: GitRemote, busy_rounds: int) -> None:
        self.remote, self.busy_rounds = remote, busy_rounds
        self.now, self.sleeps, self.moves = 1000.0, 0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, _seconds: float) -> None:
        self.now += 1.0
        self.sleeps += 1
        lock = lock_of(self.remote)
        lock.unlink()  # the live push that held it completes ...
        self.moves.append(self.remote.commit({"README.md": f"# edit {self.sleeps}\n"}))  # ... and main moves
        if self.sleeps < self.busy_rounds:
            lock.write_text(f"{'1' * 40}\n")  # the next live push already holds the lock


def test_a_ref_that_moves_between_attempts_is_retried_and_lands_even_if_every_attempt_met_a_lock(
    gitops_remote: GitRemote, cache_dir: Path
) -> None:
    busy = BusyRemote(gitops_remote, busy_rounds=8)
    budget = RetryBudget(seconds=120.0, clock=busy.clock, sleep=busy.sleep, uniform=lambda low, high: high)
    gitops = GitOpsRepo(gitops_remote.url, "main", cache_dir, budget=budget)
    shown = gitops.plan("hello", "test", ["preprod"], "0.4.0").current
    lock_of(gitops_remote).write_text(f"{'1' * 40}\n")  # a live push holds main's lock when ours arrives

    result = gitops.set_version(
        WriteRequest(
            "hello", "test", ["preprod"], "0.4.0", expected=shown, subject="Promote 0.4.0", trailers=Trailers()
        )
    )

    # 8 attempts over 8 (fake) seconds each met the lock, longer than a kept lock is tolerated: main moved every
    # time, so it was a busy remote, not a stale lock. The 9th found it free and landed on the newest commit.
    assert result.attempts == 9 and busy.now - 1000.0 == 8.0
    assert gitops_remote.head() == result.commit
    assert gitops_remote.git("rev-parse", "main^").strip() == busy.moves[-1]  # on top of the other writer's work
    assert gitops_remote.read("README.md") == "# edit 8\n"
    assert 'targetRevision: "0.4.0"' in gitops_remote.read(TEST_HELLO)


def test_a_ref_that_moves_without_any_lock_is_still_retried_and_lands(
    gitops_remote: GitRemote, cache_dir: Path
) -> None:
    """Another writer pushes between our fetch and our push, three times: compare-and-swap rejections, retried."""
    gitops = GitOpsRepo(gitops_remote.url, "main", cache_dir)
    seen: list[str] = []

    def raced(snapshot: Snapshot) -> dict[str, str]:
        seen.append(snapshot.commit)
        if len(seen) <= 3:
            gitops_remote.commit({"README.md": f"# raced {len(seen)}\n"})
        return {TEST_HELLO: set_target_revision(snapshot.read_file(TEST_HELLO), "0.5.0")}

    result = gitops.mirror.update_branch("main", raced, lambda changes: "set test to 0.5.0\n")

    assert result.attempts == 4 and len(set(seen)) == 4
    assert gitops_remote.head() == result.commit and gitops_remote.read("README.md") == "# raced 3\n"
