"""The one retry policy: transient faults are retried with exponential backoff, nothing else is.

A 401, a broken manifest or a bad version fails at once: retrying cannot fix them and would only delay the
one clear message the user needs.
"""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from promo.errors import TransientError

RETRIES = 5
BACKOFF_SECONDS = 0.5


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect honours ``retry_condition_fn`` only for a plain function, hence a module-level def."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientError)


TRANSIENT_RETRIES: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": exponential_backoff(backoff_factor=BACKOFF_SECONDS),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": is_transient,
}
