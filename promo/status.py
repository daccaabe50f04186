"""`promo status`: what each environment runs, read from the GitOps repo and the registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from promo.clients import chart_repository, gitops_repo, open_registry
from promo.config import PromoConfig
from promo.errors import NotFound
from promo.gitops import describe_clusters
from promo.helm_oci import chart_config, chart_tag


@dataclass(frozen=True)
class EnvironmentStatus:
    """``version`` is the one version every cluster runs: None when nothing runs yet, or when the clusters disagree
    (``cluster_versions`` then says who runs what, and the image and chart are left out as ambiguous)."""

    environment: str
    clusters: tuple[str, ...]
    cluster_versions: Mapping[str, str]
    version: str | None
    image_tag: str | None
    chart_digest: str | None

    @property
    def clusters_disagree(self) -> bool:
        return len(set(self.cluster_versions.values())) > 1

    def version_text(self) -> str:
        """The version column: ``-`` for nothing yet, or each cluster's version, flagged, when they disagree."""
        if self.clusters_disagree:
            return f"{describe_clusters(self.cluster_versions)} (clusters disagree)"
        return self.version or "-"


def environment_status(config: PromoConfig) -> list[EnvironmentStatus]:
    gitops = gitops_repo(config)
    snapshot = gitops.snapshot()  # one fetch, and every environment read from the same commit
    rows = []
    with open_registry(config, chart_repository(config)) as (registry, repository):
        for env in config.environments:
            try:
                versions = gitops.cluster_versions(config.app, env.name, env.clusters, snapshot=snapshot)
            except NotFound:  # an environment the app has no manifests in yet shows as "-"
                versions = {}
            agreed = set(versions.values())
            version = (agreed.pop() or None) if len(agreed) == 1 else None  # "" is nothing deployed yet
            digest = app_version = None
            if version:
                digest = registry.manifest_digest(repository, chart_tag(version))
            if digest:
                app_version = chart_config(registry, repository, digest).get("appVersion")
            rows.append(EnvironmentStatus(env.name, tuple(env.clusters), versions, version, app_version, digest))
    return rows
