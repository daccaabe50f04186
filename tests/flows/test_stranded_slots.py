"""A writer killed inside the GitOps lock, the server still up: the next writer gives its slot back, through the
server's lease, exactly once. The restart cases are in tests/integration/test_stranded_slots.py."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import httpx
import pytest
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from promo.tasks import slot_holders
from promo.tasks.limits import ensure_limits, gitops_limit_name, gitops_lock
from promo.tasks.slot_holders import BEAT_SECONDS, CHECK_SECONDS, LEASE_SECONDS, STALE_SECONDS, StrandedSlotWatch
from tests.fixtures.slot_holder import held_slots, hold, kill

FREED_WITHIN = 90.0
# The killed holder's lease ends LEASE_SECONDS after it was taken, and the server's repossessor looks every 15 s: a
# slot given back twice (once by the waiter, once by the server) would show as a free slot while the waiter holds it.
REPOSSESSED_BY = LEASE_SECONDS + 15 + 10


@pytest.mark.slow  # a real killed holder waits out the server's shortest lease
def test_a_killed_writer_s_slot_is_given_back_once_and_the_next_writer_holds_it_alone(tmp_path: Path) -> None:
    url = (tmp_path / "gitops.git").as_uri()
    name = gitops_limit_name(url)
    ensure_limits([name])
    holder = hold(PREFECT_API_URL.value(), tmp_path / "holder-home", "gitops", url)
    killed = time.monotonic()
    kill(holder)

    with gitops_lock(url, create_missing=False):
        assert time.monotonic() - killed < FREED_WITHIN
        while time.monotonic() - killed < REPOSSESSED_BY:  # hold past the dead lease's end: still one held slot
            assert held_slots(name) == 1
            time.sleep(1)
    assert held_slots(name) == 0


# The waiter's rule, against a stand-in for the server's few calls it makes, on a clock the test moves.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """The record (a Prefect variable) and the lease, as the waiter sees them; every call that changes something."""

    def __init__(self, lease_alive: bool, recorded: bool = True) -> None:
        self.lease_alive = lease_alive
        self.record = {"lease": str(uuid4()), "host": "elsewhere", "pid": 7, "flow_run": None, "beat": 0}
        self.recorded = recorded
        self.changes: list[str] = []

    def beat(self) -> None:
        self.record = {**self.record, "beat": self.record["beat"] + 1}

    def read_variable_by_name(self, name: str):
        return SimpleNamespace(value=self.record, updated=str(self.record["beat"])) if self.recorded else None

    def renew_concurrency_lease(self, lease, lease_duration: float) -> None:
        if not self.lease_alive:
            request = httpx.Request("POST", "http://server/renew")
            raise httpx.HTTPStatusError("gone", request=request, response=httpx.Response(410, request=request))

    def release_concurrency_slots_with_lease(self, lease) -> None:
        self.changes.append("lease ended")

    def delete_variable_by_name(self, name: str) -> None:
        if not self.recorded:
            raise ObjectNotFound(http_exc=Exception())
        self.recorded = False
        self.changes.append("record claimed")

    def request(self, method: str, path: str, json: dict) -> None:
        self.changes.append(f"{path} {json}")


def refusals(watch: StrandedSlotWatch, server: Server, clock: Clock, seconds: float, beating: bool = False) -> bool:
    """Refuse the waiter every second for ``seconds``; True as soon as it says it gave a slot back."""
    for _ in range(int(seconds)):
        clock.now += 1
        if beating and int(clock.now) % int(BEAT_SECONDS) == 0:
            server.beat()
        if watch.after_refusal(server):
            return True
    return False


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(slot_holders.time, "monotonic", clock)
    return clock


@pytest.mark.parametrize("lease_alive", [True, False])
def test_a_holder_that_keeps_beating_is_never_given_back_whatever_the_server_lost(clock, lease_alive):
    server = Server(lease_alive)
    assert not refusals(StrandedSlotWatch("promo-a-dev"), server, clock, 10 * STALE_SECONDS, beating=True)
    assert server.changes == []


def test_a_silent_holder_whose_lease_the_server_still_has_is_ended_through_the_lease(clock):
    server = Server(lease_alive=True)
    watch = StrandedSlotWatch("promo-a-dev")
    assert refusals(watch, server, clock, STALE_SECONDS + 2 * CHECK_SECONDS)
    assert server.changes == ["record claimed", "lease ended"]  # the count goes down with the lease, never twice


def test_a_silent_holder_whose_lease_a_restart_lost_is_given_back_once_among_many_waiters(clock):
    server = Server(lease_alive=False)
    waiters = [StrandedSlotWatch("promo-a-dev") for _ in range(3)]
    for watch in waiters:
        watch.after_refusal(server)  # all of them saw the same record
    clock.now += STALE_SECONDS + CHECK_SECONDS
    given_back = [watch.after_refusal(server) for watch in waiters]
    assert given_back == [True, False, False]
    decrement = "/v2/concurrency_limits/decrement {'names': ['promo-a-dev'], 'slots': 1}"
    assert server.changes == ["record claimed", decrement]  # one slot given back, by the waiter whose claim held
    assert "no promo run is recorded" in waiters[1].describe()


def test_a_slot_nobody_recorded_is_left_for_a_person(clock):
    server = Server(lease_alive=False, recorded=False)
    watch = StrandedSlotWatch("promo-a-dev")
    assert not refusals(watch, server, clock, 10 * STALE_SECONDS)
    assert server.changes == []
    assert watch.describe() == "no promo run is recorded as its holder"
