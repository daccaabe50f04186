"""Which version a rollback puts back: one that was verified in that environment, never a guess.

A rollback reads the environment's history (``promo.gitops.history``, newest first) with the verdict of each change. It goes
back to the newest change whose version came up verified there and is not what runs now, or to the version asked
for, which must have come up verified there too: a version nobody saw healthy in that environment is no safe place
to return to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from promo.config import EnvironmentSettings
from promo.errors import ConfigError, InputError, NotFound
from promo.gitops.history import Change


@dataclass(frozen=True)
class RollbackPlan:
    """Going back in ``env`` from ``current`` to ``version``, the version ``verified_by`` deployed and saw healthy.

    ``reason`` says why ``current`` is left: its failed verdict, when it has one."""

    env: str
    current: str
    version: str
    verified_by: Change
    reason: str | None

    @property
    def summary(self) -> str:
        why = f" ({self.current} failed: {self.reason})" if self.reason else ""
        return f"roll back {self.env} from {self.current} to {self.version}{why}"


def check_verified(environment: EnvironmentSettings) -> None:
    """An environment promo does not verify has no version known to work, so a rollback there has none to choose."""
    if environment.verify is None:
        raise ConfigError(
            f"{environment.name} has no verify: in promo.yaml, so no version is known to have worked there "
            "and a rollback has none to choose",
            f"add verify: (argocd, http or both) to environments.{environment.name} in promo.yaml",
        )


def rollback_target(history: Sequence[Change], current: str, *, env: str, to: str | None = None) -> RollbackPlan:
    """The version to put back into ``env``, which runs ``current``: ``to``, or the newest other verified one.

    ``history`` is that environment's changes, newest first, with their verdicts."""
    verified = verified_versions(history, current)
    if to is not None:
        if to == current:
            raise InputError(f"{env} runs {to} already", "roll back to a version it does not run")
        if to not in verified and verified:
            raise InputError(f"{to} was never verified in {env}", f"roll back to one of: {_choices(verified)}")
        if to not in verified:
            raise InputError(
                f"{to} was never verified in {env}",
                f"no version other than {current} was, so there is nothing to roll back to",
            )
        target = verified[to]
    elif verified:
        target = next(iter(verified.values()))
    else:
        raise NotFound(
            f"no version other than {current} was verified in {env}, so there is nothing to roll back to",
            f"deploy a version that works into {env} (promote or publish it)",
        )
    return RollbackPlan(env, current, target.version or "", target, failure_reason(history, current))


def verified_versions(history: Sequence[Change], current: str) -> dict[str, Change]:
    """version -> the newest change that deployed it and saw it verified, newest first, ``current`` left out."""
    verified: dict[str, Change] = {}
    for change in history:
        version = change.version
        if version and version != current and version not in verified and change.outcome == "verified":
            verified[version] = change
    return verified


def failure_reason(history: Sequence[Change], current: str) -> str | None:
    """Why ``current`` failed: the reason of the verdict on the newest change that deployed it, if that one failed."""
    deployed = next((change for change in history if change.version == current), None)
    if deployed is None or deployed.verdict is None or deployed.verdict.verified:
        return None
    return deployed.verdict.reason


def _choices(verified: dict[str, Change]) -> str:
    return ", ".join(verified)
