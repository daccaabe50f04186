"""The local forge against a real bare remote: releases are annotated tags, pull requests are refs/promo records."""

from __future__ import annotations

from pathlib import Path

import pytest

from promo.errors import ConflictError, InputError, NotFound
from promo.clients import forge_for
from promo.forges.base import PullRequest, Release
from promo.forges.local import LocalForge
from promo.gitops.mirror import Mirror
from tests.fixtures.gitrepos import GitRemote, make_remote


@pytest.fixture
def app_remote(tmp_path: Path) -> GitRemote:
    return make_remote(tmp_path / "app", {"README.md": "# hello\n"})


def local_forge(remote: GitRemote, cache: Path) -> LocalForge:
    forge = forge_for("local", mirror=Mirror.open(remote.url, cache), repository=None)
    assert isinstance(forge, LocalForge)
    return forge


def test_release_create_find_list_newest_first(app_remote: GitRemote, cache_dir: Path, tmp_path: Path) -> None:
    forge = local_forge(app_remote, cache_dir)
    first = app_remote.head()
    second = app_remote.commit({"a.txt": "a\n"}, "feat: a")
    third = app_remote.commit({"b.txt": "b\n"}, "fix: b")

    assert forge.find_release("v1.0.0") is None
    made = forge.create_release("v1.0.0", first, name="v1.0.0", notes="## 1.0.0\n\nFirst release.\n")
    assert made == Release("v1.0.0", first, "v1.0.0", "## 1.0.0\n\nFirst release.", None)
    forge.create_release("v1.10.0", third, name="v1.10.0", notes="ten")
    forge.create_release("v1.9.0", second, name="v1.9.0", notes="nine")
    app_remote.git("tag", "not-a-release", first)

    other = local_forge(app_remote, tmp_path / "other-cache")  # what another machine sees
    assert other.find_release("v1.0.0") == made
    assert [(release.tag, release.commit) for release in other.list_releases()] == [
        ("v1.10.0", third), ("v1.9.0", second), ("v1.0.0", first),
    ]
    assert app_remote.git("tag", "-l", "--format=%(contents:subject)", "v1.9.0").strip() == "v1.9.0"


def test_release_is_idempotent_and_never_moved(app_remote: GitRemote, cache_dir: Path) -> None:
    forge = local_forge(app_remote, cache_dir)
    first = app_remote.head()
    second = app_remote.commit({"a.txt": "a\n"}, "feat: a")
    made = forge.create_release("v1.0.0", first, name="v1.0.0", notes="notes")

    assert forge.create_release("v1.0.0", first, name="v1.0.0", notes="other notes") == made  # a re-run
    with pytest.raises(ConflictError, match=f"at commit {first}, not at {second}"):
        forge.create_release("v1.0.0", second, name="v1.0.0", notes="notes")
    with pytest.raises(InputError, match="not a release tag"):
        forge.create_release("1.0.0", first, name="1.0.0", notes="")
    with pytest.raises(InputError, match="not a full commit SHA"):
        forge.create_release("v1.0.1", first[:7], name="v1.0.1", notes="")


def test_a_lightweight_release_tag_is_a_release_without_notes(app_remote: GitRemote, cache_dir: Path) -> None:
    app_remote.git("tag", "v0.9.0", app_remote.head())
    assert local_forge(app_remote, cache_dir).find_release("v0.9.0") == Release(
        "v0.9.0", app_remote.head(), "v0.9.0", "", None
    )


def test_pull_request_record_list_and_idempotency(app_remote: GitRemote, cache_dir: Path, tmp_path: Path) -> None:
    forge = local_forge(app_remote, cache_dir)
    base = app_remote.head()
    assert forge.mirror.create_branch("hotfix-1-0-1", base)

    pull = forge.open_pull_request("hotfix-1-0-1", "main", title="Hotfix 1.0.1", body="Chart 1.0.1 from v1.0.0")

    assert pull == PullRequest(None, "hotfix-1-0-1", "main", "Hotfix 1.0.1", None, True)
    assert forge.open_pull_request("hotfix-1-0-1", "main", title="again", body="", draft=False) == pull
    message = app_remote.git("for-each-ref", "--format=%(contents)", "refs/promo/pulls/hotfix-1-0-1")
    assert message.strip() == "Hotfix 1.0.1\n\nChart 1.0.1 from v1.0.0\n\nBase: main\nDraft: true"
    assert local_forge(app_remote, tmp_path / "other-cache").list_pull_requests() == [pull]
    with pytest.raises(NotFound, match="branch hotfix-9-9-9 does not exist"):
        forge.open_pull_request("hotfix-9-9-9", "main", title="x", body="")
    assert app_remote.git("tag", "-l") == ""
