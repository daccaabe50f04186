"""The app repository: the commit a build starts from and its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task

from promo.gitops.app_repo import chart_yaml_path, read_chart_yaml
from promo.clients import app_mirror
from promo.config import PromoConfig
from promo.errors import ChartError, InputError
from promo.gitops.mirror import Mirror, check_branch_name
from promo.versions import parse_base_version, short_sha
from promo.tasks.retry import TRANSIENT_RETRIES

BUILD_COMMIT_MESSAGE = "build: publish-dev on {branch} (manual run)"


@dataclass(frozen=True)
class BuildRequest:
    """What publish-dev builds: a given commit, or (a manual run) a new build commit on top of ``branch``."""

    sha: str | None
    branch: str

    @classmethod
    def checked(cls, sha: str | None, branch: str) -> BuildRequest:
        """Refuse a malformed SHA or branch before any git call sees it."""
        check_branch_name(branch)
        if sha is not None:
            short_sha(sha)
            sha = sha.strip().lower()
        return cls(sha, branch)

    @property
    def ref(self) -> str:
        return self.sha or self.branch


@task(name="read-chart-base-version", **TRANSIENT_RETRIES)
def read_chart_base_version(config: PromoConfig, request: BuildRequest) -> str:
    """Chart.yaml's version where the build starts, checked before anything is built or pushed (a build commit too)."""
    mirror = app_mirror(config)
    mirror.fetch()
    metadata = read_chart_yaml(mirror, _source_ref(mirror, request), config.chart.path)
    path = chart_yaml_path(config.chart.path)
    if metadata["name"] != config.chart_name:
        raise ChartError(
            f"{path} names the chart {metadata['name']!r}, promo.yaml expects {config.chart_name!r}",
            "set chart.name in promo.yaml, or rename the chart",
        )
    return str(parse_base_version(str(metadata["version"]), what=f"{path} version"))


@task(name="resolve-build-commit", **TRANSIENT_RETRIES)
def resolve_build_commit(config: PromoConfig, request: BuildRequest) -> str:
    """The full SHA to build. A manual run has none, so it pushes an empty commit to get a unique one, as the seed does."""
    mirror = app_mirror(config)
    mirror.fetch()
    if request.sha is None:
        return mirror.commit_empty(request.branch, BUILD_COMMIT_MESSAGE.format(branch=request.branch))
    return mirror.resolve(_source_ref(mirror, request))


def _source_ref(mirror: Mirror, request: BuildRequest) -> str:
    if request.sha is not None and not mirror.is_ancestor(request.sha, request.branch):
        raise InputError(
            f"commit {request.sha} is not on branch {request.branch} of {mirror.display_url}",
            "push it first, or pass the branch it is on with --branch",
        )
    return request.ref


@task(name="export-source", **TRANSIENT_RETRIES)
def export_source(config: PromoConfig, commit: str, workdir: Path) -> Path:
    """The build context: exactly the tree of ``commit`` in the empty ``workdir`` (see ``Mirror.export_tree``)."""
    app_mirror(config).export_tree(commit, workdir)
    return workdir


@task(name="read-commit-time", **TRANSIENT_RETRIES)
def read_commit_time(config: PromoConfig, commit: str) -> int:
    """When ``commit`` was committed (epoch seconds): the time every build of it is stamped with, so builds match."""
    return app_mirror(config).commit_time(commit)
