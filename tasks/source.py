"""The app repository: the commit a build starts from and its files."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from promo.clients import app_mirror
from promo.config import PromoConfig
from promo.errors import InputError
from promo.versions import short_sha
from tasks.retry import TRANSIENT_RETRIES

BUILD_COMMIT_MESSAGE = "build: publish-dev on {branch} (manual run)"


@task(name="resolve-build-commit", **TRANSIENT_RETRIES)
def resolve_build_commit(config: PromoConfig, sha: str | None, branch: str) -> str:
    """The full SHA to build. A manual run has none, so it pushes an empty commit to get a unique one, as the seed does."""
    if sha is not None:
        short_sha(sha)  # refuse a malformed SHA before touching anything
    mirror = app_mirror(config)
    mirror.fetch()
    if sha is None:
        return mirror.commit_empty(branch, BUILD_COMMIT_MESSAGE.format(branch=branch))
    if not mirror.is_ancestor(sha, f"refs/remotes/origin/{branch}"):
        raise InputError(
            f"commit {sha} is not on branch {branch} of {mirror.display_url}",
            "push it first, or pass the branch it is on with --branch",
        )
    return mirror.resolve(sha)


@task(name="export-source", **TRANSIENT_RETRIES)
def export_source(config: PromoConfig, commit: str, workdir: Path) -> Path:
    app_mirror(config).export_tree(commit, workdir)
    return workdir
