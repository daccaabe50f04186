"""Change windows with an injected clock: inside or not, the next opening (across weekends and daylight-saving
changes) in the window's zone and UTC, the one-line refusal, the wait of an approval outside them, and promo.yaml's
one-line error for a window that is not one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from promo.config import validate_config
from promo.errors import ConfigError, ConflictError
from promo.release.approvals import ApprovalRequest
from promo.windows import (
    check_window,
    describe_opening,
    next_opening,
    parse_window,
    parse_windows,
    wait_for_window,
)

BERLIN_WEEKDAYS = "Mon-Thu 09:00-16:00 Europe/Berlin"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def opening(windows: list[str], now: datetime) -> str | None:
    found = next_opening(parse_windows(windows), now)
    return None if found is None else describe_opening(found)


def test_inside_a_window_there_is_no_next_opening_and_its_end_is_outside():
    assert opening([BERLIN_WEEKDAYS], utc(2026, 12, 7, 8, 0)) is None  # Mon 09:00 CET: opens inclusive
    assert opening([BERLIN_WEEKDAYS], utc(2026, 12, 10, 14, 59)) is None  # Thu 15:59 CET
    assert opening([BERLIN_WEEKDAYS], utc(2026, 12, 10, 15, 0)) == "Mon 2026-12-14 09:00 CET (Mon 08:00 UTC)"


def test_the_next_opening_after_friday_is_monday_across_the_weekend():
    assert opening([BERLIN_WEEKDAYS], utc(2026, 12, 11, 12, 0)) == "Mon 2026-12-14 09:00 CET (Mon 08:00 UTC)"
    assert opening([BERLIN_WEEKDAYS], utc(2026, 12, 7, 7, 59)) == "Mon 2026-12-07 09:00 CET (Mon 08:00 UTC)"


def test_a_window_keeps_its_wall_clock_hours_across_daylight_saving_changes():
    # Berlin moves to CEST on Sunday 2026-03-29: Monday's 09:00 is 07:00 UTC, Thursday's was 08:00 UTC.
    assert opening([BERLIN_WEEKDAYS], utc(2026, 3, 27, 12, 0)) == "Mon 2026-03-30 09:00 CEST (Mon 07:00 UTC)"
    assert opening([BERLIN_WEEKDAYS], utc(2026, 10, 23, 12, 0)) == "Mon 2026-10-26 09:00 CET (Mon 08:00 UTC)"
    window = parse_window(BERLIN_WEEKDAYS)
    assert window.is_open(utc(2026, 3, 30, 7, 0)) and not window.is_open(utc(2026, 3, 30, 6, 59))


def test_an_opening_the_spring_forward_gap_skips_opens_when_the_clock_jumps_and_a_repeated_hour_opens_once():
    night = ["Sun 02:30-04:00 Europe/Berlin"]
    assert opening(night, utc(2026, 3, 28, 12, 0)) == "Sun 2026-03-29 03:00 CEST (Sun 01:00 UTC)"
    assert parse_window(night[0]).is_open(utc(2026, 3, 29, 1, 0))
    assert opening(night, utc(2026, 10, 24, 12, 0)) == "Sun 2026-10-25 02:30 CEST (Sun 00:30 UTC)"


def test_day_ranges_wrap_over_the_weekend_lists_combine_and_the_earliest_of_several_windows_opens_first():
    assert parse_window("Fri-Mon 00:00-24:00 UTC").days == {4, 5, 6, 0}
    assert parse_window("Mon,Wed,Fri-Sat 10:00-11:00 UTC").days == {0, 2, 4, 5}
    several = ["Mon 09:00-10:00 America/New_York", "Mon 09:00-10:00 Asia/Tokyo"]
    assert opening(several, utc(2026, 12, 5, 0, 0)) == "Mon 2026-12-07 09:00 JST (Mon 00:00 UTC)"
    assert opening(several, utc(2026, 12, 7, 0, 30)) is None
    assert opening([], utc(2026, 12, 5, 0, 0)) is None  # no windows: always open


def test_outside_its_windows_a_write_is_refused_in_one_line_naming_the_next_opening():
    with pytest.raises(ConflictError) as refused:
        check_window("hello", "prod", [BERLIN_WEEKDAYS], utc(2026, 12, 11, 12, 0))
    assert str(refused.value) == (
        f"prod of hello is outside its change windows ({BERLIN_WEEKDAYS}): the next opens Mon 2026-12-14 09:00 CET "
        "(Mon 08:00 UTC); run it again then, or change environments.prod.windows in promo.yaml"
    )
    check_window("hello", "prod", [BERLIN_WEEKDAYS], utc(2026, 12, 14, 8, 0))


def test_an_approval_outside_its_window_waits_for_the_opening_and_says_which_once():
    clock = [utc(2026, 12, 11, 14, 50)]  # Friday: the window "Fri 15:00-16:00" opens in 10 minutes
    slept: list[float] = []
    announced: list[datetime] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    wait_for_window(["Fri 15:00-16:00 UTC"], now=lambda: clock[0], sleep=sleep, announce=announced.append)
    assert announced == [utc(2026, 12, 11, 15, 0)]
    assert utc(2026, 12, 11, 15, 0) <= clock[0] < utc(2026, 12, 11, 15, 1)
    assert max(slept) <= 60  # it looks at the clock at least every minute (a machine that slept, a clock that jumped)


@pytest.mark.parametrize(
    ("window", "says"),
    [
        ("Mon-Thu 16:00-09:00 Europe/Berlin", "ends before it starts"),
        ("Mon-Thu 09:00-16:00 Europe/Nowhere", "names no known time zone 'Europe/Nowhere'"),
        ("Mon-Thursday 09:00-16:00 UTC", "has no days 'Mon-Thursday'"),
        ("Mon 9-16 UTC", "is no window: write DAYS HH:MM-HH:MM ZONE"),
        ("Mon 09:00-16:60 UTC", "has no time '16:60'"),
    ],
)
def test_a_window_that_is_not_one_is_a_one_line_config_error(window: str, says: str):
    data = {
        "app": "hello",
        "app_repo": {"url": "file:///app"},
        "gitops": {"url": "file:///gitops"},
        "chart": {"path": "charts/hello", "repository": "localhost:5000/charts"},
        "image": {"repository": "localhost:5000/hello"},
        "environments": [{"name": "dev", "clusters": ["a"]}, {"name": "prod", "clusters": ["b"], "windows": [window]}],
    }
    with pytest.raises(ConfigError) as invalid:
        validate_config(data, "promo.yaml")
    assert str(invalid.value).startswith(f"promo.yaml: environments.1.windows: {window!r} ")
    assert says in str(invalid.value) and "\n" not in str(invalid.value)


def test_the_gate_page_of_an_environment_with_windows_says_an_approval_outside_them_waits():
    release = dict(app="hello", version="0.2.0", source="stage", target="prod", diff="")
    shown = ApprovalRequest(**release, windows=(BERLIN_WEEKDAYS,)).description()
    assert f"only in its change windows ({BERLIN_WEEKDAYS}): an approval outside them waits" in shown
    assert "change windows" not in ApprovalRequest(**release).description()  # a rollback's page: none apply
