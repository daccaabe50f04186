"""`promo trace`: from an RC, a release or an app commit to everything it became, on the scripted history.

Reading the script (tests/fixtures/history_script.py) by step index: A2's RC was deployed to dev (4), promoted to
test where it failed (5), rolled back (6), put back by hand (7), promoted to stage (8) and released to prod as 0.1.1
(9), then rolled back (10). A1's RC went dev (0), test (1), stage (2), prod as 0.1.0 (3), and came back by rollback in
test (6) and twice in prod (10, 15). A4's went dev (16), test (17), stage (18), by hand into prod's us cluster (19)
and as 0.1.3 into prod (20); step 22 edits another field of prod/eu and is no arrival. A5's only reached dev (21).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from promo.cli.main import app
from promo.errors import InputError, NotFound
from promo.reports.trace import trace
from tests.fixtures.history_script import (
    APP_COMMITS,
    STEPS,
    Scripted,
    chart_digest,
    cli_in_fresh_process,
    image_of,
)


def commits_of(scripted: Scripted, *steps: int) -> list[str]:
    return [scripted.commits[index] for index in steps]


def test_trace_of_a_release_candidate(scripted: Scripted) -> None:
    rc = scripted.version("rc:A2")
    found = trace(scripted.config, rc)
    assert (found.commit.sha, found.commit.time, found.commit.subject) == (
        scripted.app_shas["A2"],
        APP_COMMITS["A2"][0],
        APP_COMMITS["A2"][1],
    )
    assert (found.rc, found.image, found.rc_digest) == (rc, image_of("A2"), chart_digest(4))
    assert [change.commit for change in found.reached] == commits_of(scripted, 4, 5, 7, 8, 9)
    assert [(c.env, c.outcome) for c in found.reached] == [
        ("dev", "verified"),
        ("test", "failed"),
        ("test", "-"),
        ("stage", "verified"),
        ("prod", "failed"),
    ]
    assert (found.version, found.release_digest) == ("0.1.1", chart_digest(9))
    assert found.release is not None
    assert (found.release.tag, found.release.commit, found.release.notes) == (
        "v0.1.1",
        scripted.app_shas["A2"],
        "- fix: greeting typo",
    )


def test_trace_of_a_release_goes_back_through_its_candidate(scripted: Scripted) -> None:
    found = trace(scripted.config, "0.1.0")
    assert found.rc == scripted.version("rc:A1")
    assert found.commit.sha == scripted.app_shas["A1"]
    assert [change.commit for change in found.reached] == commits_of(scripted, 0, 1, 2, 3, 6, 10, 15)
    assert [change.approver for change in found.reached] == [None, "carol", "carol", "dave", "carol", "dave", "dave"]
    assert (found.version, found.release_digest) == ("0.1.0", chart_digest(3))
    assert found.release is not None and found.release.tag == "v0.1.0"


@pytest.mark.parametrize("length", [7, 12, 40])
def test_trace_of_an_app_commit_finds_its_candidate(scripted: Scripted, length: int) -> None:
    found = trace(scripted.config, scripted.app_shas["A4"][:length])
    assert found.rc == scripted.version("rc:A4")
    assert [change.commit for change in found.reached] == commits_of(scripted, 16, 17, 18, 19, 20)
    assert found.version == "0.1.3" and found.release is not None and found.release.tag == "v0.1.3"


def test_trace_of_a_candidate_not_released(scripted: Scripted) -> None:
    found = trace(scripted.config, scripted.app_shas["A5"])
    assert [change.commit for change in found.reached] == commits_of(scripted, 21)
    assert (found.version, found.release_digest, found.release) == (None, None, None)
    assert STEPS[21].verdict is not None and found.reached[0].outcome == "failed"


@pytest.mark.parametrize(
    "target, error",
    [
        ("9.9.9", NotFound),  # never released
        ("0.1.9-rc.abc1234", NotFound),  # never deployed
        ("nonsense", InputError),
    ],
)
def test_what_was_never_deployed_is_one_clear_error(scripted: Scripted, target: str, error: type) -> None:
    with pytest.raises(error):
        trace(scripted.config, target)


def test_an_app_commit_never_built(scripted: Scripted) -> None:
    with pytest.raises(NotFound, match="never deployed"):
        trace(scripted.config, scripted.app_initial)


def test_trace_json(scripted: Scripted) -> None:
    result = CliRunner().invoke(app, ["trace", "0.1.1", "--json", "--config", str(scripted.config_path)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == {**trace(scripted.config, "0.1.1").as_json(), "rejected": []}  # nobody rejected it
    assert printed["commit"]["sha"] == scripted.app_shas["A2"]
    assert [entry["env"] for entry in printed["reached"]] == ["dev", "test", "test", "stage", "prod"]
    assert printed["release"] == {
        "version": "0.1.1",
        "chart_digest": chart_digest(9),
        "tag": "v0.1.1",
        "name": "hello 0.1.1",
        "url": None,
        "notes": "- fix: greeting typo",
    }


def test_trace_prints_without_importing_prefect(scripted: Scripted) -> None:
    exit_code, output, prefect_imported = cli_in_fresh_process("trace", "0.1.1", "--config", str(scripted.config_path))
    assert exit_code == 0, output
    assert not prefect_imported
    assert f"app commit  {scripted.app_shas['A2']}" in output
    assert "release     0.1.1" in output and "- fix: greeting typo" in output
