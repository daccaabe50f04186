"""A GitOps write that starts with an empty cache (a fresh pod): it fetches the branch's head alone, without blobs
where the remote filters, writes correctly, and history reads still see the whole history."""

from __future__ import annotations

from pathlib import Path

import pytest

from promo.gitops.history import read_history
from promo.gitops.mirror import Mirror
from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest
from tests.fixtures.gitrepos import ROOT, GitRemote, application, git

TEST_HELLO = f"{ROOT}/test/preprod/hello.yaml"


def with_history(remote: GitRemote, filters: bool) -> list[str]:
    """Three promotions of hello in test after the initial commit, a second branch, and filters on or off (a hosted
    forge serves partial clones; a bare repository refuses filters unless ``uploadpack.allowFilter`` is set).
    Returns the commits that touched test's manifest, newest first, as the remote has them."""
    remote.git("config", "uploadpack.allowFilter", "true" if filters else "false")
    for version in ("0.1.2", "0.1.3", "0.1.4"):
        remote.commit({TEST_HELLO: application("hello", "test", version)}, f"promote hello {version} to test")
    remote.commit({"notes.md": "unrelated\n"}, "unrelated change")
    git(remote.writer, "push", "--quiet", "origin", "HEAD:refs/heads/feature")
    return remote.git("log", "--format=%H", "main", "--", TEST_HELLO).split()


def write(gitops: GitOpsRepo, version: str) -> str:
    shown = gitops.cluster_versions("hello", "test", ["preprod"])
    result = gitops.set_version(
        WriteRequest(
            "hello", "test", ["preprod"], version, expected=shown, subject=f"Promote {version}", trailers=Trailers()
        )
    )
    assert result.commit is not None
    return result.commit


def missing_objects(mirror: Mirror) -> list[str]:
    """Objects reachable from the cache's branch that the cache does not hold (listed without fetching them)."""
    output = git(mirror.path, "rev-list", "--objects", "--missing=print", "refs/remotes/origin/main")
    return [line for line in output.splitlines() if line.startswith("?")]


@pytest.mark.parametrize("filters", [True, False], ids=["remote filters", "remote refuses filters"])
def test_an_empty_cache_fetches_the_head_alone_and_writes_correctly(
    gitops_remote: GitRemote, cache_dir: Path, filters: bool
) -> None:
    with_history(gitops_remote, filters)
    gitops = GitOpsRepo(gitops_remote.url, "main", cache_dir)

    commit = write(gitops, "0.2.0")

    assert gitops_remote.head() == commit
    assert 'targetRevision: "0.2.0"' in gitops_remote.read(TEST_HELLO)
    assert gitops_remote.git("diff", "--name-only", f"{commit}^", commit).split() == [TEST_HELLO]
    gitops_remote.git("fsck", "--strict", "--no-dangling")
    mirror = gitops.mirror
    assert (mirror.path / "shallow").exists()  # one commit fetched, not the history
    assert git(mirror.path, "rev-list", "--count", "refs/remotes/origin/main").strip() == "2"  # the head + ours
    assert "refs/remotes/origin/feature" not in git(mirror.path, "for-each-ref")  # the branch alone
    # Where the remote filters, the blobs nobody read stay on the remote (README, the other environments).
    assert bool(missing_objects(mirror)) == filters
    # A second write into the same cache fetches what moved meanwhile, blobs included, and reads no stale state.
    gitops_remote.commit({TEST_HELLO: application("hello", "test", "0.2.1")}, "someone else promotes")
    assert "targetRevision: \"0.2.2\"" in gitops_remote.read(TEST_HELLO, write(gitops, "0.2.2"))


def test_history_reads_deepen_a_shallow_cache_and_see_all_of_it(gitops_remote: GitRemote, cache_dir: Path) -> None:
    touched = with_history(gitops_remote, filters=True)
    gitops = GitOpsRepo(gitops_remote.url, "main", cache_dir)
    first = gitops_remote.git("rev-list", "--max-parents=0", "main").strip()
    mirror = gitops.mirror
    mirror.fetch()
    assert (mirror.path / "shallow").exists()

    records = mirror.log_paths("main", [TEST_HELLO])

    assert [record.sha for record in records] == touched
    assert not (mirror.path / "shallow").exists()
    assert missing_objects(mirror)  # the history came without blobs
    history = read_history(mirror, "main", "hello", {"test": ["preprod"]}, root=ROOT)
    assert [change.version for change in history] == ["0.1.4", "0.1.3", "0.1.2", "0.1.1-rc.def5678"]
    assert mirror.is_ancestor(first, "main")


def test_a_shallow_cache_resolves_older_commits_and_ancestry(gitops_remote: GitRemote, cache_dir: Path) -> None:
    with_history(gitops_remote, filters=True)
    first = gitops_remote.git("rev-list", "--max-parents=0", "main").strip()
    every_commit = gitops_remote.git("rev-list", "main").split()
    for ask in (
        lambda mirror: mirror.resolve("main~2") == gitops_remote.git("rev-parse", "main~2").strip(),
        lambda mirror: mirror.resolve(first) == first,
        lambda mirror: mirror.is_ancestor(first, "main"),
        lambda mirror: 'targetRevision: "0.1.1-rc.def5678"' in (mirror.read_file(first, TEST_HELLO) or ""),
        lambda mirror: [entry.sha for entry in mirror.log(None, "main")] == every_commit,
    ):
        mirror = Mirror.open(gitops_remote.url, cache_dir / f"{len(list(cache_dir.glob('*')))}", branch="main")
        mirror.fetch()
        assert (mirror.path / "shallow").exists()
        assert ask(mirror)


def test_new_files_land_in_git_order(gitops_remote: GitRemote, cache_dir: Path) -> None:
    """Tree entries are spliced as bytes: new names go where git sorts them (a directory as if it ended in "/")."""
    mirror = Mirror.open(gitops_remote.url, cache_dir, branch="main")
    files = {
        "A.md": "first by bytes\n",
        "registry.yaml": "a file sorting before the directory registry/\n",
        "registry-0/x.yaml": "a directory sorting after registry/\n",
        f"{ROOT}/test/preprod/aaa.yaml": "new first entry\n",
        f"{ROOT}/test/preprod/zzz.yaml": "new last entry\n",
        f"{ROOT}/test/preprod-b/hello.yaml": "a new cluster\n",
        "zz/deep/er/file.txt": "new nested directories\n",
    }
    head = mirror.snapshot("main").commit

    commit = mirror.commit_files(head, files, "add files")

    assert mirror.push(commit, "main")
    gitops_remote.git("fsck", "--strict", "--no-dangling")  # an unsorted tree is a fsck error (treeNotSorted)
    for path, text in files.items():
        assert gitops_remote.read(path) == text
    assert gitops_remote.read(TEST_HELLO) == mirror.read_file(head, TEST_HELLO)


def test_reading_many_files_of_a_partial_cache_fetches_the_missing_blobs_together(
    gitops_remote: GitRemote, cache_dir: Path
) -> None:
    with_history(gitops_remote, filters=True)
    mirror = Mirror.open(gitops_remote.url, cache_dir, branch="main")
    head = mirror.snapshot("main").commit
    paths = gitops_remote.git("ls-tree", "-r", "--name-only", "main").split() + ["no/such/file.yaml"]
    assert missing_objects(mirror)

    texts = mirror.read_files(head, paths)

    assert texts == {path: gitops_remote.read(path) for path in paths[:-1]} | {"no/such/file.yaml": None}
    assert not missing_objects(mirror)  # every blob of the commit was read, so every one is here now
