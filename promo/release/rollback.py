"""Which version a rollback puts back: one that was verified in that environment, never a guess.

A rollback reads the environment's history (``promo.gitops.history``, newest first) with the verdict of each change
(only those promo can trust: ``Change.trusted_verdict``). Each version is judged by the newest of its deployments there
that was checked: it is a place to return to when that one came up verified, and never when it failed, even if an
older deployment of it was verified (whatever broke it then, code or configuration, may break it again). A rollback
goes back to the newest such version that is not what runs now, or to the version asked for, which must be one of
them: a version nobody saw healthy in that environment is no safe place to return to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from promo.config import EnvironmentSettings
from promo.errors import ConfigError, InputError, NotFound
from promo.gitops.controls import Rejection
from promo.gitops.history import Change
from promo.gitops.verdicts import FAILED, VERIFIED


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


def rollback_target(
    history: Sequence[Change],
    current: str,
    *,
    env: str,
    to: str | None = None,
    rejected: Mapping[str, Rejection] | None = None,
) -> RollbackPlan:
    """The version to put back into ``env``, which runs ``current``: ``to``, or the newest other verified one that
    nobody ``rejected`` (version -> its rejection: a rejected version is never put back).

    ``history`` is that environment's changes, newest first, with their verdicts."""
    rejected = rejected or {}
    checked = last_checked(history, current)
    verified = {
        version: change
        for version, change in checked.items()
        if _outcome(change) == VERIFIED and version not in rejected
    }
    failed = {version: change for version, change in checked.items() if _outcome(change) == FAILED}
    if to is not None:
        if to == current:
            raise InputError(f"{env} runs {to} already", "roll back to a version it does not run")
        if to in rejected:
            raise InputError(f"{rejected[to].line()}, so it is never rolled back to", _fix(verified, failed, current))
        if to in failed:
            why = failed[to].trusted_verdict
            cause = f"{to} failed verification in {env} the last time it was checked there"
            detail = f" (commit {failed[to].commit[:12]}: {why.reason})" if why is not None else ""
            raise InputError(cause + detail, _fix(verified, failed, current))
        if to not in verified:
            raise InputError(f"{to} was never verified in {env}", _fix(verified, failed, current))
        target = verified[to]
    elif verified:
        target = next(iter(verified.values()))
    else:
        raise NotFound(
            f"no version other than {current} was verified in {env}{_left_out(failed)}, "
            "so there is nothing to roll back to",
            f"deploy a version that works into {env} (promote or publish it)",
        )
    return RollbackPlan(env, current, target.version or "", target, failure_reason(history, current))


def last_checked(history: Sequence[Change], current: str) -> dict[str, Change]:
    """version -> the newest change that left the environment at it with a verdict promo trusts (verified or
    failed), newest first, ``current`` left out. A deployment nobody checked says nothing either way."""
    last: dict[str, Change] = {}
    for change in history:
        version = change.version
        if version and version != current and version not in last and _outcome(change) in (VERIFIED, FAILED):
            last[version] = change
    return last


def _outcome(change: Change) -> str | None:
    verdict = change.trusted_verdict
    return verdict.outcome if verdict is not None else None


def failure_reason(history: Sequence[Change], current: str) -> str | None:
    """Why ``current`` failed: the reason of the verdict on the newest change that deployed it, if that one failed."""
    deployed = next((change for change in history if change.version == current), None)
    verdict = deployed.trusted_verdict if deployed is not None else None
    if verdict is None or verdict.outcome != FAILED:
        return None
    return verdict.reason


def _fix(verified: dict[str, Change], failed: dict[str, Change], current: str) -> str:
    if verified:
        return f"roll back to one of: {', '.join(verified)}{_left_out(failed)}"
    return f"no version other than {current} was{_left_out(failed)}, so there is nothing to roll back to"


def _left_out(failed: dict[str, Change]) -> str:
    """`` (0.1.1 is left out: it failed verification the last time it was checked there)``, when any is."""
    if not failed:
        return ""
    if len(failed) == 1:
        return f" ({next(iter(failed))} is left out: it failed verification the last time it was checked there)"
    return f" ({', '.join(failed)} are left out: they failed verification the last time they were checked there)"
