"""The artifact every change refreshes: one table per app, keyed ``environments-<app>``, with what runs where."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_table_artifact

from promo.config import PromoConfig
from promo.status import environment_status
from tasks.retry import TRANSIENT_RETRIES


@task(name="publish-environment-table", **TRANSIENT_RETRIES)
def publish_environment_table(config: PromoConfig) -> None:
    rows = [
        {
            "environment": row.environment,
            "clusters": ", ".join(row.clusters),
            "version": row.version or "-",
            "image tag": row.image_tag or "-",
            "chart digest": row.chart_digest or "-",
        }
        for row in environment_status(config)
    ]
    create_table_artifact(
        key=f"environments-{config.app}", table=rows, description=f"What {config.app} runs in each environment"
    )
