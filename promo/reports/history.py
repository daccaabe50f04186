"""The configured app's history, read from its GitOps repository: what `promo history`, trace and metrics read."""

from __future__ import annotations

from promo.clients import gitops_repo
from promo.config import PromoConfig
from promo.gitops.history import Change, read_history


def app_history(config: PromoConfig, env: str | None = None) -> list[Change]:
    """Every change of the configured app (in ``env`` only, when given), newest first, from a fresh fetch."""
    name = config.environment(env).name if env is not None else None
    gitops = gitops_repo(config)
    gitops.mirror.fetch()
    clusters = {settings.name: settings.clusters for settings in config.environments}
    return read_history(gitops.mirror, gitops.branch, config.app, clusters, root=gitops.root, env=name)
