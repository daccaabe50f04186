"""What a flow knows about its own run, for commit trailers and artifacts."""

from __future__ import annotations

from prefect.runtime import flow_run


def flow_run_label() -> str:
    """``<name> <id>``: enough to find the run in the UI from a GitOps commit."""
    return f"{flow_run.get_flow_name()}/{flow_run.get_name()} {flow_run.get_id()}"
