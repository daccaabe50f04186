"""One global concurrency limit per target environment: ``promo-<app>-<env>``, one slot.

A deployment concurrency limit cannot serialise gated promotions (a paused run gives its slot back), so writes into
an environment take a slot of the global limit instead. ``strict=True``: a missing limit is an error, never a lock
that silently locks nothing. ``promo setup`` creates the limits; ``ensure_environment_limits`` does it from code.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

SLOTS = 1


def limit_name(app: str, env: str) -> str:
    """``promo-<app>-<env>``: app and environment names are DNS labels, so this is a valid limit name."""
    return f"promo-{app}-{env}"


def environment_lock(app: str, env: str, *, timeout_seconds: float | None = None) -> AbstractContextManager[None]:
    """Hold the environment's one slot: ``with environment_lock(app, env): ...``.

    Raises ``ConcurrencySlotAcquisitionError`` when the limit does not exist (run ``promo setup``) and
    ``TimeoutError`` when ``timeout_seconds`` pass without a free slot (None waits as long as it takes).
    """
    return concurrency(limit_name(app, env), occupy=1, strict=True, timeout_seconds=timeout_seconds)


def ensure_environment_limits(app: str, envs: Iterable[str]) -> list[tuple[str, bool]]:
    """Create the missing limits; existing ones are left as they are (a limit changed by hand stays changed).

    Returns ``(name, created)`` for every environment, in order.
    """
    outcome: list[tuple[str, bool]] = []
    with get_client(sync_client=True) as client:
        for env in envs:
            name = limit_name(app, env)
            try:
                client.read_global_concurrency_limit_by_name(name)
                outcome.append((name, False))
                continue
            except ObjectNotFound:
                pass
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=SLOTS))
                outcome.append((name, True))
            except ObjectAlreadyExists:  # created meanwhile by a concurrent setup
                outcome.append((name, False))
    return outcome
