"""`promo status`: what each environment runs, read from the GitOps repo and the registry, with its verdict and soak."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from promo.clients import chart_repository, gitops_repo, open_registry
from promo.config import PromoConfig
from promo.errors import NotFound
from promo.gitops.repo import describe_clusters
from promo.registry.helm import chart_config, chart_tag
from promo.gitops.history import read_history
from promo.release.readiness import deployed_by, format_age, soaked_seconds, soaking_since


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
    verdict: str = "-"  # verified, failed, or "-" (not verified, or nothing runs)
    soaked: int | None = None  # seconds since it was verified (or deployed, where nobody verifies); None: not soaking

    @property
    def clusters_disagree(self) -> bool:
        return len(set(self.cluster_versions.values())) > 1

    def version_text(self) -> str:
        """The version column: ``-`` for nothing yet, or each cluster's version, flagged, when they disagree."""
        if self.clusters_disagree:
            return f"{describe_clusters(self.cluster_versions)} (clusters disagree)"
        return self.version or "-"

    def soaked_text(self) -> str:
        return format_age(self.soaked) if self.soaked is not None else "-"


def environment_status(config: PromoConfig) -> list[EnvironmentStatus]:
    gitops = gitops_repo(config)
    snapshot = gitops.snapshot()  # one fetch, and every environment read from the same commit
    clusters = {env.name: env.clusters for env in config.environments}
    history = read_history(gitops.mirror, gitops.branch, config.app, clusters, root=gitops.root)
    now = datetime.now(timezone.utc)
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
            change = deployed_by(history, env.name, version) if version else None
            since = soaking_since(change, env) if change is not None else None
            rows.append(
                EnvironmentStatus(
                    env.name,
                    tuple(env.clusters),
                    versions,
                    version,
                    app_version,
                    digest,
                    verdict=change.outcome if change is not None else "-",
                    soaked=soaked_seconds(since, now) if since is not None else None,
                )
            )
    return rows
