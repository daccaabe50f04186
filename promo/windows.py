"""Change windows: when a write into an environment may happen, e.g. ``Mon-Thu 09:00-16:00 Europe/Berlin``.

A window is days (one day, a range such as ``Mon-Thu`` or ``Fri-Mon``, or a list ``Mon,Wed,Fri``), a time span on
each of those days and an IANA time zone. The span is wall-clock time in that zone, so a window keeps its hours
across daylight-saving changes; an opening that falls into a spring-forward gap opens when the clock jumps past it.
An environment with several windows is open while any of them is. Plain data and arithmetic, no Prefect import; the
clock is always passed in (``utc_now`` is the one the flows use), so tests choose the time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from promo.errors import ConflictError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
EXAMPLE = "Mon-Thu 09:00-16:00 Europe/Berlin"
_WINDOW = re.compile(r"(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})\s+(?P<zone>\S+)")
_MINUTE = timedelta(minutes=1)
_WAKE_AT_LEAST_EVERY = 60.0  # seconds: a waiting gate looks at the clock again at least this often


@dataclass(frozen=True)
class Window:
    text: str  # as promo.yaml wrote it
    days: frozenset[int]  # 0 = Monday
    start: clock_time
    end: clock_time | None  # None: the end of the day (24:00)
    zone: ZoneInfo

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        at = local.time()
        return local.weekday() in self.days and self.start <= at and (self.end is None or at < self.end)

    def next_opening(self, now: datetime) -> datetime:
        """The first opening after ``now`` (an aware datetime in the window's zone)."""
        today = now.astimezone(self.zone).date()
        for offset in range(8):
            day = today + timedelta(days=offset)
            if day.weekday() in self.days:
                opening = _wall_clock(day, self.start, self.zone)
                if opening > now:
                    return opening
        raise AssertionError(f"window {self.text!r} never opens")  # parse_window refuses a window without days


def parse_window(text: str) -> Window:
    """``Mon-Thu 09:00-16:00 Europe/Berlin`` as a Window; a ValueError saying what is wrong otherwise."""
    match = _WINDOW.fullmatch(str(text).strip())
    if match is None:
        raise ValueError(f"{text!r} is no window: write DAYS HH:MM-HH:MM ZONE, e.g. '{EXAMPLE}'")
    start, end = _time(match["start"], text), _time(match["end"], text)
    if end is not None and (start is None or end <= start):
        raise ValueError(f"{text!r} ends before it starts: a window lies within one day (00:00-24:00 is all of it)")
    if start is None:
        raise ValueError(f"{text!r} starts at 24:00: start at 00:00 of the next day instead")
    try:
        zone = ZoneInfo(match["zone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{text!r} names no known time zone {match['zone']!r}: use e.g. Europe/Berlin, UTC") from None
    return Window(str(text).strip(), _days(match["days"], text), start, end, zone)


def parse_windows(texts: Sequence[str]) -> list[Window]:
    return [parse_window(text) for text in texts]


def next_opening(windows: Sequence[Window], now: datetime) -> datetime | None:
    """None while any window is open (or there are none: always open); else the earliest next opening."""
    if not windows or any(window.is_open(now) for window in windows):
        return None
    return min((window.next_opening(now) for window in windows), key=lambda opening: opening.astimezone(UTC))


def describe_opening(opening: datetime) -> str:
    """``Mon 2026-03-30 09:00 CEST (07:00 UTC)``: the window's own time, and UTC for whoever reads it elsewhere."""
    utc = opening.astimezone(UTC)
    return f"{opening:%a %Y-%m-%d %H:%M} {opening.tzname()} ({utc:%a %H:%M} UTC)"


def closed_until(windows: Sequence[str], now: datetime) -> datetime | None:
    """``next_opening`` of the windows as promo.yaml writes them: None while open (or none are set)."""
    return next_opening(parse_windows(windows), now)


def check_window(app: str, env: str, windows: Sequence[str], now: datetime) -> None:
    """Refuse a write into ``env`` outside its windows, in one line naming the next opening."""
    opening = closed_until(windows, now)
    if opening is not None:
        raise ConflictError(
            f"{env} of {app} is outside its change windows ({'; '.join(windows)}): the next opens "
            f"{describe_opening(opening)}",
            f"run it again then, or change environments.{env}.windows in promo.yaml",
        )


def wait_for_window(
    windows: Sequence[str],
    *,
    now: Callable[[], datetime],
    sleep: Callable[[float], None] = time.sleep,
    announce: Callable[[datetime], None] = lambda opening: None,
) -> None:
    """Return once a window is open, ``announce``-ing the opening it waits for (once per opening)."""
    parsed = parse_windows(windows)
    announced: datetime | None = None
    while (opening := next_opening(parsed, now())) is not None:
        if opening != announced:
            announce(opening)
            announced = opening
        sleep(min(_WAKE_AT_LEAST_EVERY, max((opening - now()).total_seconds(), 0.0) + 0.01))


def utc_now() -> datetime:
    """The clock the flows read windows by (tests replace it)."""
    return datetime.now(UTC)


def _wall_clock(day: date, at: clock_time, zone: ZoneInfo) -> datetime:
    """``at`` on ``day`` in ``zone``; a wall time the spring-forward gap skips opens when the clock jumps past it,
    the first instant ``is_open`` holds (the fall-back hour that repeats opens the first time)."""
    opening = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
    while _reached(opening - _MINUTE, day, at, zone):  # only inside a gap: at most the gap's minutes
        opening -= _MINUTE
    return opening.astimezone(zone)


def _reached(instant: datetime, day: date, at: clock_time, zone: ZoneInfo) -> bool:
    local = instant.astimezone(zone)
    return local.date() == day and local.time() >= at


def _time(text: str, window: str) -> clock_time | None:
    hours, minutes = (int(part) for part in text.split(":"))
    if (hours, minutes) == (24, 0):
        return None
    if hours > 23 or minutes > 59:
        raise ValueError(f"{window!r} has no time {text!r}: use HH:MM from 00:00 to 24:00")
    return clock_time(hours, minutes)


def _days(text: str, window: str) -> frozenset[int]:
    """``Mon``, ``Mon-Thu``, ``Fri-Mon`` (across the weekend) or ``Mon,Wed,Fri-Sun``."""
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            start, stop = _day(first), _day(last or first)
        except ValueError:
            known = ", ".join(DAYS)
            raise ValueError(f"{window!r} has no days {text!r}: use {known}, ranges Mon-Thu, lists Mon,Wed") from None
        days.update((start + step) % 7 for step in range((stop - start) % 7 + 1))
    return frozenset(days)


def _day(text: str) -> int:
    return DAYS.index(text.capitalize())
