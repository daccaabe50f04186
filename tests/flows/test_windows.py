"""Change windows in real flows, with an injected clock: outside a window a publish or promotion is refused at
planning in one line naming the next opening, a rollback is not (the emergency exit), and an approval given outside
the window waits for it unless the approver gives an override reason."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from promo.errors import ConflictError
from promo.flows.gate import approving_as
from promo.flows.promote import promote_test
from promo.flows.publish_dev import publish_dev
from promo.flows.rollback import rollback
from promo import windows
from promo.release.approvals import Decision
from promo.release.gates import decide
from tests.flows.test_cli import error_line, run_promo, write_config
from tests.flows.test_gate import git, gitops_head
from tests.flows.test_release import target_revision
from tests.flows.test_rollback import publish

WEEKDAYS = "Mon-Fri 09:00-16:00 Europe/Berlin"
SATURDAY = datetime(2026, 12, 12, 12, 0, tzinfo=UTC)


class Clock:
    """The time windows are read by: ``at`` sets it, and from then on it runs at real speed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.set_at, self.started = SATURDAY, time.monotonic()
        monkeypatch.setattr(windows, "utc_now", self.now)

    def at(self, moment: datetime) -> None:
        self.set_at, self.started = moment, time.monotonic()

    def now(self) -> datetime:
        return self.set_at + timedelta(seconds=time.monotonic() - self.started)


def with_windows(sandbox, **by_env: str) -> str:
    def change(data) -> None:
        for env in data["environments"]:
            if env["name"] in by_env:
                env["windows"] = [by_env[env["name"]]]

    return write_config(sandbox, change)


def test_outside_its_window_a_publish_and_a_promotion_are_refused_and_a_rollback_is_not(
    sandbox, monkeypatch, capsys
):
    older, newer = publish(sandbox), publish(sandbox)
    config = with_windows(sandbox, dev=WEEKDAYS, test=WEEKDAYS)
    Clock(monkeypatch)  # Saturday noon
    before = gitops_head(sandbox)
    opens = "the next opens Mon 2026-12-14 09:00 CET (Mon 08:00 UTC)"

    code, _, err = run_promo(monkeypatch, capsys, "promote-test", "--yes", "--config", config)
    assert code == 6
    assert error_line(err) == (
        f"promo: error: test of hello is outside its change windows ({WEEKDAYS}): {opens}; "
        "run it again then, or change environments.test.windows in promo.yaml"
    )
    refused = re.escape(f"dev of hello is outside its change windows ({WEEKDAYS}): {opens};")
    with pytest.raises(ConflictError, match=refused):
        publish_dev(config_path=config)
    assert gitops_head(sandbox) == before
    code, out, err = run_promo(monkeypatch, capsys, "status", "--config", config)
    assert code == 0, err
    closed = [f"{env}: outside its change windows, {opens}" for env in ("dev", "test")]
    assert out.splitlines()[-2:] == closed

    with approving_as("carol"):  # the emergency exit: a window does not hold a rollback back
        rollback(env="dev", to=older.version, config_path=config)
    assert target_revision(sandbox, "dev") == older.version != newer.version


def test_an_approval_outside_the_window_waits_for_it_and_one_with_an_override_reason_does_not(
    sandbox, background, monkeypatch, caplog
):
    publish(sandbox)
    config = with_windows(sandbox, test="Mon-Sun 09:00-10:00 UTC")
    clock = Clock(monkeypatch)
    clock.at(datetime(2026, 12, 12, 9, 30, tzinfo=UTC))  # planned inside the window
    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")
    clock.at(datetime(2026, 12, 12, 8, 59, 57, tzinfo=UTC))  # approved 3 s before it opens again
    before, approved = gitops_head(sandbox), time.monotonic()
    with caplog.at_level(logging.INFO):
        decide(gate, Decision(approved=True, approver="carol"))
        promotion = run.join()
    assert time.monotonic() - approved >= 2.5, "the write did not wait for the window"
    assert "waiting for the window opening at Sat 2026-12-12 09:00 UTC (Sat 09:00 UTC)" in caplog.text
    assert promotion.gitops_commit and gitops_head(sandbox) != before

    newer = publish(sandbox)
    clock.at(datetime(2026, 12, 12, 9, 30, tzinfo=UTC))
    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")
    clock.at(SATURDAY)  # 12:00: closed until tomorrow 09:00
    reason = "the fix for the outage must not wait"
    decide(gate, Decision(approved=True, approver="carol", override_reason=reason))
    promotion = run.join(timeout=60)
    assert target_revision(sandbox, "test") == newer.version
    message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", promotion.gitops_commit)
    assert f"Override-Reason: {reason}" in message.splitlines()
