"""What a flow knows about its own run, for commit trailers and artifacts."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run


def flow_run_label() -> str:
    """``<name> <id>``: enough to find the run in the UI from a GitOps commit."""
    return f"{flow_run.get_flow_name()}/{flow_run.get_name()} {flow_run.get_id()}"


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger; promo's own when a flow's function is called outside a run (``flow.fn``, as the flows
    bench does to measure the code without Prefect), where ``get_run_logger`` raises."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("promo")
