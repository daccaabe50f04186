"""A gated flow run in a thread, so the caller can act at its gate: the demo approves it, tests and benches too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from promo.release.gates import WaitingGate, waiting_gates
from promo.errors import ToolError

Result = TypeVar("Result")


class GatedRun(Generic[Result]):
    """``start`` runs in a thread; ``gate(env)`` waits for its gate to open, ``join()`` re-raises what it raised."""

    def __init__(self, start: Callable[[], Result]) -> None:
        self.result: Result | None = None
        self.error: BaseException | None = None
        # Gates already waiting belong to other runs (a failed test's, an earlier demo's): ``gate`` never hands
        # one of those out, so one stuck run cannot make every later caller approve the wrong flow.
        self._earlier = {gate.flow_run_id for gate in waiting_gates()}

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
            gates = [gate for gate in waiting_gates(env=env) if gate.flow_run_id not in self._earlier]
            if gates:
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
