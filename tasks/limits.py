"""One global concurrency limit per target environment: ``promo-<app>-<env>``, one slot.

A deployment concurrency limit cannot serialise gated promotions (a paused run gives its slot back), so writes into
an environment take a slot of the global limit instead. A missing limit is an error, never a lock that silently
locks nothing. ``promo setup`` creates the limits; ``ensure_environment_limits`` does it from code.
Publishing a release takes ``promo-<app>-release`` the same way (``release_lock``). Every GitOps write holds
``promo-gitops-<repository>-<hash>`` around its fetch-edit-push (``gitops_lock``): writers with caches on different
hosts then queue for the repository instead of racing at it.

Every holder records itself, and a waiter gives back a slot whose holder is gone even when the server lost the
slot's lease in a restart (promo.tasks.slot_holders).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from uuid import UUID

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._leases import maintain_concurrency_lease  # concurrency()'s renewal (no public path)
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import deployment, flow_run

from promo.errors import ConflictError, NotFound, ToolError, TransientError
from promo.tasks.slot_holders import CHECK_SECONDS, LEASE_SECONDS, StrandedSlotWatch, recorded_holder
from promo.gitops.mirror import redact_url
from promo.tasks.retry import BACKOFF_SECONDS, RETRIES

SLOTS = 1
# A run killed inside the lock cannot give its slot back: the server frees it when the lease (LEASE_SECONDS, the
# shortest it accepts, renewed by a live holder) runs out, and a waiter frees it sooner, or when the server lost the
# lease (promo.tasks.slot_holders). A write takes well under a second, so waiting two leases means something is stuck.
WAIT_SECONDS = 2 * LEASE_SECONDS + 10
# How to free a slot by hand, for the message a waiter gives up with.
FREE_BY_HAND = "if no promo run still holds it, free it: `prefect gcl update {name} --active-slots 0`"
RELEASE = "release"  # the release lock is held like an environment's; its limit is promo-<app>-release


_SLUG_CHARACTERS = 40


def limit_name(app: str, env: str) -> str:
    """``promo-<app>-<env>``: app and environment names are DNS labels, so this is a valid limit name."""
    return f"promo-{app}-{env}"


def gitops_limit_name(url: str) -> str:
    """``promo-gitops-<slug>-<hash>`` for the GitOps repository at ``url``: the same for every spelling of one URL
    that differs only in credentials, a trailing ``/`` or ``.git``, so every writer of a repository meets at one
    limit. The slug (host and path, lowercase letters, digits and dashes, its last 40 characters) is for people; the
    hash of the whole credential-free URL keeps repositories with alike slugs apart. No credentials: the name is
    shown in the UI and logs."""
    bare = redact_url(url).rstrip("/").removesuffix(".git").rstrip("/")
    digest = hashlib.sha256(bare.encode()).hexdigest()[:10]
    slug = re.sub(r"[^a-z0-9]+", "-", bare.partition("://")[2].lower() or bare.lower())
    slug = slug[-_SLUG_CHARACTERS:].strip("-") or "repository"
    return f"promo-gitops-{slug}-{digest}"


@contextmanager
def environment_lock(
    app: str, env: str, *, timeout_seconds: float | None = WAIT_SECONDS, create_missing: bool | None = None
) -> Iterator[None]:
    """Hold the environment's one slot: ``with environment_lock(app, env): ...``.

    Only acquiring is translated, never what the body raises: a missing limit is ``NotFound`` (run ``promo setup``),
    no free slot within ``timeout_seconds`` is ``ConflictError`` (None waits as long as it takes), and a Prefect API
    that keeps failing is ``TransientError`` once the acquire has been retried. The lease is renewed while the block
    runs, and a failed renewal ends the block, as ``concurrency(..., strict=True)`` does. The slot is given back when
    the block exits, by an exception too, and so when a run suspends at a gate inside it.
    """
    name = limit_name(app, env)
    if create_missing if create_missing is not None else deployment.get_id() is None:
        # A local run (embedded API, no `promo setup`) makes its limit on first use; under a deployment a
        # missing limit stays an error, since it means this server was never set up.
        ensure_environment_limits(app, [env])
    lease = _take_slot(
        name,
        timeout_seconds,
        lambda holder: ConflictError(
            f"another run held {env} of {app} (limit {name}) for more than {timeout_seconds} s; {holder}",
            f"let it finish, then start again; {FREE_BY_HAND.format(name=name)}",
        ),
    )
    try:
        with maintain_concurrency_lease(lease, LEASE_SECONDS, raise_on_lease_renewal_failure=True):
            with recorded_holder(name, lease):
                yield
    finally:
        _release(lease)


@contextmanager
def gitops_lock(url: str, *, create_missing: bool | None = None) -> Iterator[None]:
    """Hold the GitOps repository's one slot around a write's fetch-edit-push: ``GitOpsRepo(write_lock=...)`` takes
    ``lambda: gitops_lock(url)``.

    Unlike the environment lock, no lease renewal: this lock only saves work, it guards nothing. Every push is a
    compare-and-swap, so two writers inside at once (a lease that ran out) race as they would unlocked, and the loser
    re-applies its edit. That keeps a renewal thread out of the hold of every write, where the contention bench
    measures it. A missing limit, no slot within ``WAIT_SECONDS`` and a failing API are the errors
    ``environment_lock`` raises.
    """
    name = gitops_limit_name(url)
    if create_missing if create_missing is not None else deployment.get_id() is None:
        ensure_limits([name])  # see environment_lock
    lease = _take_slot(
        name,
        WAIT_SECONDS,
        lambda holder: ConflictError(
            f"other writers held the GitOps repository {redact_url(url)} (limit {name}) "
            f"for more than {WAIT_SECONDS} s; {holder}",
            f"let them finish, then start again; {FREE_BY_HAND.format(name=name)}",
        ),
    )
    try:
        with recorded_holder(name, lease):
            yield
    finally:
        _release(lease)


def _take_slot(name: str, timeout_seconds: float | None, busy: Callable[[str], ConflictError]) -> UUID:
    """Ask for ``name``'s slot until it is granted; its lease. A busy slot is asked for again after the server's
    Retry-After (docs/performance.md), at most ``CHECK_SECONDS`` later, and a slot whose holder is gone is given back
    on the way (``StrandedSlotWatch``). No slot within ``timeout_seconds`` (None: no limit) is ``busy(who holds
    it)``; a transient API failure is retried ``RETRIES`` times (the locks are taken in flow bodies, outside any
    task's retry policy), and a slot the server granted before the reply was lost frees itself with its lease."""
    deadline = math.inf if timeout_seconds is None else time.monotonic() + timeout_seconds
    watch = StrandedSlotWatch(name)
    failures = 0
    with get_client(sync_client=True) as client:
        while True:
            try:
                granted = client.increment_concurrency_slots_with_lease(
                    names=[name], slots=SLOTS, mode="concurrency", lease_duration=LEASE_SECONDS, holder=_holder()
                ).json()
                break
            except (httpx.TransportError, httpx.HTTPStatusError) as error:
                if _is_busy(error):
                    if watch.after_refusal(client):
                        continue  # a stranded slot was given back: ask again at once
                    wait = float(error.response.headers.get("Retry-After", BACKOFF_SECONDS))
                elif not _is_transient(error):
                    raise ToolError(
                        f"the Prefect server refused a slot of {name}: {error}", "see the Prefect server's log"
                    ) from None
                elif failures == RETRIES:
                    raise _api_failure(name, error) from None
                else:
                    wait, failures = BACKOFF_SECONDS * 2**failures, failures + 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise busy(watch.describe())
            time.sleep(min(wait, left, CHECK_SECONDS))
    if not granted.get("limits"):
        raise NotFound(
            f"the Prefect server has no concurrency limit {name}",
            "run `promo setup` against this server "
            "(it creates promo's limits: one per environment, one per GitOps repository)",
        )
    return UUID(granted["lease_id"])


def _holder() -> ConcurrencyLeaseHolder | None:
    """The flow run taking the slot, for the server's own record of the lease (shown with it, lost with it)."""
    run = flow_run.get_id()
    return ConcurrencyLeaseHolder(type="flow_run", id=UUID(run)) if run else None


def _release(lease: UUID) -> None:
    try:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots_with_lease(lease)
    except (httpx.TransportError, httpx.HTTPStatusError):
        pass  # the lease frees the slot within LEASE_SECONDS (a waiter sooner); the body's work is done


def _is_busy(error: BaseException) -> bool:
    """The server's 423: the slot is taken."""
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 423


def _is_transient(error: BaseException | None) -> bool:
    """A transport error or a 5xx/429/408 from the Prefect API: the same call may succeed a moment later."""
    if isinstance(error, httpx.TransportError):
        return True
    return isinstance(error, httpx.HTTPStatusError) and (
        error.response.status_code >= 500 or error.response.status_code in (408, 429)
    )


def _api_failure(name: str, cause: BaseException) -> TransientError:
    detail = f"HTTP {cause.response.status_code}" if isinstance(cause, httpx.HTTPStatusError) else type(cause).__name__
    return TransientError(
        f"the Prefect API failed while taking a slot of {name} ({detail})",
        "run it again; check that the Prefect server is up and reachable (PREFECT_API_URL)",
    )


def ensure_environment_limits(app: str, envs: Iterable[str]) -> list[tuple[str, bool]]:
    """Create the missing limits of ``app``'s environments; ``(name, created)`` for every one, in order."""
    return ensure_limits([limit_name(app, env) for env in envs])


def ensure_limits(names: Iterable[str]) -> list[tuple[str, bool]]:
    """Create the missing limits; existing ones are left as they are (a limit changed by hand stays changed).

    Returns ``(name, created)`` for every name, in order.
    """
    outcome: list[tuple[str, bool]] = []
    with get_client(sync_client=True) as client:
        for name in names:
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
