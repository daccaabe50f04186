"""One global concurrency limit per target environment: ``promo-<app>-<env>``, one slot.

A deployment concurrency limit cannot serialise gated promotions (a paused run gives its slot back), so writes into
an environment take a slot of the global limit instead. ``strict=True``: a missing limit is an error, never a lock
that silently locks nothing. ``promo setup`` creates the limits; ``ensure_environment_limits`` does it from code.
Publishing a release takes ``promo-<app>-release`` the same way (``release_lock``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError  # what strict=True raises (no public path)
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import deployment

from promo.errors import ConflictError, NotFound

SLOTS = 1
# A run killed inside the lock cannot give its slot back: the server frees it when the lease runs out. 60 s is the
# shortest lease the server accepts; the holder renews it while alive. A write takes well under a second, so waiting
# two leases for a slot means something is stuck.
LEASE_SECONDS = 60
WAIT_SECONDS = 2 * LEASE_SECONDS + 10
RELEASE = "release"  # the release lock is held like an environment's; its limit is promo-<app>-release


def limit_name(app: str, env: str) -> str:
    """``promo-<app>-<env>``: app and environment names are DNS labels, so this is a valid limit name."""
    return f"promo-{app}-{env}"


@contextmanager
def environment_lock(
    app: str, env: str, *, timeout_seconds: float | None = WAIT_SECONDS, create_missing: bool | None = None
) -> Iterator[None]:
    """Hold the environment's one slot: ``with environment_lock(app, env): ...`` (``concurrency(..., strict=True)``).

    Only acquiring is translated, never what the body raises: a missing limit is ``NotFound`` (run ``promo setup``),
    no free slot within ``timeout_seconds`` is ``ConflictError`` (None waits as long as it takes). The slot is given
    back when the block exits, by an exception too, and so when a run suspends at a gate inside it.
    """
    name = limit_name(app, env)
    if create_missing if create_missing is not None else deployment.get_id() is None:
        # A local run (embedded API, no `promo setup`) makes its limit on first use; under a deployment a
        # missing limit stays an error, since it means this server was never set up.
        ensure_environment_limits(app, [env])
    with ExitStack() as held:
        try:
            held.enter_context(
                concurrency(name, occupy=1, strict=True, timeout_seconds=timeout_seconds, lease_duration=LEASE_SECONDS)
            )
        except ConcurrencySlotAcquisitionError:
            raise NotFound(
                f"the Prefect server has no concurrency limit {name}",
                "run `promo setup` against this server (it creates one limit per environment)",
            ) from None
        except TimeoutError:
            raise ConflictError(
                f"another run held {env} of {app} (limit {name}) for more than {timeout_seconds} s",
                f"let it finish, then start again; a killed run's slot frees itself within {LEASE_SECONDS} s",
            ) from None
        yield


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


def release_lock(app: str) -> AbstractContextManager[None]:
    """Hold the app's one release slot: checking that release X.Y.Z is absent (or identical) and pushing it is one
    step, so of two runs releasing different RCs as X.Y.Z exactly one publishes and the other sees its chart."""
    return environment_lock(app, RELEASE)
