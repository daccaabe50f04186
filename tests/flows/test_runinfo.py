"""A flow's function called outside a run (``flow.fn``, as the flows bench does) still logs instead of raising."""

from __future__ import annotations

import logging

from prefect import flow

from promo.flows.runinfo import run_logger


def test_outside_a_run_the_logger_is_promos_own(caplog):
    with caplog.at_level(logging.WARNING, logger="promo"):
        run_logger().warning("Not ready: %s", "soaked 0 s of 1 h")
    assert "Not ready: soaked 0 s of 1 h" in caplog.text


def test_inside_a_run_it_is_the_runs_logger():
    @flow
    def logs() -> str:
        return type(run_logger()).__name__

    assert logs() != "Logger"  # Prefect's run logger is an adapter carrying the run's id
