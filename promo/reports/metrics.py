"""`promo metrics`: the four DORA figures for prod, computed from the GitOps history and the verdicts in it.

Definitions (each figure also says in one line how it was computed, and "n/a (no data)" when there is nothing to
compute it from):

- a *deployment* is a prod change that put a version there which was not there before, except a rollback (which
  undoes one): releases, promotions and hand edits count (a commit worded as promo's whose tree did something else is
  a hand edit: ``promo.gitops.attribution``);
- a deployment *failed* when its verification failed or a later rollback in prod replaced its version
  (``Rollback-Of``); only verdicts promo can trust count (``Change.outcome``: an untrusted one is neither failed nor
  verified);
- an *incident* starts when a failed deployment (or any prod change whose verification failed) goes live while prod
  was healthy, and is *restored* when a later prod change is verified: the verdict's time ends it. Failures before the
  restoration belong to the same incident.

The window is ``[until - since, until]`` by commit time; lead time runs from the app commit's commit time to the prod
commit's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from promo.clients import app_mirror
from promo.config import PromoConfig
from promo.errors import NotFound
from promo.gitops.mirror import Mirror
from promo.gitops.history import Change, candidate_of
from promo.reports.history import app_history
from promo.gitops.verdicts import FAILED, VERIFIED
from promo.versions import sha_of

NO_DATA = "n/a (no data)"
_DAY = 86400.0


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None  # per day, seconds or a fraction; None: no data
    text: str
    how: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "text": self.text, "how": self.how}


@dataclass(frozen=True)
class Metrics:
    env: str
    since: datetime
    until: datetime
    deployments: int
    deployment_frequency: Figure  # per day
    lead_time: Figure  # median, seconds
    lead_time_p90: Figure  # seconds
    change_failure_rate: Figure  # a fraction of the deployments
    time_to_restore: Figure  # median, seconds

    @property
    def figures(self) -> tuple[Figure, ...]:
        return (
            self.deployment_frequency,
            self.lead_time,
            self.lead_time_p90,
            self.change_failure_rate,
            self.time_to_restore,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "deployments": self.deployments,
            "figures": [figure.as_json() for figure in self.figures],
        }


def metrics(config: PromoConfig, since_seconds: int, until: datetime | None = None) -> Metrics:
    prod = config.environments[-1].name
    app_commits = app_mirror(config)
    app_commits.fetch()
    return compute_metrics(
        app_history(config),
        prod=prod,
        source=config.source_of(prod).name,
        since=timedelta(seconds=since_seconds),
        until=until or datetime.now(timezone.utc),
        commit_time=commit_time_of(app_commits),
    )


def commit_time_of(app_commits: Mirror) -> Callable[[str], datetime | None]:
    """RC -> the commit time of the app commit it was built from; None when the app repository does not have it."""

    def commit_time(rc: str) -> datetime | None:
        try:
            return app_commits.log_paths(app_commits.resolve(sha_of(rc)), limit=1)[0].committed_at
        except NotFound:
            return None

    return commit_time


def compute_metrics(
    history: Sequence[Change],
    *,
    prod: str,
    source: str,
    since: timedelta,
    until: datetime,
    commit_time: Callable[[str], datetime | None],
) -> Metrics:
    """The figures for ``prod`` over ``history`` (newest first, every environment: a release's RC is found in
    ``source``)."""
    start = until - since
    in_prod = [change for change in reversed(history) if change.env == prod]  # oldest first
    failed = _failed_deployments(in_prod)
    deployments = [c for c in in_prod if c.deploys_new_version and start <= c.time <= until]
    days = since.total_seconds() / _DAY

    lead_times = []
    for deployment in deployments:
        rc = candidate_of(history, deployment, source)
        committed = commit_time(rc) if rc else None
        if committed is not None:
            lead_times.append((deployment.time - committed).total_seconds())
    counted = _count(len(deployments), "deployment")
    untraced = len(deployments) - len(lead_times)
    traced = f"{len(lead_times)} of {counted} traced to their app commit" + (
        f" ({untraced} not: no RC or unknown commit)" if untraced else ""
    )

    failures = [c for c in deployments if c.commit in failed]
    restores, still_open = _restore_times(in_prod, failed, start, until)

    frequency = len(deployments) / days
    median_lead = statistics.median(lead_times) if lead_times else None
    p90_lead = _nearest_rank(lead_times, 0.9) if lead_times else None
    rate = len(failures) / len(deployments) if deployments else None
    median_restore = statistics.median(restores) if restores else None
    return Metrics(
        env=prod,
        since=start,
        until=until,
        deployments=len(deployments),
        deployment_frequency=Figure(
            "deployment frequency",
            frequency,
            f"{frequency:.2f} per day ({frequency * 7:.1f} per week)",
            f"{counted} to {prod} / {days:g} days "
            "(new versions by release, promotion or hand edit; rollbacks not counted)",
        ),
        lead_time=Figure(
            "lead time for changes (median)",
            median_lead,
            _duration(median_lead) if median_lead is not None else NO_DATA,
            f"app commit time -> {prod} commit time, median over {traced}",
        ),
        lead_time_p90=Figure(
            "lead time for changes (p90)",
            p90_lead,
            _duration(p90_lead) if p90_lead is not None else NO_DATA,
            f"the same, 90th percentile (nearest rank) over {_count(len(lead_times), 'lead time')}",
        ),
        change_failure_rate=Figure(
            "change failure rate",
            rate,
            f"{rate:.0%}" if rate is not None else NO_DATA,
            f"{len(failures)} of {counted} to {prod} failed verification or were rolled back",
        ),
        time_to_restore=Figure(
            "time to restore (median)",
            median_restore,
            _duration(median_restore) if median_restore is not None else NO_DATA,
            f"failed deployment's commit -> the next verified version in {prod}, median over "
            f"{_count(len(restores), 'incident')} started in the window"
            + (f" ({still_open} not restored yet)" if still_open else ""),
        ),
    )


def _failed_deployments(in_prod: Sequence[Change]) -> set[str]:
    """The commits of prod changes whose verification failed or whose version a later rollback replaced."""
    failed = {change.commit for change in in_prod if change.outcome == FAILED}
    for index, rollback in enumerate(in_prod):
        if rollback.kind != "rollback":
            continue
        replaced = rollback.rollback_of or rollback.previous
        for earlier in reversed(in_prod[:index]):
            if earlier.deploys_new_version and earlier.version == replaced:
                failed.add(earlier.commit)
                break
    return failed


def _restore_times(
    in_prod: Sequence[Change], failed: set[str], start: datetime, until: datetime
) -> tuple[list[float], int]:
    """Seconds from each incident started in the window to its restoration, and how many are still open."""
    restores, opened_at = [], None
    for change in in_prod:
        if change.commit in failed:
            opened_at = opened_at or change.time
        elif opened_at is not None and change.outcome == VERIFIED and change.verdict is not None:
            if start <= opened_at <= until:
                restores.append((change.verdict.checked_at - opened_at).total_seconds())
            opened_at = None
    still_open = int(opened_at is not None and start <= opened_at <= until)
    return restores, still_open


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _nearest_rank(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _duration(seconds: float) -> str:
    """``2d 3h``, ``3h 20m``, ``45m``, ``30s``: the largest unit and the next one, rounded down."""
    total = int(seconds)
    parts = [(total // 86400, "d"), (total % 86400 // 3600, "h"), (total % 3600 // 60, "m"), (total % 60, "s")]
    first = next((index for index, (count, _) in enumerate(parts) if count), len(parts) - 1)
    return " ".join(f"{count}{unit}" for count, unit in parts[first : first + 2] if count) or "0s"
