"""Who holds the slot of one of promo's limits, kept where a server restart cannot lose it, and giving back a slot
that the server still counts although its holder is gone.

Why this exists: Prefect keeps a held slot in two places. The count (``active_slots``) is in the database; the lease
that would give it back when its holder dies lives in the server's lease storage, which by default is the server's
memory. A server restart (``promo server stop/start``, a crash, a server replaced after a failed health check) loses
the leases and keeps the count: the holder's release then finds no lease and gives nothing back, the server never
expires a lease it does not have, and a one-slot limit refuses everyone for good. Slot decay is no cure (it frees
held slots too, so the limit stops being a lock), and promo cannot choose the lease storage of a server it did not
start, so every holder also records itself in the database, and a waiter checks that record.

The record is the Prefect variable ``promo-holder-<limit>``: the lease, the host and pid, the flow run. A holder
writes it the moment the slot is granted and touches it every ``BEAT_SECONDS`` while it holds. Each limit has one
slot, so the record names the holder of the moment. A waiter that keeps being refused while the record stays
unchanged for ``STALE_SECONDS`` (six missed beats) knows no promo holder is alive in the slot, and asks the server
about the recorded lease:

- the server still has it: its holder died and the server has not yet noticed; the waiter ends the lease the way the
  server would at its expiry (the count goes down with the lease, exactly once);
- the server has no such lease (lost by a restart, or its holder ended while the server had lost it): the count is
  all that is left, and the waiter takes it down by one.

Deleting the record first is the claim: of several waiters only the one whose delete succeeds gives the slot back.

A live holder keeps its record moving, so its slot is never given back, whatever the server lost.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run

# The shortest lease the server accepts. Holders that renew (the environment lock) do so well within it.
LEASE_SECONDS = 60
BEAT_SECONDS = 5.0
# Six missed beats: a holder on a loaded machine is not taken for dead, and a dead one's slot is free well within
# 90 s of its death (this, plus the waiter's own poll).
STALE_SECONDS = 30.0
# A waiter looks at the record at most this often (one read), and asks for the slot at least this often.
CHECK_SECONDS = 5.0
GONE = (404, 410)  # what the server answers for a lease it does not have

logger = logging.getLogger("promo.locks")


def record_name(limit: str) -> str:
    return f"promo-holder-{limit}"


def holder_description() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "flow_run": flow_run.get_id()}


@contextmanager
def recorded_holder(limit: str, lease_id: UUID) -> Iterator[None]:
    """Record this process as the holder of ``limit``'s slot and keep the record moving while the block runs.

    The first write is done before the block starts, so a holder killed at once is on record. A record that cannot be
    written is not an error: the slot is held all the same, and the next beat writes it."""
    record: dict[str, Any] = {"lease": str(lease_id), **holder_description(), "beat": 0}
    stop = threading.Event()
    _write(record_name(limit), record)

    def beat() -> None:
        while not stop.wait(BEAT_SECONDS):
            record["beat"] += 1
            _write(record_name(limit), record)

    thread = threading.Thread(target=beat, daemon=True, name=f"promo-holder-{limit}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=BEAT_SECONDS)


def _write(name: str, value: dict[str, Any]) -> None:
    try:
        with get_client(sync_client=True) as client:  # its own each time: a server restart in between costs nothing
            try:
                client.update_variable(VariableUpdate(name=name, value=value))
            except httpx.HTTPStatusError as error:
                if error.response.status_code != 404:
                    raise
                client.create_variable(VariableCreate(name=name, value=value))
    except Exception as error:  # a failing API, a server going down: never the end of the beats, nor of the holder
        logger.debug("could not record the holder of %s: %s", name, error)


class StrandedSlotWatch:
    """Watch the holder record of a limit that keeps refusing a waiter; give the slot back once it is stranded."""

    def __init__(self, limit: str) -> None:
        self.limit = limit
        self._seen: object = object()  # nothing seen yet
        self._record: dict[str, Any] | None = None
        self._moved = time.monotonic()  # when the record last changed, as far as this waiter saw
        self._checked = self._tried = -math.inf

    def after_refusal(self, client: SyncPrefectClient) -> bool:
        """Call after each refusal. True when it gave a stranded slot back (ask again at once)."""
        now = time.monotonic()
        if now - self._checked < CHECK_SECONDS:
            return False
        self._checked = now
        try:
            variable = client.read_variable_by_name(record_name(self.limit))
            seen = (variable.value, variable.updated) if variable else None
            if seen != self._seen:
                self._seen, self._moved = seen, now
                self._record = variable.value if variable and isinstance(variable.value, dict) else None
                return False
            if self._record is None or now - max(self._moved, self._tried) < STALE_SECONDS:
                return False
            self._tried = now  # one try per quiet period
            return self._give_back(client, self._record)
        except (httpx.HTTPError, KeyError, ValueError) as error:
            # A failing API shows in the acquire itself; an unreadable record is left for a person (the message).
            logger.debug("could not check the holder of %s: %s", self.limit, error)
            return False

    def _give_back(self, client: SyncPrefectClient, record: dict[str, Any]) -> bool:
        lease = UUID(str(record["lease"]))
        try:
            client.delete_variable_by_name(record_name(self.limit))  # the claim: one waiter gives the slot back
        except ObjectNotFound:
            return False
        try:
            if self._server_has(client, lease):
                # Its holder stopped touching its record, so it is gone, and the server has not noticed yet: end the
                # lease as the server would at its expiry. The count goes down with the lease, exactly once.
                client.release_concurrency_slots_with_lease(lease)
            else:
                # The server counts the slot but has no lease for it (a restart lost the lease), and its holder is
                # gone: nothing else will ever give it back. No occupancy: Retry-After learns from real holds only.
                client.request("POST", "/v2/concurrency_limits/decrement", json={"names": [self.limit], "slots": 1})
        except BaseException:
            _write(record_name(self.limit), record)  # not given back: the next waiter may try again
            raise
        logger.warning("gave back the slot of %s, whose recorded holder is gone (%s)", self.limit, _who(record))
        return True

    @staticmethod
    def _server_has(client: SyncPrefectClient, lease: UUID) -> bool:
        """Whether the server has the lease. A renewal is the only question it answers about a lease."""
        try:
            client.renew_concurrency_lease(lease, lease_duration=LEASE_SECONDS)
        except httpx.HTTPStatusError as error:
            if error.response.status_code in GONE:
                return False
            raise
        return True

    def describe(self) -> str:
        """Who holds the slot, as far as promo knows: for the message a waiter gives up with."""
        if self._record is None:
            return "no promo run is recorded as its holder"
        quiet = time.monotonic() - self._moved
        return f"its recorded holder is {_who(self._record)}, whose record last moved {quiet:.0f} s ago"


def _who(record: dict[str, Any]) -> str:
    run = f", flow run {record['flow_run']}" if record.get("flow_run") else ""
    return f"pid {record.get('pid')} on {record.get('host')}{run}"
