"""Tags, branches, records and history of a mirror, against real bare remotes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from git import Actor

from promo.errors import ConflictError, InputError, NotFound
from promo.gitops.mirror import Annotation, LogEntry, Mirror, Snapshot
from tests.fixtures.gitrepos import GitRemote, make_remote


@pytest.fixture
def app_remote(tmp_path: Path) -> GitRemote:
    return make_remote(tmp_path / "app", {"README.md": "# hello\n"})


def mirror_of(remote: GitRemote, cache: Path) -> Mirror:
    mirror = Mirror.open(remote.url, cache)
    mirror.fetch()
    return mirror


def test_create_tag_pushes_an_annotated_tag_once(app_remote: GitRemote, cache_dir: Path) -> None:
    mirror = mirror_of(app_remote, cache_dir)
    head = app_remote.head()

    assert mirror.create_tag("v1.0.0", head, "v1.0.0\n\n## Features\n- one", tagger=Actor("alice", "a@x")) is True
    assert mirror.create_tag("v1.0.0", head, "another message") is False  # a re-run

    assert app_remote.git("rev-parse", "v1.0.0^{commit}").strip() == head
    assert app_remote.git("cat-file", "-t", "v1.0.0").strip() == "tag"
    assert app_remote.git("tag", "-l", "--format=%(taggername) %(taggeremail)|%(contents)", "v1.0.0").strip() == (
        "alice <a@x>|v1.0.0\n\n## Features\n- one"
    )
    app_remote.git("fsck", "--strict", "--no-dangling")
    assert mirror.tags() == {"v1.0.0": head}
    assert mirror.tag_message("v1.0.0") == "v1.0.0\n\n## Features\n- one"
    assert mirror.resolve("v1.0.0") == head


def test_a_tag_at_another_commit_is_a_conflict_naming_both(app_remote: GitRemote, cache_dir: Path) -> None:
    first = app_remote.head()
    second = app_remote.commit({"a.txt": "a\n"}, "feat: a")
    mirror = mirror_of(app_remote, cache_dir)
    mirror.create_tag("v1.0.0", first, "v1.0.0")

    with pytest.raises(ConflictError) as error:
        mirror.create_tag("v1.0.0", second, "v1.0.0")

    assert first in str(error.value) and second in str(error.value)
    assert app_remote.git("rev-parse", "v1.0.0^{commit}").strip() == first


def test_a_tag_made_elsewhere_is_fetched_peeled_and_pruned(
    app_remote: GitRemote, cache_dir: Path, tmp_path: Path
) -> None:
    head = app_remote.head()
    mirror_of(app_remote, cache_dir).create_tag("v0.1.0", head, "first")
    app_remote.git("tag", "light", head)
    other = mirror_of(app_remote, tmp_path / "other-cache")  # a second machine's cache

    assert other.tags() == {"v0.1.0": head, "light": head}
    assert other.tag_message("v0.1.0") == "first"
    assert other.tag_message("light") is None and other.tag_message("v9.9.9") is None

    app_remote.git("tag", "-d", "light")
    other.fetch()
    assert other.tags() == {"v0.1.0": head}


def test_create_tag_refuses_bad_names_and_unknown_commits(app_remote: GitRemote, cache_dir: Path) -> None:
    mirror = mirror_of(app_remote, cache_dir)
    for name in ("--force", "-v1", "v1..2", "v1 2", "v1:2", "v1.lock", "", "a//b", "v1/"):
        with pytest.raises(InputError, match="not a valid git tag name"):
            mirror.create_tag(name, app_remote.head(), "x")
    with pytest.raises(NotFound):
        mirror.create_tag("v1.0.0", "f" * 40, "x")
    assert app_remote.git("tag", "-l") == ""


def test_concurrent_tag_creation_has_one_winner(app_remote: GitRemote, tmp_path: Path) -> None:
    head = app_remote.head()
    mirrors = [mirror_of(app_remote, tmp_path / f"cache-{index}") for index in range(3)]
    results: list[bool] = []
    threads = [threading.Thread(target=lambda m=m: results.append(m.create_tag("v2.0.0", head, "x"))) for m in mirrors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, True]


def test_branches_and_create_branch(app_remote: GitRemote, cache_dir: Path) -> None:
    first = app_remote.head()
    second = app_remote.commit({"a.txt": "a\n"}, "feat: a")
    mirror = mirror_of(app_remote, cache_dir)

    assert mirror.create_branch("hotfix-1-0-1", first) is True
    assert app_remote.git("rev-parse", "hotfix-1-0-1").strip() == first
    assert mirror.branches() == {"main": second, "hotfix-1-0-1": first}
    assert mirror.create_branch("hotfix-1-0-1", first) is False
    with pytest.raises(ConflictError, match="branch hotfix-1-0-1 already exists"):
        mirror.create_branch("hotfix-1-0-1", second)  # a fast-forward, still refused: the branch is never moved
    with pytest.raises(InputError):
        mirror.create_branch("--delete", first)
    assert app_remote.git("rev-parse", "hotfix-1-0-1").strip() == first


def test_a_branch_deleted_on_the_remote_is_forgotten_and_can_be_made_again(
    app_remote: GitRemote, cache_dir: Path
) -> None:
    """A lean mirror (the GitOps one) fetches its one branch, so its fetch never prunes a pull request's branch that
    was merged or closed and deleted: fetching that branch forgets it, and it can be made again at another commit."""
    first = app_remote.head()
    second = app_remote.commit({"a.txt": "a\n"}, "feat: a")
    mirror = Mirror.open(app_remote.url, cache_dir, branch="main")
    mirror.fetch()
    assert mirror.create_branch("promo/hello/stage/0.2.0", first) is True
    assert mirror.fetch_branch("promo/hello/stage/0.2.0") == first
    app_remote.git("update-ref", "-d", "refs/heads/promo/hello/stage/0.2.0")  # deleted after its pull request

    assert mirror.fetch_branch("promo/hello/stage/0.2.0") is None
    assert mirror.create_branch("promo/hello/stage/0.2.0", second) is True
    assert app_remote.git("rev-parse", "promo/hello/stage/0.2.0").strip() == second


def test_records_live_outside_tags_and_branches(app_remote: GitRemote, cache_dir: Path, tmp_path: Path) -> None:
    head = app_remote.head()
    mirror = mirror_of(app_remote, cache_dir)

    assert mirror.create_record("pulls", "hotfix-1-0-1", head, "Hotfix 1.0.1\n\nBase: main") is True
    assert mirror.create_record("pulls", "hotfix-1-0-1", head, "something else") is False

    other = mirror_of(app_remote, tmp_path / "other-cache")
    assert other.records("pulls") == {"hotfix-1-0-1": Annotation(head, "Hotfix 1.0.1\n\nBase: main")}
    assert other.tags() == {} and set(other.branches()) == {"main"}
    assert app_remote.git("tag", "-l") == ""
    with pytest.raises(InputError):
        mirror.records("../heads")


def test_log_gives_authors_and_the_whole_history_without_a_start(app_remote: GitRemote, cache_dir: Path) -> None:
    first = app_remote.head()
    second = app_remote.commit({"a.txt": "a\n"}, "feat: a | with\x1fseparators")
    mirror = mirror_of(app_remote, cache_dir)
    third = mirror.commit_empty("main", "build: publish-dev on main (manual run)")

    assert mirror.log(None, "main") == [
        LogEntry(third, "build: publish-dev on main (manual run)", "promo"),
        LogEntry(second, "feat: a | with\x1fseparators", "someone else"),
        LogEntry(first, "initial environments", "someone else"),
    ]
    mirror.create_tag("v1.0.0", second, "v1.0.0")
    assert [entry.sha for entry in mirror.log("v1.0.0", "main")] == [third]


def test_an_identical_commit_pushed_by_another_writer_is_not_taken_for_ours(
    app_remote: GitRemote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers making the same edit on the same head in the same second build byte-identical commits; the second
    push is then "up to date". A relative edit (a version bump) must be re-applied, not reported as done."""
    for variable in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        monkeypatch.setenv(variable, "1700000000 +0000")  # the same second for both writers, deterministically
    app_remote.commit({"v.txt": "1\n"}, "v1")
    other, mine = mirror_of(app_remote, tmp_path / "other"), mirror_of(app_remote, tmp_path / "mine")

    heads: list[str] = []

    def bump(head: Snapshot) -> dict[str, str]:
        heads.append(head.commit)
        changes = {"v.txt": f"{int(head.read_file('v.txt') or 0) + 1}\n"}
        if len(heads) == 1:  # the other writer wins the race with the very same commit
            assert other.push(other.commit_files(head.commit, changes, "bump\n"), "main")
        return changes

    result = mine.update_branch("main", bump, lambda _changes: "bump\n")

    assert app_remote.read("v.txt") == "3\n" and result.attempts == 2 and result.commit == app_remote.head()


def test_a_ref_lock_left_by_a_killed_git_is_cleared_and_the_fetch_goes_on(
    app_remote: GitRemote, cache_dir: Path
) -> None:
    """A run SIGKILLed during a fetch leaves ``<ref>.lock`` in the cache; the next run must not fail on it (found by
    the crash suite: release-prod killed while the next build fetched)."""
    mirror = Mirror.open(app_remote.url, cache_dir)
    mirror.fetch()
    stale = mirror.path / "refs" / "remotes" / "origin" / "main.lock"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("left by a killed git\n")
    newer = app_remote.commit({"NEWS": "a change after the crash\n"})

    mirror.fetch()

    assert mirror.branches()["main"] == newer
    assert not stale.exists()
