"""Whether a version may move on from an environment: verified there (when it is verified) and soaked long enough.

Plain reading of the environment's history: the newest change that put the version there, the record promo wrote
for that commit, and the time since. A version soaks from its verified verdict (when it was seen healthy), or, in an
environment nobody verifies, from promo's record of deploying it: never from a commit date, which whoever commits
sets. Only records promo can prove it wrote, about the version that commit deployed, count (``Change.trusted_verdict``),
so a version put there by hand has no record and does not soak: it was not promo's deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from promo.config import EnvironmentSettings
from promo.gitops.history import Change
from promo.gitops.verdicts import DEPLOYED, FAILED, VERIFIED


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
    if settings.verify is None and not settings.soak:
        return Readiness()  # nothing to verify, nothing to wait for
    change = deployed_by(history, env, version)
    if change is None:
        return Readiness((f"{version} was not deployed to {env} by any commit of the GitOps repo",))
    since = soaking_since(change, settings)
    if since is None:
        return not_started(change, settings, version)
    soaked = soaked_seconds(since, now)
    if soaked < settings.soak:
        return Readiness((not_soaked(version, env, soaked, settings.soak),))
    return Readiness()


def not_started(change: Change, settings: EnvironmentSettings, version: str) -> Readiness:
    """Why ``version``, which ``change`` put into the environment, has not started to soak there."""
    env, verdict, doubt = settings.name, change.trusted_verdict, change.verdict_doubt
    if verdict is not None and verdict.outcome == FAILED:
        return Readiness((f"{version} failed verification in {env}: {verdict.reason}",), failed=True)
    untrusted = f" (its record is not believed: {doubt})" if doubt is not None else ""
    if settings.verify is not None:
        return Readiness((f"{version} has not been verified in {env} yet{untrusted}",))
    if change.kind == "manual":
        line = f"{version} was put into {env} by hand (commit {change.commit[:12]}), not by promo, so it does not soak"
    else:
        line = (
            f"{version} has no record of promo deploying it to {env} (commit {change.commit[:12]}){untrusted}, "
            "so it has not started to soak"
        )
    return Readiness((line,))


def soaking_since(change: Change, settings: EnvironmentSettings) -> datetime | None:
    """When the version ``change`` deployed started to soak: its verified verdict or, where nobody verifies, promo's
    record of deploying it; None while there is no such record promo can trust (not verified yet, failed, put there
    by hand)."""
    verdict = change.trusted_verdict
    if verdict is None:
        return None
    if verdict.outcome == VERIFIED or (settings.verify is None and verdict.outcome == DEPLOYED):
        return verdict.checked_at
    return None


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
