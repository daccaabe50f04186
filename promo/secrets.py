"""Secrets kept in Prefect ``Secret`` blocks, for workers that should hold no credentials of their own.

The one place promo's core touches Prefect: it is imported inside the function, so the domain modules never load it
and a run whose credentials are in its environment never asks the Prefect API for them.
"""

from __future__ import annotations

# What `promo setup` puts into the Secret blocks it creates: a block still holding it has not been set.
SECRET_PLACEHOLDER = "replace-me"


def secret_block_value(name: str) -> str | None:
    """The value of the Secret block ``name``, or None when there is none or it still holds setup's placeholder."""
    from prefect.blocks.system import Secret

    try:
        secret = Secret.load(name)
    except ValueError:  # Prefect's answer for a block that does not exist
        return None
    # The raw value: Secret.get() would parse it as JSON, turning a password "1234" into a number.
    value = secret.value.get_secret_value()
    return value if isinstance(value, str) and value and value != SECRET_PLACEHOLDER else None
