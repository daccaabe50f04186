"""Flows run against a real temporary Prefect server and a real sandbox world (registry, bare remotes)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.gate import WaitingGate, waiting_gates
from promo.sandbox import Sandbox, create_sandbox, stop_sandbox


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
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    made = create_sandbox(tmp_path / "world")
    try:
        yield made
    finally:
        stop_sandbox(made.directory)


class Background:
    """A flow started in a thread, so the test can act at its gate; join() re-raises what it raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = call()
            except BaseException as error:
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def gate(self, env: str, timeout: float = 60) -> WaitingGate:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            gates = waiting_gates(env=env)
            if gates:
                return gates[0]
            if not self.thread.is_alive():
                raise AssertionError(f"the flow ended before its gate opened: {self.error!r}")
            time.sleep(0.1)
        raise AssertionError(f"no gate into {env} opened within {timeout} s")

    def join(self, timeout: float = 60) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow did not finish"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture()
def background() -> type[Background]:
    return Background
