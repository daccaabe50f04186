"""`promo metrics`: the DORA figures of the scripted history, worked out by hand from the script.

The script's prod changes (tests/fixtures/history_script.py, by step index), with ``Ak`` the app commit times:

- 3: release 0.1.0 (RC of A1, 1 Nov 09:00) on 3 Nov 09:00, verified.
- 9: release 0.1.1 (RC of A2, 5 Nov 09:00) on 7 Nov 09:00, verification failed at 09:15;
  10: rollback to 0.1.0 on 7 Nov 10:00, verified at 10:20.
- 14: release 0.1.2 (RC of A3, 9 Nov 21:00) on 12 Nov 09:00, verified;
  15: rollback to 0.1.0 on 13 Nov 09:00 (Rollback-Of 0.1.2), verified at 09:30.
- 19: by hand, us runs A4's RC (A4: 15 Nov 08:00) on 17 Nov 09:00, not verified.
- 20: release 0.1.3 (RC of A4) on 18 Nov 09:00, verified.
- 22: by hand, another field of prod/eu on 26 Nov 09:00: no new version, no deployment.

So the deployments are 3, 9, 14, 19 and 20; 9 failed its verification and 14 was rolled back; the incidents are
7 Nov 09:00 -> 10:20 and 12 Nov 09:00 -> 13 Nov 09:30.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from datetime import datetime, timedelta, timezone

import pytest
from typer.testing import CliRunner

from promo.cli.main import app
from promo.errors import InputError
from promo.gitops.history import Change, Move
from promo.reports.metrics import NO_DATA, compute_metrics, metrics
from promo.gitops.verdicts import Verdict
from tests.fixtures.history_script import (
    APP_COMMITS,
    STEPS,
    UNTIL,
    Scripted,
    cli_in_fresh_process,
)

DAY = 86400


def lead_time(step: int, app_commit: str) -> float:
    return (STEPS[step].when - APP_COMMITS[app_commit][0]).total_seconds()


def restore_time(failed_step: int, restoring_step: int) -> float:
    verdict = STEPS[restoring_step].verdict
    assert verdict is not None and verdict[0]
    return (verdict[1] - STEPS[failed_step].when).total_seconds()


def nearest_rank_p90(values: list[float]) -> float:
    return sorted(values)[math.ceil(0.9 * len(values)) - 1]


def test_the_last_30_days(scripted: Scripted) -> None:
    figures = metrics(scripted.config, 30 * DAY, UNTIL)
    assert figures.deployments == 5
    assert figures.deployment_frequency.value == 5 / 30
    # 48h, 48h, 60h, 49h, 73h: median 49h, p90 the 5th of 5 (nearest rank) = 73h
    leads = [lead_time(3, "A1"), lead_time(9, "A2"), lead_time(14, "A3"), lead_time(19, "A4"), lead_time(20, "A4")]
    assert sorted(leads) == [h * 3600 for h in (48, 48, 49, 60, 73)]
    assert figures.lead_time.value == statistics.median(leads) == 49 * 3600
    assert figures.lead_time_p90.value == nearest_rank_p90(leads) == 73 * 3600
    assert figures.change_failure_rate.value == 2 / 5
    # 1h20m and 24h30m: median 12h55m
    restores = [restore_time(9, 10), restore_time(14, 15)]
    assert figures.time_to_restore.value == statistics.median(restores) == 12 * 3600 + 55 * 60
    assert [figure.text for figure in figures.figures] == [
        "0.17 per day (1.2 per week)",
        "2d 1h",
        "3d 1h",
        "40%",
        "12h 55m",
    ]
    assert figures.change_failure_rate.how == "2 of 5 deployments to prod failed verification or were rolled back"


def test_a_window_counts_only_what_started_in_it(scripted: Scripted) -> None:
    """From 10 Nov 12:00: deployments 14, 19, 20; 14 was rolled back; one incident, 12 Nov 09:00 -> 13 Nov 09:30."""
    figures = metrics(scripted.config, 20 * DAY, UNTIL)
    assert figures.since == UNTIL - timedelta(days=20)
    assert figures.deployments == 3
    assert figures.deployment_frequency.value == 3 / 20
    leads = [lead_time(14, "A3"), lead_time(19, "A4"), lead_time(20, "A4")]
    assert figures.lead_time.value == statistics.median(leads) == 60 * 3600
    assert figures.lead_time_p90.value == nearest_rank_p90(leads) == 73 * 3600
    assert figures.change_failure_rate.value == 1 / 3
    assert figures.time_to_restore.value == restore_time(14, 15) == 24 * 3600 + 30 * 60


def test_no_data_is_said_so(scripted: Scripted) -> None:
    """The last 3 days (from 27 Nov 12:00) hold no prod deployment: nothing to measure lead time or failures on."""
    figures = metrics(scripted.config, 3 * DAY, UNTIL)
    assert figures.deployments == 0
    assert figures.deployment_frequency.value == 0
    for figure in (figures.lead_time, figures.lead_time_p90, figures.change_failure_rate, figures.time_to_restore):
        assert (figure.value, figure.text) == (None, NO_DATA)


def test_metrics_json(scripted: Scripted) -> None:
    result = CliRunner().invoke(app, ["metrics", "--since", "3650d", "--json", "--config", str(scripted.config_path)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["env"] == "prod" and printed["deployments"] == 5
    assert [figure["name"] for figure in printed["figures"]] == [
        "deployment frequency",
        "lead time for changes (median)",
        "lead time for changes (p90)",
        "change failure rate",
        "time to restore (median)",
    ]
    assert [figure["value"] for figure in printed["figures"][1:]] == [49 * 3600, 73 * 3600, 2 / 5, 46500]


@pytest.mark.parametrize("since", ["soon", "0", "-3d"])
def test_a_bad_window_is_refused(scripted: Scripted, since: str) -> None:
    result = CliRunner().invoke(app, ["metrics", "--since", since, "--config", str(scripted.config_path)])
    assert isinstance(result.exception, InputError)


def test_metrics_print_how_each_figure_was_computed_without_importing_prefect(scripted: Scripted) -> None:
    exit_code, output, prefect_imported = cli_in_fresh_process("metrics", "--config", str(scripted.config_path))
    assert exit_code == 0, output
    assert not prefect_imported
    lines = output.splitlines()
    assert [line.split(":")[0] for line in lines[1::2]] == [
        "deployment frequency",
        "lead time for changes (median)",
        "lead time for changes (p90)",
        "change failure rate",
        "time to restore (median)",
    ]
    assert all(line.startswith("    ") for line in lines[2::2])


def a_change(
    when: datetime, env: str, kind: str, before: str, after: str, outcome: bool | None = None, **fields
) -> Change:
    verdict = None
    if outcome is not None:
        verdict = Verdict("hello", env, after, f"commit-{when:%d%H%M}", outcome, "-", when + timedelta(minutes=30))
    return Change(
        f"commit-{when:%d%H%M}", when, env, kind, (Move("eu", before, after),), "-", verdict=verdict, **fields
    )


def test_failures_in_a_row_are_one_incident_and_untraced_versions_are_said_so() -> None:
    """A hand-set 0.0.9 (no RC: untraced) runs; 1.0.0 fails at 00:00, 1.0.1 (its commit unknown) fails at 01:00, the
    rollback to 0.0.9 at 03:00 is verified at 03:30: one incident of 3h30m. 1.1.0, by hand, fails and is not restored.
    Deployments: 0.0.9, 1.0.0, 1.0.1, 1.1.0 (not the rollback); 3 of them failed; only 1.0.0 is traced (18h)."""
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    oldest_first = [
        a_change(day - timedelta(days=1), "prod", "manual", "", "0.0.9", True),
        a_change(day - timedelta(hours=12), "stage", "promote", "", "1.0.0-rc.aaaaaaa", True),
        a_change(day, "prod", "release", "0.0.9", "1.0.0", False),
        a_change(day + timedelta(hours=0, minutes=30), "stage", "promote", "", "1.0.1-rc.bbbbbbb", True),
        a_change(day + timedelta(hours=1), "prod", "release", "1.0.0", "1.0.1", False),
        a_change(day + timedelta(hours=3), "prod", "rollback", "1.0.1", "0.0.9", True, rollback_of="1.0.1"),
        a_change(day + timedelta(days=1), "prod", "manual", "0.0.9", "1.1.0", False),
    ]
    app_commit_times = {"1.0.0-rc.aaaaaaa": day - timedelta(hours=18)}
    figures = compute_metrics(
        list(reversed(oldest_first)),
        prod="prod",
        source="stage",
        since=timedelta(days=4),
        until=day + timedelta(days=2),
        commit_time=app_commit_times.get,
    )
    assert figures.deployments == 4
    assert figures.change_failure_rate.value == 3 / 4
    assert (figures.lead_time.value, figures.lead_time_p90.value) == (18 * 3600, 18 * 3600)
    assert figures.lead_time.how.endswith(
        "1 of 4 deployments traced to their app commit (3 not: no RC or unknown commit)"
    )
    assert figures.time_to_restore.value == 3 * 3600 + 30 * 60
    assert figures.time_to_restore.how.endswith("median over 1 incident started in the window (1 not restored yet)")


def test_only_promos_records_and_commits_count() -> None:
    """A forged failed verdict is no failure and a forged verified one restores nothing; a commit worded as a
    rollback that is not promo's is a hand edit (history marks it ``manual``): a deployment, not a failure of the
    one before it."""
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)

    def forged(change: Change) -> Change:
        assert change.verdict is not None
        untrusted = dataclasses.replace(change.verdict, trusted=False, untrusted_reason="no valid signature")
        return dataclasses.replace(change, verdict=untrusted)

    oldest_first = [
        a_change(day, "prod", "release", "", "1.0.0", True),
        forged(a_change(day + timedelta(hours=1), "prod", "release", "1.0.0", "1.0.1", False)),
        a_change(day + timedelta(hours=2), "prod", "release", "1.0.1", "1.0.2", False),
        forged(a_change(day + timedelta(hours=3), "prod", "release", "1.0.2", "1.0.3", True)),
        a_change(day + timedelta(hours=5), "prod", "manual", "1.0.3", "1.0.0", True),  # "rollback(...)" by hand
    ]
    figures = compute_metrics(
        list(reversed(oldest_first)),
        prod="prod",
        source="stage",
        since=timedelta(days=2),
        until=day + timedelta(days=1),
        commit_time=lambda rc: None,
    )
    assert figures.deployments == 5
    assert figures.change_failure_rate.value == 1 / 5  # only 1.0.2's own, trusted failure
    assert figures.time_to_restore.value == 3 * 3600 + 30 * 60  # 1.0.2 at 02:00 -> the hand edit verified at 05:30
