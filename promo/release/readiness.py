"""Whether a version may move on from an environment: verified there (when it is verified) and soaked long enough.

Plain reading of the environment's history: the newest change that put the version there, the verdict recorded for
that commit, and the time since. A version soaks from its verified verdict (when it was seen healthy), or, in an
environment nobody verifies, from the commit that deployed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from promo.config import EnvironmentSettings
from promo.gitops.history import Change


@dataclass(frozen=True)
class Readiness:
    """``missing`` says, one line each, what keeps the version from moving on; ``failed`` when a verification
    failed (an approver may still override it, but it is an emergency and the gate says so)."""

    missing: tuple[str, ...] = ()
    failed: bool = False

    @property
    def ready(self) -> bool:
        return not self.missing


def deployed_by(history: Sequence[Change], env: str, version: str) -> Change | None:
    """The newest change (history is newest first) that left ``env`` at ``version``."""
    return next((change for change in history if change.env == env and change.version == version), None)


def readiness(history: Sequence[Change], settings: EnvironmentSettings, version: str, now: datetime) -> Readiness:
    """What ``version`` still lacks in the environment of ``settings`` before it may move on."""
    env = settings.name
    change = deployed_by(history, env, version)
    if change is None:
        return Readiness((f"{version} was not deployed to {env} by any commit of the GitOps repo",))
    since = soaking_since(change, settings)
    if since is None:
        verdict = change.verdict
        if verdict is None:
            return Readiness((f"{version} has not been verified in {env} yet",))
        return Readiness((f"{version} failed verification in {env}: {verdict.reason}",), failed=True)
    soaked = soaked_seconds(since, now)
    if soaked < settings.soak:
        return Readiness((not_soaked(version, env, soaked, settings.soak),))
    return Readiness()


def soaking_since(change: Change, settings: EnvironmentSettings) -> datetime | None:
    """When the version ``change`` deployed started to soak: its verified verdict, or the commit itself where nobody
    verifies; None while it is not verified (or failed)."""
    if settings.verify is None:
        return change.time
    verdict = change.verdict
    return verdict.checked_at if verdict is not None and verdict.verified else None


def soaked_seconds(since: datetime, now: datetime) -> int:
    return max(0, int((now - since).total_seconds()))


def not_soaked(version: str, env: str, soaked: int, soak: int) -> str:
    """``... has soaked 12 of 30 minutes in test (18 to go)``; in seconds when the soak is under two minutes."""
    unit, size = ("minutes", 60) if soak >= 120 else ("seconds", 1)
    to_go = -(-(soak - soaked) // size)  # rounded up: never "0 to go" while it is still soaking
    return f"{version} has soaked {soaked // size} of {soak // size} {unit} in {env} ({to_go} to go)"


def format_age(seconds: int) -> str:
    """``45s``, ``12m``, ``3h 5m``, ``2d 4h``: how long a version has run, for tables."""
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days}d {hours % 24}h"
    if hours:
        return f"{hours}h {minutes % 60}m"
    return f"{minutes}m" if minutes else f"{seconds}s"
