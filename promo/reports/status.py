"""`promo status`: what each environment runs, read from the GitOps repo and the registry, with its verdict and soak."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

from promo.clients import chart_repository, gitops_repo, open_registry
from promo.config import PromoConfig
from promo.errors import NotFound
from promo.gitops.repo import agreed_version, describe_clusters
from promo.registry.helm import chart_config, chart_tag
from promo.gitops.history import read_history
from promo import windows
from promo.reports.controls import operator_controls
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
    # verified, failed, deployed (promo wrote it; nothing checks this environment), untrusted (a record promo cannot
    # prove it wrote: never shown as verified or failed), or "-" (no record, or nothing runs)
    verdict: str = "-"
    soaked: int | None = None  # seconds since it was verified (or deployed, where nobody verifies); None: not soaking
    window_closed: str | None = None  # outside its change windows: when the next opens; None: open, or none set
    frozen: str | None = None  # who froze it, until when and why; None: not frozen
    rejected: str | None = None  # the version it runs was rejected: by whom and why
    # records promo cannot prove it wrote, of this environment's freeze or of the version it runs: shown, never counted
    ignored: tuple[str, ...] = ()

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
    controls = operator_controls(config)
    versions: dict[str, Mapping[str, str]] = {}
    for env in config.environments:
        try:
            versions[env.name] = gitops.cluster_versions(config.app, env.name, env.clusters, snapshot=snapshot)
        except NotFound:  # an environment the app has no manifests in yet shows as "-"
            versions[env.name] = {}
    agreed = {name: agreed_version(found) for name, found in versions.items()}
    charts = _charts(config, sorted({version for version in agreed.values() if version}))
    rows = []
    for env in config.environments:
        version = agreed[env.name]
        digest, app_version = charts.get(version, (None, None)) if version else (None, None)
        change = deployed_by(history, env.name, version) if version else None
        since = soaking_since(change, env) if change is not None else None
        rows.append(
            EnvironmentStatus(
                env.name,
                tuple(env.clusters),
                versions[env.name],
                version,
                app_version,
                digest,
                verdict=change.outcome if change is not None else "-",
                soaked=soaked_seconds(since, now) if since is not None else None,
                window_closed=_window_closed(env.windows),
                frozen=controls.frozen(env.name),
                rejected=controls.rejected(version),
                ignored=controls.untrusted_lines(env.name, version),
            )
        )
    return rows


def _window_closed(hours: list[str]) -> str | None:
    opening = windows.closed_until(hours, windows.utc_now())
    if opening is None:
        return None
    return f"outside its change windows, the next opens {windows.describe_opening(opening)}"


def _charts(config: PromoConfig, versions: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """version -> (chart digest, the chart's appVersion), each version asked once and all at the same time: a
    registry round trip or three per version, which a command waiting on them one by one would add up. No version
    deployed anywhere: no registry client at all."""
    if not versions:
        return {}
    with open_registry(config, chart_repository(config)) as (registry, repository):

        def chart(version: str) -> tuple[str | None, str | None]:
            digest = registry.manifest_digest(repository, chart_tag(version))
            return digest, (chart_config(registry, repository, digest).get("appVersion") if digest else None)

        with ThreadPoolExecutor(max_workers=len(versions)) as pool:
            return dict(zip(versions, pool.map(chart, versions)))
