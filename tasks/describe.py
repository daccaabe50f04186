"""What an approver is shown: the image a version runs, the commits it brings over the target's version, and whether
it replaces a newer build there."""

from __future__ import annotations

from collections.abc import Collection

from prefect import task

from promo.release.changes import ChangeDescription, commits_between
from promo.release.moving_back import moving_back
from promo.clients import app_mirror, chart_repository, gitops_repo, open_registry
from promo.config import PromoConfig
from promo.errors import ConflictError, NotFound
from promo.registry.helm import chart_config
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="describe-change", **TRANSIENT_RETRIES)
def describe_change(
    config: PromoConfig,
    target: str,
    version: str,
    chart_digest: str,
    *,
    built_as: str | None = None,
    replaces: Collection[str] = (),
) -> ChangeDescription:
    """``version`` is what the target gets, ``built_as`` the chart version its commits are counted from when that
    differs (a release, shown with its RC's commits); ``replaces`` is what the target's clusters run now, which
    ``version`` may go back from. Nothing is said to go back when ``replaces`` is empty: a rollback, which does."""
    try:
        running = gitops_repo(config).environment_version(config.app, target, config.environment(target).clusters)
    except (NotFound, ConflictError):  # nothing yet, or clusters that disagree: no one version to count from
        running = None
    with open_registry(config, chart_repository(config)) as (registry, repository):
        tag = chart_config(registry, repository, chart_digest).get("appVersion")
    with open_registry(config, config.image.repository) as (registry, repository):
        digest = registry.manifest_digest(repository, tag) if tag else None
    image = f"{config.image.repository}:{tag}" + (f"@{digest}" if digest else "") if tag else None
    mirror = app_mirror(config)
    mirror.fetch()
    return ChangeDescription(
        image=image,
        commits=commits_between(mirror, running, built_as or version),
        since=running,
        moves_back=moving_back(mirror, replaces, version),
    )
