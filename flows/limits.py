"""One global concurrency limit per target environment: ``promo-<app>-<env>``, one slot.

A deployment concurrency limit cannot serialise gated promotions (a paused run gives its slot back), so writes into
an environment take a slot of the global limit instead. ``strict=True``: a missing limit is an error, never a lock
that silently locks nothing. ``promo setup`` creates the limits; ``ensure_environment_limits`` does it from code.
Publishing a release takes ``promo-<app>-release`` the same way (``release_lock``). Every GitOps write holds
``promo-gitops-<repository>-<hash>`` around its fetch-edit-push (``gitops_lock``): writers with caches on different
hosts then queue for the repository instead of racing at it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency._asyncio import ConcurrencySlotAcquisitionError  # what strict=True raises (no public path)
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import deployment

from promo.errors import ConflictError, NotFound, PromoError, ToolError, TransientError
from promo.gitops.mirror import redact_url
from promo.tasks.retry import BACKOFF_SECONDS, RETRIES

SLOTS = 1
# A run killed inside the lock cannot give its slot back: the server frees it when the lease runs out. 60 s is the
# shortest lease the server accepts; the holder renews it while alive. A write takes well under a second, so waiting
# two leases for a slot means something is stuck.
LEASE_SECONDS = 60
WAIT_SECONDS = 2 * LEASE_SECONDS + 10
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
    """Hold the environment's one slot: ``with environment_lock(app, env): ...`` (``concurrency(..., strict=True)``).

    Only acquiring is translated, never what the body raises: a missing limit is ``NotFound`` (run ``promo setup``),
    no free slot within ``timeout_seconds`` is ``ConflictError`` (None waits as long as it takes), and a Prefect API
    that keeps failing is ``TransientError`` once the acquire has been retried. The slot is given back when the block
    exits, by an exception too, and so when a run suspends at a gate inside it.
    """
    name = limit_name(app, env)
    if create_missing if create_missing is not None else deployment.get_id() is None:
        # A local run (embedded API, no `promo setup`) makes its limit on first use; under a deployment a
        # missing limit stays an error, since it means this server was never set up.
        ensure_environment_limits(app, [env])
    with ExitStack() as held:
        for attempt in range(RETRIES + 1):
            try:
                held.enter_context(
                    concurrency(
                        name, occupy=1, strict=True, timeout_seconds=timeout_seconds, lease_duration=LEASE_SECONDS
                    )
                )
                break
            except ConcurrencySlotAcquisitionError as error:
                failure = _acquisition_failure(name, error)
            except TimeoutError:
                raise ConflictError(
                    f"another run held {env} of {app} (limit {name}) for more than {timeout_seconds} s",
                    f"let it finish, then start again; a killed run's slot frees itself within {LEASE_SECONDS} s",
                ) from None
            # The environment lock is taken in the flow body, outside any task's retry policy, so it retries here.
            # A slot the server granted before the reply was lost frees itself when its lease runs out.
            if not isinstance(failure, TransientError) or attempt == RETRIES:
                raise failure
            time.sleep(BACKOFF_SECONDS * 2**attempt)
        yield


@contextmanager
def gitops_lock(url: str, *, create_missing: bool | None = None) -> Iterator[None]:
    """Hold the GitOps repository's one slot around a write's fetch-edit-push: ``GitOpsRepo(write_lock=...)`` takes
    ``lambda: gitops_lock(url)``.

    Not ``concurrency()``: this lock only saves work, it guards nothing. Every push is a compare-and-swap, so two
    writers inside at once (a lease that ran out) race as they would unlocked, and the loser re-applies its edit.
    That lets the holder skip what ``concurrency()`` adds to every write (events, a lease-renewal thread, a client
    per release), which the contention bench measured in the hold of every write. A busy slot is asked for again
    after the server's Retry-After (docs/performance.md); a missing limit, no slot within ``WAIT_SECONDS`` and a
    failing API are the errors ``environment_lock`` raises.
    """
    name = gitops_limit_name(url)
    if create_missing if create_missing is not None else deployment.get_id() is None:
        ensure_limits([name])  # see environment_lock
    deadline = time.monotonic() + WAIT_SECONDS
    failures = 0
    with get_client(sync_client=True) as client:
        while True:
            try:
                granted = client.increment_concurrency_slots_with_lease(
                    names=[name], slots=SLOTS, mode="concurrency", lease_duration=LEASE_SECONDS
                ).json()
                break
            except (httpx.TransportError, httpx.HTTPStatusError) as error:
                if _is_busy(error):
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
                raise ConflictError(
                    f"other writers held the GitOps repository {redact_url(url)} (limit {name}) "
                    f"for more than {WAIT_SECONDS} s",
                    f"let them finish, then start again; a killed writer's slot frees itself within {LEASE_SECONDS} s",
                )
            time.sleep(min(wait, left))
        if not granted.get("limits"):
            raise NotFound(
                f"the Prefect server has no concurrency limit {name}",
                "run `promo setup` against this server (it creates the GitOps repository's limit too)",
            )
        try:
            yield
        finally:
            try:
                client.release_concurrency_slots_with_lease(granted["lease_id"])
            except (httpx.TransportError, httpx.HTTPStatusError):
                pass  # the lease frees the slot within LEASE_SECONDS; the write itself is done


def _is_busy(error: BaseException) -> bool:
    """The server's 423: the slot is taken."""
    return isinstance(error, httpx.HTTPStatusError) and error.response.status_code == 423


def _acquisition_failure(name: str, error: ConcurrencySlotAcquisitionError) -> PromoError:
    """What a failed acquire means. Prefect raises one error for all of them: a missing limit (``strict=True``, no
    cause), the API's HTTP error, or a transport error (the cause); only the limit itself tells a missing one."""
    cause = error.__cause__
    if _is_transient(cause):
        return _api_failure(name, cause)
    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        return NotFound(
            f"the Prefect server has no concurrency limit {name}",
            "run `promo setup` against this server "
            "(it creates promo's limits: one per environment, one per GitOps repository)",
        )
    except (httpx.TransportError, httpx.HTTPStatusError) as reading_error:
        if _is_transient(reading_error):
            return _api_failure(name, reading_error)
    return ToolError(
        f"the Prefect server refused a slot of {name}: {error}", "see the Prefect server's log for the cause"
    )


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
