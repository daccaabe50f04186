"""A gated flow run in a thread, so the caller can act at its gate: the demo approves it, tests and benches too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from promo.errors import NotFound, ToolError
from promo.flows.gate import prefect_api
from promo.release.gates import PrefectApi, WaitingGate, waiting_gates

Result = TypeVar("Result")


class GatedRun(Generic[Result]):
    """``start`` runs in a thread; ``gate(env)`` waits for its gate to open, ``join()`` re-raises what it raised."""

    def __init__(self, start: Callable[[], Result]) -> None:
        self.result: Result | None = None
        self.error: BaseException | None = None
        # Gates already waiting belong to other runs (a failed test's, an earlier demo's): ``gate`` never hands
        # one of those out, so one stuck run cannot make every later caller approve the wrong flow.
        self.api = prefect_api()
        self._earlier = {gate.flow_run_id for gate in waiting_gates(api=self.api)}

        def run() -> None:
            try:
                self.result = start()
            except BaseException as error:  # handed to the caller by join()
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def gate(self, env: str, timeout: float = 120) -> WaitingGate:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            gates = [gate for gate in waiting_gates(env=env, api=self.api) if gate.flow_run_id not in self._earlier]
            if gates and form_saved(self.api, gates[0]):
                return gates[0]
            if not self.thread.is_alive():
                raise ToolError(f"the flow ended before its gate into {env} opened: {self.error!r}", "read its logs")
            time.sleep(0.05)
        raise ToolError(f"no gate into {env} opened within {timeout} s", "run `promo pending` and read the run's logs")

    def join(self, timeout: float = 120) -> Result:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise ToolError(f"the flow did not finish within {timeout} s", "read the flow run's logs")
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def form_saved(api: PrefectApi, gate: WaitingGate) -> bool:
    """Prefect pauses a run first and saves the form it waits for just after: an answer in between is refused ("Run
    input schema not found"), so a gate is handed out once its form is there."""
    with api.client() as client:
        run = api.call(client, "GET", f"/flow_runs/{gate.flow_run_id}")
        keys = ((run.get("state") or {}).get("state_details") or {}).get("run_input_keyset") or {}
        try:
            api.call(client, "GET", f"/flow_runs/{gate.flow_run_id}/input/{keys.get('schema')}")
        except NotFound:
            return False
    return True
