"""Changes to the app repository's chart version."""

from __future__ import annotations

from prefect import task

from promo.app_repo import ChartVersionChange, change_chart_version
from promo.clients import app_mirror
from promo.config import PromoConfig
from promo.versions import BumpPart, bump
from tasks.retry import TRANSIENT_RETRIES


@task(name="bump-chart-version", **TRANSIENT_RETRIES)
def bump_chart_version(config: PromoConfig, part: BumpPart) -> ChartVersionChange:
    return change_chart_version(
        app_mirror(config),
        config.app_repo.branch,
        config.chart.path,
        lambda current: bump(current, part),
        f"chore: bump chart version ({part})",
    )
