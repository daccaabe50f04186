"""A promotion that replaces a newer build says so first, and approving it needs a reason: the order of two builds
of one base read from a real app repository (a bare remote on disk), SemVer between bases."""

from __future__ import annotations

from pathlib import Path

import pytest

from promo.errors import InputError
from promo.gitops.mirror import Mirror
from promo.release.approvals import ApprovalRequest, Decision, check_override
from promo.release.changes import MoveBack
from promo.release.moving_back import moving_back
from promo.versions import rc_version, short_sha
from tests.fixtures.gitrepos import git, make_remote

CHART_YAML = "apiVersion: v2\nname: hello\nversion: 0.1.0\n"


@pytest.fixture()
def app_history(tmp_path: Path) -> tuple[Mirror, list[str], str]:
    """main: four commits, oldest first; and a commit on a branch off the first, which main does not contain."""
    remote = make_remote(tmp_path / "app", {"charts/hello/Chart.yaml": CHART_YAML})
    main = [remote.head()] + [remote.commit({}, f"build {number}") for number in (1, 2, 3)]
    git(remote.writer, "checkout", "--quiet", "-b", "hotfix-0-1-1", main[0])
    git(remote.writer, "commit", "--quiet", "--allow-empty", "-m", "a fix off the line")
    git(remote.writer, "push", "--quiet", "origin", "hotfix-0-1-1")
    branch = git(remote.writer, "rev-parse", "HEAD").strip()
    mirror = Mirror.open(remote.url, tmp_path / "cache")
    mirror.fetch()
    return mirror, main, branch


def rc(sha: str, base: str = "0.1.0") -> str:
    return rc_version(base, sha)


def test_an_older_build_of_one_base_is_counted_back_in_the_app_repositorys_history(app_history):
    mirror, main, _ = app_history
    older, newer = rc(main[0]), rc(main[3])
    move = moving_back(mirror, [newer], older)
    assert move == MoveBack(older, newer, behind=3)
    assert move.line == f"replaces a newer build: {short_sha(main[0])} is 3 commits behind {short_sha(main[3])}"
    assert move.needs_reason
    assert moving_back(mirror, [rc(main[2])], rc(main[1])).line.endswith("is 1 commit behind " + short_sha(main[2]))


def test_a_newer_build_the_same_build_or_an_empty_target_is_no_move_back(app_history):
    mirror, main, _ = app_history
    assert moving_back(mirror, [rc(main[0])], rc(main[3])) is None
    assert moving_back(mirror, [rc(main[3])], rc(main[3])) is None
    assert moving_back(mirror, ["", ""], rc(main[0])) is None
    assert moving_back(mirror, [], rc(main[0])) is None


def test_between_bases_semver_decides_and_a_release_is_above_its_own_builds(app_history):
    mirror, main, _ = app_history
    lower, higher = rc(main[3], "0.2.0"), rc(main[0], "0.3.0")  # the commits' order does not count across bases
    move = moving_back(mirror, [higher], lower)
    assert move == MoveBack(lower, higher)
    assert move.line == f"replaces a newer version: {lower} is below {higher}" and move.needs_reason
    assert moving_back(mirror, [lower], higher) is None
    assert moving_back(mirror, ["0.1.0"], rc(main[3])).line == f"replaces a newer version: {rc(main[3])} is below 0.1.0"
    assert moving_back(mirror, [rc(main[3])], "0.1.0") is None


def test_builds_the_history_cannot_order_are_said_to_be_unordered_and_need_no_reason(app_history):
    mirror, main, branch = app_history
    off_the_line = moving_back(mirror, [rc(main[3])], rc(branch))
    assert off_the_line.line == (
        f"may replace a newer build: cannot tell whether {short_sha(branch)} is older than {short_sha(main[3])} "
        "(neither build's commit contains the other in the app repository)"
    )
    assert not off_the_line.needs_reason
    unknown = "0.1.0-rc.fedcba9876"  # a commit the app repository does not have (a branch since deleted)
    gone = moving_back(mirror, [unknown], rc(main[0]))
    assert gone.line.endswith("(fedcba9876 is not in the app repository)") and not gone.needs_reason


def test_of_several_clusters_a_known_move_back_is_named_before_an_unordered_one(app_history):
    mirror, main, branch = app_history
    move = moving_back(mirror, [rc(branch), "", rc(main[2])], rc(main[1]))
    assert move == MoveBack(rc(main[1]), rc(main[2]), behind=1)


def request(moves_back: MoveBack | None, **changes: object) -> ApprovalRequest:
    shown = dict(
        app="hello", version="0.1.0-rc.424890024a", source="dev", target="test", diff="",
        running="0.1.0-rc.d058852", current={"preprod": "0.1.0-rc.d058852"}, moves_back=moves_back,
    )  # fmt: skip
    return ApprovalRequest(**{**shown, **changes})


BACK = MoveBack("0.1.0-rc.424890024a", "0.1.0-rc.d058852", behind=3)
UNORDERED = MoveBack("0.1.0-rc.424890024a", "0.1.0-rc.d058852", unknown="neither contains the other")


def test_a_gate_that_moves_back_says_so_in_its_first_line_and_approving_needs_a_reason():
    gate = request(BACK)
    first = "replaces a newer build: 424890024a is 3 commits behind d058852"
    assert gate.description().splitlines()[0].startswith(f"**⚠️ {first}**; ")
    assert gate.summary.startswith(f"{first}: hello 0.1.0-rc.424890024a: dev -> test")
    assert gate.needs_override
    with pytest.raises(InputError) as refused:
        check_override(gate, Decision(approved=True, approver="carol"))
    assert str(refused.value) == (
        f"hello 0.1.0-rc.424890024a into test {first}; promote a build at least as new, "
        "or approve anyway with an override reason (--override-reason TEXT)"
    )
    check_override(gate, Decision(approved=True, approver="carol", override_reason="dev was rolled back on purpose"))
    check_override(gate, Decision(approved=False, approver="carol"))  # a rejection needs no reason


def test_a_gate_that_moves_back_and_is_not_ready_names_both():
    gate = request(BACK, not_ready=("0.1.0-rc.424890024a has soaked 0 of 60 minutes in dev",))
    assert gate.description().splitlines()[0].startswith("**⚠️ replaces a newer build")
    with pytest.raises(InputError) as refused:
        check_override(gate, Decision(approved=True, approver="carol", override_reason="  "))
    assert "replaces a newer build" in str(refused.value) and "is not ready for test" in str(refused.value)
    assert str(refused.value).endswith("or approve anyway with an override reason (--override-reason TEXT)")


def test_an_unordered_gate_says_so_first_but_needs_no_reason_and_a_plain_one_is_unchanged():
    unordered = request(UNORDERED)
    assert unordered.description().splitlines()[0].startswith("**⚠️ may replace a newer build: cannot tell")
    assert not unordered.needs_override
    check_override(unordered, Decision(approved=True, approver="carol"))

    plain = request(None)
    assert plain.description().startswith("**Promote hello `0.1.0-rc.424890024a` dev → test**")
    assert plain.summary == "hello 0.1.0-rc.424890024a: dev -> test (now running in test: 0.1.0-rc.d058852)"
    assert not plain.needs_override
