"""Verdict records are fetched only where they are read: a GitOps write and a plain read fetch the branch (and tags)
alone and the cache they use never holds a record or a record log, while the verdict readers still see what another
writer recorded (kept apart in the record store, packed)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from promo.gitops.mirror import Mirror
from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest
from promo.gitops.verdicts import Verdict, read_verdicts, record_verdict
from tests.fixtures.gitrepos import RECORD_SIGNER, GitRemote, git


LOG = "refs/promo/log/verdicts/hello/test"


def verdict(commit: str, reason: str = "synced and healthy") -> Verdict:
    checked_at = datetime.now(timezone.utc).replace(microsecond=0)  # a signed record is no older than its commit
    return Verdict("hello", "test", "0.1.1-rc.def5678", commit, True, reason, checked_at, ("argocd",))


def reasons(mirror: Mirror) -> dict[str, str]:
    """gitops commit -> the reason of hello's verdict on it, as ``read_verdicts`` (through ``records``) sees them."""
    return {commit: found.reason for commit, found in read_verdicts(mirror, "hello").items()}


def cache_refs(mirror: Mirror, namespace: str = "refs/promo") -> list[str]:
    return git(mirror.path, "for-each-ref", "--format=%(refname)", namespace).split()


def stored_records(mirror: Mirror) -> list[str]:
    """The records in the cache's record store, and no loose ref file among them (they are kept packed)."""
    store = mirror.path / "promo-records.git"
    assert not [path for path in (store / "refs").rglob("*") if path.is_file()]
    return git(store, "for-each-ref", "--format=%(refname)", "refs/promo").split()


def tag_objects(mirror: Mirror) -> list[str]:
    """The tag objects the branch cache holds (promo writes no other tags in these tests)."""
    listed = git(mirror.path, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype) %(objectname)")
    return [line.split()[1] for line in listed.splitlines() if line.startswith("tag ")]


def test_a_write_and_a_plain_read_fetch_no_records_while_records_sees_another_writers_verdict(
    gitops_remote: GitRemote, tmp_path: Path
) -> None:
    first = gitops_remote.head()
    other = Mirror.open(gitops_remote.url, tmp_path / "other-cache", branch="main")
    record_verdict(other, verdict(first), RECORD_SIGNER)  # another writer's verdict, in the remote

    gitops = GitOpsRepo(gitops_remote.url, "main", tmp_path / "cache")
    shown = gitops.cluster_versions("hello", "test", ["preprod"])  # a plain read
    written = gitops.set_version(
        WriteRequest(
            "hello", "test", ["preprod"], "0.3.0", expected=shown, subject="Promote 0.3.0", trailers=Trailers()
        )
    )
    assert gitops.environment_version("hello", "test", ["preprod"]) == "0.3.0"
    gitops.mirror.fetch()

    assert written.commit == gitops_remote.head()
    assert cache_refs(gitops.mirror) == []  # neither the reads nor the write brought refs/promo/*
    assert cache_refs(gitops.mirror, "refs/remotes") == ["refs/remotes/origin/main"]

    assert reasons(gitops.mirror) == {first: "synced and healthy"}  # fetched where it is read
    assert stored_records(gitops.mirror) == [LOG]  # one log, whatever it holds
    assert cache_refs(gitops.mirror) == [] and tag_objects(gitops.mirror) == []  # not into the branch cache

    record_verdict(other, verdict(written.commit, "verified after the write"), RECORD_SIGNER)
    assert reasons(gitops.mirror) == {first: "synced and healthy", written.commit: "verified after the write"}
    gitops_remote.git("update-ref", "-d", LOG)  # removed in the remote
    assert reasons(gitops.mirror) == {} and stored_records(gitops.mirror) == []  # pruned
    gitops.mirror.fetch()
    assert cache_refs(gitops.mirror) == [] and tag_objects(gitops.mirror) == []


