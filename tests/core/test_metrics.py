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

import json
import math
import statistics
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from promo.cli import app
from promo.errors import InputError
from promo.metrics import NO_DATA, metrics
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
