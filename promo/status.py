"""`promo status`: what each environment runs, read from the GitOps repo and the registry."""

from __future__ import annotations

from dataclasses import dataclass

from promo.clients import chart_repository, gitops_repo, open_registry
from promo.config import PromoConfig
from promo.errors import NotFound
from promo.helm_oci import chart_config, chart_tag


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    clusters: tuple[str, ...]
    version: str | None
    image_tag: str | None
    chart_digest: str | None


def environment_status(config: PromoConfig) -> list[EnvironmentStatus]:
    gitops = gitops_repo(config)
    snapshot = gitops.snapshot()  # one fetch, and every environment read from the same commit
    rows = []
    with open_registry(config, chart_repository(config)) as (registry, repository):
        for env in config.environments:
            try:
                version = gitops.environment_version(config.app, env.name, env.clusters, snapshot=snapshot)
            except NotFound:
                version = None
            digest = app_version = None
            if version:
                digest = registry.manifest_digest(repository, chart_tag(version))
            if digest:
                app_version = chart_config(registry, repository, digest).get("appVersion")
            rows.append(EnvironmentStatus(env.name, tuple(env.clusters), version, app_version, digest))
    return rows
