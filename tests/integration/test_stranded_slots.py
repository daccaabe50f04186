"""A lock slot held while the Prefect server restarts: its holder killed, the next writer gets it within 90 s; its
holder alive, nobody else gets it.

Real parts: `promo server start` (a real `prefect server start` on a SQLite file under a temporary PROMO_HOME),
restarted on the same database and port with `promo server stop`/`start` in between; the slot is taken by
``gitops_lock`` (what every GitOps write takes) in a child process that holds it until told, or until it is killed
(tests/fixtures/slot_holder.py).
The server keeps its leases in memory here, as a server promo did not start may (Prefect's default): the restart
loses the lease and keeps the count. promo's own server keeps its leases on disk (the last test).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from promo.errors import ConflictError
from promo.tasks import limits, slot_holders
from promo.tasks.limits import (
    ensure_environment_limits,
    ensure_limits,
    environment_lock,
    gitops_limit_name,
    gitops_lock,
    limit_name,
)
from promo.local import prefect_server
from promo.local.prefect_server import PrefectServer, start_server, stop_server
from tests.fixtures.slot_holder import held_slots, hold, kill, release
from tests.integration.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FREED_WITHIN = 90.0  # the guarantee: a slot whose holder is gone is free again within 90 s
WAIT_SECONDS = limits.WAIT_SECONDS
MEMORY = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.memory"}


@dataclass
class Server:
    home: Path
    port: int
    process: PrefectServer

    @property
    def api_url(self) -> str:
        return self.process.api_url

    def restart(self) -> None:
        """`promo server stop`, then `promo server start` on the same database and port."""
        assert stop_server() == ["prefect server"]
        self.process = start_server(self.port).process
        assert self.process.port == self.port, "restarted on another port: the holder would not find it"


def serve(home: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> Iterator[Server]:
    monkeypatch.setenv("PROMO_HOME", str(home))
    monkeypatch.setattr(prefect_server, "SERVER_SETTINGS", settings)
    port = free_port()
    try:
        server = Server(home, port, start_server(port).process)
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server
    finally:
        stop_server()  # by the PID it recorded


@pytest.fixture()
def memory_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    yield from serve(tmp_path / "promo-home", monkeypatch, MEMORY)


@pytest.fixture()
def promo_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    yield from serve(tmp_path / "promo-home", monkeypatch, prefect_server.SERVER_SETTINGS)


@pytest.fixture()
def repository(tmp_path: Path, memory_server: Server) -> str:
    url = (tmp_path / "gitops.git").as_uri()
    ensure_limits([gitops_limit_name(url)])  # promo setup
    return url


def seconds_to_take(lock: AbstractContextManager[None], limit: str) -> float:
    started = time.monotonic()
    with lock:
        taken = time.monotonic() - started
        assert held_slots(limit) == 1
    return taken


def seconds_to_write(url: str) -> float:
    return seconds_to_take(gitops_lock(url, create_missing=False), gitops_limit_name(url))


def test_a_slot_held_across_a_restart_by_a_killed_writer_is_free_again_within_90_s(
    memory_server: Server, repository: str, tmp_path: Path
) -> None:
    name = gitops_limit_name(repository)
    holder = hold(memory_server.api_url, tmp_path / "holder-home", "gitops", repository)
    try:
        memory_server.restart()
        assert held_slots(name) == 1  # the count survived the restart; the lease behind it did not
    finally:
        kill(holder)

    assert seconds_to_write(repository) < FREED_WITHIN
    assert held_slots(name) == 0  # given back once, not twice: the count is exact again
    assert seconds_to_write(repository) < 5  # and the lock works as before


def test_an_environment_slot_held_across_a_restart_by_a_killed_run_is_free_again_within_90_s(
    memory_server: Server, tmp_path: Path
) -> None:
    ensure_environment_limits("restarted", ["prod"])  # promo setup
    holder = hold(memory_server.api_url, tmp_path / "holder-home", "environment", "restarted", "prod")
    try:
        memory_server.restart()
    finally:
        kill(holder)

    lock = environment_lock("restarted", "prod", timeout_seconds=FREED_WITHIN, create_missing=False)
    assert seconds_to_take(lock, limit_name("restarted", "prod")) < FREED_WITHIN
    assert held_slots(limit_name("restarted", "prod")) == 0


def test_a_live_holder_keeps_its_slot_across_a_restart_and_gives_it_back_when_done(
    memory_server: Server, repository: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = gitops_limit_name(repository)
    holder = hold(memory_server.api_url, tmp_path / "holder-home", "gitops", repository)
    try:
        memory_server.restart()  # the server lost the holder's lease; the holder knows nothing of it
        # Waiting well past the quiet period after which a gone holder's slot is given back: not given back.
        monkeypatch.setattr(limits, "WAIT_SECONDS", 2 * slot_holders.STALE_SECONDS + 10)
        with pytest.raises(ConflictError) as refused:
            with gitops_lock(repository, create_missing=False):
                pytest.fail("two holders of one slot")
        message = str(refused.value)
        assert f"its recorded holder is pid {holder.pid} on " in message, message
        assert f"`prefect gcl update {name} --active-slots 0`" in message, message
        monkeypatch.setattr(limits, "WAIT_SECONDS", WAIT_SECONDS)

        release(holder)
    finally:
        kill(holder)
    # Its release found no lease and gave nothing back; the next writer does, once the holder has gone quiet.
    assert seconds_to_write(repository) < FREED_WITHIN
    assert held_slots(name) == 0


def test_promo_s_own_server_keeps_leases_across_a_restart(promo_server: Server, tmp_path: Path) -> None:
    url = (tmp_path / "gitops.git").as_uri()
    ensure_limits([gitops_limit_name(url)])
    holder = hold(promo_server.api_url, tmp_path / "holder-home", "gitops", url)
    try:
        promo_server.restart()
        release(holder)
    finally:
        kill(holder)
    assert held_slots(gitops_limit_name(url)) == 0  # its own release gave it back: the server still had its lease
