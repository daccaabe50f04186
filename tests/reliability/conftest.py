"""Reliability suites: the sandbox world and helpers of tests/flows, and one Prefect test server per session.

``prefect_server`` is not re-exported as is: in a full run tests/flows has already started its session harness,
and a second one would cost ~10 s more, so this one reuses a harness that is already serving and starts its own
only when the reliability suites run alone. It also turns flow-run heartbeats off (see ``without_heartbeats``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from prefect.testing.utilities import prefect_test_harness

from tests.flows.conftest import background, without_heartbeats  # noqa: F401  (fixtures, re-exported)


def harness_running() -> bool:
    """True while a ``prefect_test_harness`` serves this process (its database is its temporary prefect-test.db)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL

    database = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value() or "")
    return bool(PREFECT_API_URL.value()) and database.endswith("/prefect-test.db")


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with ExitStack() as stack:
        if not harness_running():
            stack.enter_context(prefect_test_harness(server_startup_timeout=60))
        stack.enter_context(without_heartbeats())
        yield


def fast_task_retries(monkeypatch: pytest.MonkeyPatch, delay: float = 0.01) -> None:
    """Every promo task keeps its retry policy (count and condition), with ``delay`` seconds between attempts."""
    import importlib
    import pkgutil

    from prefect import Task

    import promo.tasks

    for info in pkgutil.iter_modules(promo.tasks.__path__):
        module = importlib.import_module(f"promo.tasks.{info.name}")
        for value in vars(module).values():
            if isinstance(value, Task) and value.retries:
                monkeypatch.setattr(value, "retry_delay_seconds", [delay] * value.retries)
                monkeypatch.setattr(value, "retry_jitter_factor", None)


@pytest.fixture()
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_task_retries(monkeypatch)
