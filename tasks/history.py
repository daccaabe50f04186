"""An environment's history (the GitOps log) with the verdict of each change: what readiness and rollbacks read."""

from __future__ import annotations

from prefect import task

from promo.config import PromoConfig
from promo.gitops.history import Change
from promo.reports.history import app_history
from promo.tasks.retry import TRANSIENT_RETRIES


@task(name="read-environment-history", **TRANSIENT_RETRIES)
def read_environment_history(config: PromoConfig, env: str) -> list[Change]:
    """Every change of the app in ``env``, newest first, with its verdict, from a fresh fetch."""
    return app_history(config, env)