def test_a_record_created_here_is_read_back_and_stays_out_of_the_cache_s_refs(
    gitops_remote: GitRemote, tmp_path: Path
) -> None:
    mirror = Mirror.open(gitops_remote.url, tmp_path / "cache", branch="main")
    head = gitops_remote.head()
    assert mirror.create_record("pulls", "hotfix-1-0-1", head, "Hotfix 1.0.1") is True
    assert mirror.create_record("pulls", "hotfix-1-0-1", head, "again") is False  # found in the remote: kept
    assert mirror.create_record("pulls", "hotfix-1-0-10", head, "Hotfix 1.0.10") is True  # a longer name is another

    assert {name: record.message for name, record in mirror.records("pulls").items()} == {
        "hotfix-1-0-1": "Hotfix 1.0.1",
        "hotfix-1-0-10": "Hotfix 1.0.10",
    }
    assert cache_refs(mirror) == []
    assert stored_records(mirror) == ["refs/promo/pulls/hotfix-1-0-1", "refs/promo/pulls/hotfix-1-0-10"]


def test_records_read_into_a_fresh_lean_cache_keep_it_shallow(gitops_remote: GitRemote, tmp_path: Path) -> None:
    gitops_remote.git("config", "uploadpack.allowFilter", "true")
    old = gitops_remote.head()
    for version in ("0.1.2", "0.1.3"):
        gitops_remote.commit({"README.md": f"# {version}\n"})
    other = Mirror.open(gitops_remote.url, tmp_path / "other-cache")
    other.create_record("verdicts", f"hello/test/{old}-0123456789ab", old, "a record of old")
    record_verdict(other, verdict(old), RECORD_SIGNER)
    lean = Mirror.open(gitops_remote.url, tmp_path / "cache", branch="main")
    assert lean.records("pulls") == {}  # none of that kind in the remote: nothing to fetch is no error

    [name] = lean.records("verdicts")  # before any fetch of the branch, and after one
    assert name == f"hello/test/{old}-0123456789ab"
    lean.fetch()
    assert set(lean.records("verdicts")) == {name}
    store = lean.path / "promo-records.git"
    assert git(store, "rev-list", "--count", old).strip() == "1"  # the record's commit, not its history
    assert git(store, "rev-list", "--objects", "--missing=print", old).count("\n?") > 0  # nor its files
    assert (lean.path / "shallow").exists()  # and the branch cache was not deepened
    assert reasons(lean) == {old: "synced and healthy"}  # the log's verdict stands over the unsigned record of old
    assert git(store, "rev-list", "--count", LOG).strip() == "1"  # a log brings its entries, no GitOps commit


def test_a_lean_cache_and_its_record_store_can_be_garbage_collected(gitops_remote: GitRemote, tmp_path: Path) -> None:
    """git's gc of a bare repository writes a bitmap, which a partial clone cannot: the repack failed, and its gc.log
    stopped every later automatic gc while loose objects and packs piled up (a plain fetch then cost several times
    more). Both repositories of a lean cache are partial and shallow, so both turn bitmaps off."""
    gitops_remote.git("config", "uploadpack.allowFilter", "true")
    for version in ("0.1.2", "0.1.3"):
        gitops_remote.commit({"README.md": f"# {version}\n"})
    gitops = GitOpsRepo(gitops_remote.url, "main", tmp_path / "cache")
    shown = gitops.cluster_versions("hello", "test", ["preprod"])  # a lean cache: the branch's head alone
    gitops.set_version(  # whose commits promo writes itself, beside the packs git fetched from the promisor remote
        WriteRequest(
            "hello", "test", ["preprod"], "0.3.0", expected=shown, subject="Promote 0.3.0", trailers=Trailers()
        )
    )
    record_verdict(gitops.mirror, verdict(gitops_remote.head()), RECORD_SIGNER)
    assert read_verdicts(gitops.mirror, "hello")
    for repository in (gitops.mirror.path, gitops.mirror.path / "promo-records.git"):
        git(repository, "gc", "--quiet")  # raises when the repack fails
        assert not (repository / "gc.log").exists()


def test_records_are_read_through_a_cache_dir_given_as_a_relative_path(
    gitops_remote: GitRemote, tmp_path: Path, monkeypatch
) -> None:
    record_verdict(Mirror.open(gitops_remote.url, tmp_path / "writer"), verdict(gitops_remote.head()), RECORD_SIGNER)
    monkeypatch.chdir(tmp_path)
    mirror = Mirror.open(gitops_remote.url, Path("relative-cache"), branch="main")  # as a promo.yaml may say it
    mirror.fetch()
    assert reasons(mirror) == {gitops_remote.head(): "synced and healthy"}
