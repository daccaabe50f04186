"""release-prod's steps. Each one first looks whether it is already done, so a re-run after any failure
finishes the release exactly once: one release chart, one tag, one bump, one next build."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task

from promo.gitops.app_repo import ChartVersionChange
from promo.registry.charts import ChartPackage, read_chart, retag_chart, retag_differences
from promo.clients import app_mirror, chart_repository, open_registry
from promo.config import PromoConfig
from promo.errors import ChartError, ConflictError
from promo.registry.helm import PushedChart, chart_tag, existing_chart, pull_chart, push_chart
from promo.registry.oci import Registry
from promo.release.candidate import ReleaseCandidate, bump_subject, next_main_version
from promo.versions import bump
from promo.tasks.app_repo import change_main_chart_version
from promo.tasks.retry import TRANSIENT_RETRIES


@dataclass(frozen=True)
class ReleaseChart:
    """The RC's package re-tagged as the release, and whether the registry already holds exactly it."""

    rc_data: bytes
    package: ChartPackage
    already_published: bool


@task(name="resolve-release-commit", **TRANSIENT_RETRIES)
def resolve_release_commit(config: PromoConfig, candidate: ReleaseCandidate) -> str:
    """The full SHA the RC was built from: the release tag goes there, not at main's head."""
    mirror = app_mirror(config)
    mirror.fetch()
    return mirror.resolve(candidate.short_sha)


@task(name="prepare-release-chart", **TRANSIENT_RETRIES)
def prepare_release_chart(config: PromoConfig, candidate: ReleaseCandidate, rc_digest: str) -> ReleaseChart:
    """Pull the exact RC stage runs (by digest) and re-tag it; refuse if the release exists with other content."""
    with open_registry(config, chart_repository(config)) as (registry, repository):
        rc_data = pull_chart(registry, repository, rc_digest)
        if read_chart(rc_data).version != candidate.rc:
            raise ChartError(
                f"the chart at {rc_digest} is not {candidate.rc}",
                f"check that the registry tag {chart_tag(candidate.rc)} was not overwritten",
            )
        package = retag_chart(rc_data, candidate.version)
        published = _published_release(registry, repository, package)
    return ReleaseChart(rc_data, package, already_published=published is not None)


@task(name="publish-release-chart", **TRANSIENT_RETRIES)
def publish_release_chart(config: PromoConfig, release: ReleaseChart) -> PushedChart:
    """Push the release chart unless it is there already, then pull it back: its files must be the RC's but the
    version. Run under the app's release lock: the check after the gate and the push are then one step, and a
    release another run published while this one waited at its gate is never replaced."""
    with open_registry(config, chart_repository(config)) as (registry, repository):
        pushed = _published_release(registry, repository, release.package)
        if pushed is None:
            pushed = push_chart(registry, repository, release.package)
        pulled = pull_chart(registry, repository, pushed.digest)
    problems = retag_differences(release.rc_data, pulled, release.package.version)
    if problems:
        raise ChartError(
            f"the release chart {pushed.tag} differs from its RC beyond the version: {', '.join(problems)}",
            "delete that tag from the registry and run release-prod again",
        )
    return pushed


def _published_release(registry: Registry, repository: str, package: ChartPackage) -> PushedChart | None:
    """The release chart the registry holds already when it is this package, None when there is none; a release
    with other content is a ConflictError (a published release never changes)."""
    existing = existing_chart(registry, repository, package.version)
    if existing is None:
        return None
    layer = registry.pull_manifest(repository, existing.digest).json()["layers"][0]["digest"]
    if layer != package.digest:
        raise ConflictError(
            f"chart {package.name} {package.version} is already released with other content ({existing.digest})",
            f"release a new version: bump Chart.yaml past {package.version} and build a new RC",
        )
    return existing


@task(name="bump-main", **TRANSIENT_RETRIES)
def bump_main(config: PromoConfig, released: str) -> ChartVersionChange:
    """Main moves to the next patch only while it is not already past the release (re-runs and hotfixes)."""
    return change_main_chart_version(
        config, lambda current: next_main_version(current, released), bump_subject(released, bump(released, "patch"))
    )


@task(name="find-next-build-commit", **TRANSIENT_RETRIES)
def find_next_build_commit(config: PromoConfig, released: str, release_commit: str) -> str | None:
    """The bump commit this release made on main, found by its subject even when an earlier run made it."""
    mirror = app_mirror(config)
    mirror.fetch()
    subject = bump_subject(released, bump(released, "patch"))
    matches = [entry.sha for entry in mirror.log(release_commit, config.app_repo.branch) if entry.subject == subject]
    return matches[-1] if matches else None
