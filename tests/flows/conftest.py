"""Flows run against a real temporary Prefect server and a real sandbox world (registry, bare remotes)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prefect.testing.utilities import prefect_test_harness

from promo.flows.background import GatedRun


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """Flow runs without the heartbeat thread: each flow run otherwise waits up to 1 s at its end for that thread
    to wake up and stop (heartbeats only let a server notice crashed runs; nothing here needs them)."""
    from prefect.context import SettingsContext, get_settings_context

    current = get_settings_context()
    flows = current.settings.flows.model_copy(update={"heartbeat_frequency": None})
    with SettingsContext(profile=current.profile, settings=current.settings.model_copy(update={"flows": flows})):
        yield


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no telemetry calls from a machine with no internet
    with prefect_test_harness(server_startup_timeout=60), without_heartbeats():
        yield



@pytest.fixture()
def background() -> type[GatedRun]:
    return GatedRun
