"""GatedRun hands out its own run's gate, never one that was already waiting when it started."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone

import promo.flows.background as background
from promo.release.gates import WaitingGate


def _gate(env: str) -> WaitingGate:
    return WaitingGate(uuid.uuid4(), "run", "promote-test", "hello", env, "1.0.0-rc.abc1234", datetime.now(timezone.utc), "")


def test_a_gate_waiting_before_the_run_started_is_never_handed_out(monkeypatch):
    stale, own = _gate("test"), _gate("test")
    opened = threading.Event()
    monkeypatch.setattr(
        background, "waiting_gates", lambda env=None, api=None: [stale, own] if opened.is_set() else [stale]
    )
    monkeypatch.setattr(background, "form_saved", lambda api, gate: True)  # these gates are no runs on the server

    run = background.GatedRun(lambda: opened.set() or "done")

    assert run.gate("test", timeout=30) == own
    assert run.join(timeout=30) == "done"
