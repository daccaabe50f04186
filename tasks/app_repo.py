"""Changes to the app repository's chart version."""

from __future__ import annotations

from collections.abc import Callable

from prefect import task

from promo.gitops.app_repo import ChartVersionChange, change_chart_version
from promo.clients import app_mirror
from promo.config import PromoConfig
from promo.versions import BumpPart, bump
from promo.tasks.retry import TRANSIENT_RETRIES


def change_main_chart_version(
    config: PromoConfig, next_version: Callable[[str], str | None], subject: str
) -> ChartVersionChange:
    """Chart.yaml's version on the app repository's main branch, computed from what main holds at push time."""
    return change_chart_version(app_mirror(config), config.app_repo.branch, config.chart.path, next_version, subject)


@task(name="bump-chart-version", **TRANSIENT_RETRIES)
def bump_chart_version(config: PromoConfig, part: BumpPart) -> ChartVersionChange:
    return change_main_chart_version(config, lambda current: bump(current, part), f"chore: bump chart version ({part})")
