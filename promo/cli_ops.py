"""Commands for running promo on a Prefect server: setup, notify-push. They register themselves on the main app."""

from __future__ import annotations

from promo.cli import app  # noqa: F401
