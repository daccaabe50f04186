"""Freezes and rejections as signed records in a real bare GitOps remote: the state is the fold of the trusted
entries, oldest first; a freeze whose --until passed has ended; an unsigned entry
never counts; --until reads ISO 8601 and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from promo.errors import ConflictError, InputError
from promo.gitops import controls
from promo.gitops.mirror import Mirror
from tests.fixtures.gitrepos import RECORD_SIGNER, GitRemote

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def mirror_of(remote: GitRemote, cache: Path) -> Mirror:
    mirror = Mirror.open(remote.url, cache, branch="main")
    mirror.fetch()
    return mirror


def test_a_freeze_holds_until_it_is_lifted_or_its_end_passes(gitops_remote: GitRemote, tmp_path: Path) -> None:
    writer = mirror_of(gitops_remote, tmp_path / "writer")
    now = datetime.now(UTC)
    freeze = controls.FREEZES, "prod", controls.FREEZE

    controls.record_control(writer, *freeze, RECORD_SIGNER, by="alice", reason="release week")
    reader = mirror_of(gitops_remote, tmp_path / "reader")  # another machine, its cache empty until now
    found = controls.read_freeze(reader, "prod", now)
    assert found is not None and found.line() == "prod is frozen by alice until unfrozen: release week"
    assert controls.read_freeze(reader, "test", now) is None
    with pytest.raises(ConflictError, match="prod is frozen by alice until unfrozen: release week, so hello does not"):
        raise found.refusal("hello")

    controls.record_control(writer, controls.FREEZES, "prod", controls.UNFREEZE, RECORD_SIGNER, by="bob")
    assert controls.read_freeze(reader, "prod", now) is None

    until = now + timedelta(hours=2)
    controls.record_control(writer, *freeze, RECORD_SIGNER, by="carol", reason="deploy freeze", until=until)
    assert controls.read_freeze(reader, "prod", now).until == until.replace(microsecond=0)
    assert controls.read_freeze(reader, "prod", until + timedelta(seconds=1)) is None  # it ended by itself
    actions = [(entry.action, entry.by) for entry in controls.read_controls(reader, controls.FREEZES)]
    assert actions == [("freeze", "alice"), ("unfreeze", "bob"), ("freeze", "carol")]


def test_rejections_fold_per_version_and_untrusted_entries_never_count(
    gitops_remote: GitRemote, tmp_path: Path
) -> None:
    mirror = mirror_of(gitops_remote, tmp_path / "cache")
    reject = controls.REJECTIONS, "hello"
    controls.record_control(mirror, *reject, controls.REJECT, RECORD_SIGNER, by="bob", reason="bad", version="0.2.0")
    controls.record_control(mirror, *reject, controls.REJECT, RECORD_SIGNER, by="bob", reason="worse", version="0.3.0")
    controls.record_control(mirror, *reject, controls.UNREJECT, RECORD_SIGNER, by="eve", reason="fine", version="0.2.0")
    rejected = controls.read_rejections(mirror, "hello")
    assert {version: rejection.line() for version, rejection in rejected.items()} == {
        "0.3.0": "0.3.0 was rejected by bob: worse"
    }
    with pytest.raises(ConflictError, match=r"^hello 0.3.0 was rejected by bob: worse; choose another version"):
        controls.check_not_rejected(rejected, "0.1.0", "0.3.0")
    controls.check_not_rejected(rejected, "0.2.0")

    # An unsigned entry (anyone who may push can append one): shown, untrusted, never counted.
    mirror.append_log(controls.REJECTIONS, "hello", "reject\n\nAction: reject\nApp: hello\nVersion: 0.1.0\nBy: x\n")
    entries = controls.read_controls(mirror, controls.REJECTIONS, "hello")
    assert [entry.trusted for entry in entries] == [True, True, True, False]
    assert "0.1.0" not in controls.read_rejections(mirror, "hello")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW + timedelta(hours=2)),
        ("1h30m", NOW + timedelta(minutes=90)),
        ("1d", NOW + timedelta(days=1)),
        ("2026-12-07T18:00", datetime(2026, 12, 7, 18, 0, tzinfo=UTC)),
        ("2026-12-07T18:00+01:00", datetime(2026, 12, 7, 17, 0, tzinfo=UTC)),
    ],
)
def test_until_reads_iso_8601_and_durations(text: str, expected: datetime) -> None:
    assert controls.parse_until(text, NOW) == expected


@pytest.mark.parametrize(("text", "why"), [("tomorrow", "is no time"), ("2026-12-07T11:00", "has passed already")])
def test_a_bad_until_is_one_line(text: str, why: str) -> None:
    with pytest.raises(InputError, match=why):
        controls.parse_until(text, NOW)
