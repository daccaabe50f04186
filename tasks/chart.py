"""Helm charts: package the RC, push it, and find what the registry holds."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from promo.registry.charts import ChartPackage, package_chart
from promo.clients import chart_repository, open_registry
from promo.config import PromoConfig
from promo.errors import NotFound
from promo.registry.helm import PushedChart, chart_tag, existing_chart, push_chart
from promo.versions import rc_version, short_sha
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="check-registry-access", **TRANSIENT_RETRIES)
def check_registry_access(config: PromoConfig) -> None:
    """Both repositories publish-dev pushes to accept our credentials, checked before the build commit."""
    for repository in (config.image.repository, chart_repository(config)):
        with open_registry(config, repository) as (registry, path):
            registry.check_push_access(path)


@task(name="package-rc-chart")
def package_rc_chart(config: PromoConfig, source: Path, base: str, commit: str) -> ChartPackage:
    """``helm package --version {base}-rc.{sha} --app-version {sha}``."""
    return package_chart(source / config.chart.path, version=rc_version(base, commit), app_version=short_sha(commit))


@task(name="push-chart", **TRANSIENT_RETRIES)
def push_rc_chart(config: PromoConfig, chart: ChartPackage) -> PushedChart:
    """Push the RC chart, unless the registry holds that version already: then that one stays and is used."""
    with open_registry(config, chart_repository(config)) as (registry, repository):
        existing = existing_chart(registry, repository, chart.version)
        if existing is None:
            return push_chart(registry, repository, chart)
    get_run_logger().info(
        "Chart %s %s exists already as %s: reused, not pushed again", chart.name, chart.version, existing.digest
    )
    return existing


@task(name="lookup-chart", **TRANSIENT_RETRIES)
def lookup_chart(config: PromoConfig, version: str) -> str | None:
    """The digest of chart ``version`` in the registry, or None."""
    with open_registry(config, chart_repository(config)) as (registry, repository):
        return registry.manifest_digest(repository, chart_tag(version))


@task(name="find-chart", **TRANSIENT_RETRIES)
def find_chart(config: PromoConfig, version: str) -> str:
    """The digest of chart ``version``: it must exist before anything is promoted."""
    digest = lookup_chart.fn(config, version)
    if digest is None:
        raise NotFound(
            f"chart {config.chart_name} {version} is not in {chart_repository(config)}",
            "publish it again with `promo publish-dev`, or check chart.repository in promo.yaml",
        )
    return digest
