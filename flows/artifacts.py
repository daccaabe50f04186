"""The artifact every change refreshes: one table per app, keyed ``environments-<app>``, with what runs where."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from promo.config import PromoConfig
from promo.errors import PromoError
from promo.reports.status import environment_status
from promo.tasks.retry import TRANSIENT_RETRIES


def publish_environment_table(config: PromoConfig) -> None:
    """Refresh the table; it runs after the run's change has landed, so it never fails that run: what could not be
    read (once transient faults are retried) is a warning, and the table keeps its previous contents."""
    try:
        write_environment_table(config)
    except PromoError as error:
        get_run_logger().warning("The environments table of %s was not refreshed: %s", config.app, error)


@task(name="publish-environment-table", **TRANSIENT_RETRIES)
def write_environment_table(config: PromoConfig) -> None:
    rows = [
        {
            "environment": row.environment,
            "clusters": ", ".join(row.clusters),
            "version": row.version_text(),
            "image tag": row.image_tag or "-",
            "chart digest": row.chart_digest or "-",
        }
        for row in environment_status(config)
    ]
    create_table_artifact(
        key=f"environments-{config.app}", table=rows, description=f"What {config.app} runs in each environment"
    )
