"""`promo history`: every change of the app read back from the GitOps log, exactly as the script wrote it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promo.cli.main import app
from promo.gitops.mirror import Mirror
from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest
from promo.gitops.history import UNTRUSTED, Change, Move, read_history, table_row
from promo.reports.history import app_history
from promo.gitops.verdicts import FAILED, VERIFIED, Verdict, record_verdict
from tests.fixtures.gitrepos import INITIAL_VERSIONS, RECORD_SIGNER, ROOT, GitRemote, application
from tests.fixtures.history_script import (
    CLUSTERS,
    INITIAL_TIME,
    STEPS,
    Scripted,
    chart_digest,
    cli_in_fresh_process,
    image_of,
    manifest,
    promo_message,
)


def expected_changes(scripted: Scripted) -> list[tuple]:
    """(commit, time, env, kind, ((cluster, before, after), ...)) of every change, newest first, replayed from the
    script: each step moves the clusters it names. The initial commit lays out every manifest with no version: it
    moves no version, so it is no change (it used to show as a "manual <none> -> <none>" row per environment)."""
    running = {(env, cluster): "" for env, clusters in CLUSTERS.items() for cluster in clusters}
    steps = []
    for step, commit in zip(STEPS, scripted.commits):
        moves = []
        for cluster, name in step.moves.items():
            moves.append((cluster, running[(step.env, cluster)], scripted.version(name)))
            running[(step.env, cluster)] = scripted.version(name)
        steps.append((commit, step.when, step.env, step.kind, tuple(moves)))
    return list(reversed(steps))


def shape(change: Change) -> tuple:
    moves = tuple((move.cluster, move.before, move.after) for move in change.moves)
    return (change.commit, change.time, change.env, change.kind, moves)


def by_commit(changes: list[Change], commit: str) -> Change:
    (change,) = [change for change in changes if change.commit == commit]
    return change


def test_the_script_writes_what_promo_writes(gitops_remote: GitRemote, cache_dir: Path) -> None:
    """The scripted messages are only worth testing against if promo's writer produces the same bytes."""
    version = "0.1.2-rc.abc1234"
    trailers = {
        "Promoted-From": "dev",
        "Chart-Version": version,
        "Chart-Digest": chart_digest(7),
        "Flow-Run": "promote-test/brave-otter",
        "Approved-By": "carol",
    }
    GitOpsRepo(gitops_remote.url, "main", cache_dir).set_version(
        WriteRequest(
            "hello",
            "test",
            ["preprod"],
            version,
            expected={"preprod": "0.1.1-rc.def5678"},
            subject=f"promote(hello): dev -> test {version}",
            trailers=Trailers(
                promoted_from="dev",
                chart_version=version,
                chart_digest=chart_digest(7),
                flow_run="promote-test/brave-otter",
                approved_by="carol",
            ),
        )
    )
    written = gitops_remote.git("cat-file", "commit", "main").split("\n\n", 1)[1]
    assert written == promo_message(
        "promote", "test", "dev", version, {manifest("test", "preprod"): "0.1.1-rc.def5678"}, trailers
    )

    mirror = Mirror.open(gitops_remote.url, cache_dir / "reader")
    mirror.fetch()
    newest = read_history(mirror, "main", "hello", {"test": ["preprod"]}, root=ROOT)[0]
    assert (newest.kind, newest.previous, newest.version, newest.approver, newest.promoted_from) == (
        "promote",
        "0.1.1-rc.def5678",
        version,
        "carol",
        "dev",
    )


def test_every_change_is_listed_newest_first(scripted: Scripted) -> None:
    changes = app_history(scripted.config)
    assert len(changes) == 23 == len(STEPS)  # the initial layout moves no version: no row
    assert [shape(change) for change in changes] == expected_changes(scripted)


def test_one_environment(scripted: Scripted) -> None:
    everything = app_history(scripted.config)
    assert app_history(scripted.config, "prod") == [change for change in everything if change.env == "prod"]


def test_promo_commits_carry_their_trailers_and_verdicts(scripted: Scripted) -> None:
    changes = app_history(scripted.config)
    for index, (step, commit) in enumerate(zip(STEPS, scripted.commits)):
        change = by_commit(changes, commit)
        expected_outcome = "-" if step.verdict is None else VERIFIED if step.verdict[0] else FAILED
        assert change.outcome == expected_outcome, index
        if step.verdict is not None:
            assert change.verdict is not None and change.verdict.checked_at == step.verdict[1]
        if step.kind != "manual":
            assert change.chart_digest == chart_digest(index)
            assert change.flow_run == step.trailers.get("Flow-Run", f"{step.kind}-{step.env}/run-{index}")
            assert change.approver == step.trailers.get("Approved-By")

    first_test = by_commit(changes, scripted.commits[1])
    assert (first_test.approver, first_test.approval_comment, first_test.promoted_from) == (
        "carol",
        "looks good",
        "dev",
    )
    first_dev = by_commit(changes, scripted.commits[0])
    assert (first_dev.kind, first_dev.image, first_dev.flow_run) == ("deploy", image_of("A1"), "publish-dev/a")
    waived = by_commit(changes, scripted.commits[8])
    assert waived.override_reason == "soak waived: hotfix for outage"


def test_rollbacks_are_marked(scripted: Scripted) -> None:
    changes = app_history(scripted.config)
    rollbacks = [change for change in changes if change.kind == "rollback"]
    assert [(c.commit, c.env, c.rollback_of, c.previous, c.version) for c in rollbacks] == [
        (scripted.commits[15], "prod", "0.1.2", "0.1.2", "0.1.0"),
        (scripted.commits[10], "prod", "0.1.1", "0.1.1", "0.1.0"),
        (scripted.commits[6], "test", scripted.version("rc:A2"), scripted.version("rc:A2"), scripted.version("rc:A1")),
    ]
    assert table_row(rollbacks[0])[-1] == "rollback of 0.1.2"


def test_a_hand_edit_is_shown_without_an_approver(scripted: Scripted) -> None:
    """Its versions come from the manifests; its message is not promo's, so its Approved-By line is not believed."""
    edit = by_commit(app_history(scripted.config), scripted.commits[7])
    assert "Approved-By: mallory" in STEPS[7].message
    assert (edit.kind, edit.approver, edit.flow_run, edit.verdict) == ("manual", None, None, None)
    assert (edit.previous, edit.version) == (scripted.version("rc:A1"), scripted.version("rc:A2"))
    assert table_row(edit)[6] == "unknown (manual edit; says Approved-By: mallory, not believed)"
    assert (edit.claimed_approver, edit.manual_reason) == ("mallory", None)  # not worded as promo's: no reason


def test_clusters_of_one_environment_moving_differently(scripted: Scripted) -> None:
    changes = app_history(scripted.config)
    rc = scripted.version("rc:A4")
    canary = by_commit(changes, scripted.commits[19])  # by hand: only us runs the RC
    assert [(m.cluster, m.before, m.after) for m in canary.moves] == [("us", "0.1.0", rc)]
    release = by_commit(changes, scripted.commits[20])  # eu from 0.1.0, us from the RC
    assert (release.uniform, release.previous, release.version) == (False, None, "0.1.3")
    assert table_row(release)[2:6] == ["eu,us", "release", "0.1.3", f"eu: 0.1.0 -> 0.1.3, us: {rc} -> 0.1.3"]
    relabel = by_commit(changes, scripted.commits[22])  # a hand edit of another field: eu stays on its version
    assert [(m.cluster, m.before, m.after) for m in relabel.moves] == [("eu", "0.1.3", "0.1.3")]
    assert not relabel.deploys_new_version


def test_history_json(scripted: Scripted) -> None:
    result = CliRunner().invoke(app, ["history", "prod", "--json", "--config", str(scripted.config_path)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    # Each change is marked when its version is rejected (promo reject): none is here.
    assert printed == [{**change.as_json(), "rejected": None} for change in app_history(scripted.config, "prod")]
    failed_release = next(entry for entry in printed if entry["commit"] == scripted.commits[9])
    assert failed_release == {
        "commit": scripted.commits[9],
        "time": "2026-11-07T09:00:00+00:00",
        "env": "prod",
        "kind": "release",
        "version": "0.1.1",
        "from": "0.1.0",
        "clusters": [
            {"cluster": "eu", "from": "0.1.0", "to": "0.1.1"},
            {"cluster": "us", "from": "0.1.0", "to": "0.1.1"},
        ],
        "approver": "dave",
        "approval_comment": None,
        "override_reason": None,
        "flow_run": "release-prod/run-9",
        "chart_digest": chart_digest(9),
        "image": None,
        "promoted_from": "stage",
        "rollback_of": None,
        "claimed_approver": None,
        "manual_reason": None,
        "verdict": {
            "outcome": "failed",
            "recorded_outcome": "failed",
            "reason": "cluster eu: health Degraded",
            "checked_at": "2026-11-07T09:15:00+00:00",
            "untrusted_reason": None,
        },
        "subject": "release(hello): prod -> 0.1.1",
        "rejected": None,
    }


def test_history_prints_a_table_without_importing_prefect(scripted: Scripted) -> None:
    exit_code, output, prefect_imported = cli_in_fresh_process("history", "--config", str(scripted.config_path))
    assert exit_code == 0, output
    assert not prefect_imported
    lines = output.splitlines()
    assert lines[0].split()[:4] == ["time", "(UTC)", "env", "clusters"]
    assert len(lines) == 1 + len(STEPS)
    assert lines[1].split()[:5] == ["2026-11-26", "09:00", "prod", "eu", "manual"]


# A commit worded as promo's is promo's only when its tree did what it says (real remotes; the forger writes by hand).

PROMOTED = "0.1.2-rc.abc1234"  # what the forged commits claim to promote into test (from dev)
TEST, PROD = manifest("test", "preprod"), f"{ROOT}/prod/prod/hello.yaml"
WAS = INITIAL_VERSIONS[("test", "preprod")]
ALL_CLUSTERS = {env: [cluster] for (env, cluster) in INITIAL_VERSIONS}


def forged_trailers(**changed: str) -> dict[str, str]:
    trailers = {
        "Promoted-From": "dev",
        "Chart-Version": PROMOTED,
        "Chart-Digest": chart_digest(1),
        "Flow-Run": "promote-test/forged",
        "Approved-By": "mallory",
    }
    return {**trailers, **changed}


def history_of(remote: GitRemote, cache_dir: Path, env: str | None = None) -> list[Change]:
    mirror = Mirror.open(remote.url, cache_dir / "reader")
    mirror.fetch()
    return read_history(mirror, "main", "hello", ALL_CLUSTERS, root=ROOT, env=env)


@pytest.mark.parametrize(
    ("files", "message", "reason"),
    [
        pytest.param(  # the tree sets another version than the trailers and the body say
            {TEST: application("hello", "test", "0.1.3-rc.fff0000")},
            promo_message("promote", "test", "dev", PROMOTED, {TEST: WAS}, forged_trailers()),
            f"it set {TEST} to 0.1.3-rc.fff0000, not to its Chart-Version {PROMOTED}",
            id="other-version",
        ),
        pytest.param(  # the subject names test; the tree moves prod too
            {TEST: application("hello", "test", PROMOTED), PROD: application("hello", "prod", PROMOTED)},
            promo_message("promote", "test", "dev", PROMOTED, {TEST: WAS}, forged_trailers()),
            f"it changed {PROD}, outside test",
            id="other-environment",
        ),
        pytest.param(  # the version and something else: the image it runs
            {TEST: application("hello", "test", PROMOTED).replace('tag: "abc1234"', 'tag: "evil"')},
            promo_message("promote", "test", "dev", PROMOTED, {TEST: WAS}, forged_trailers()),
            f"it changed more than the targetRevision of {TEST}",
            id="other-field",
        ),
        pytest.param(
            {TEST: application("hello", "test", PROMOTED)},
            promo_message("promote", "test", "dev", PROMOTED, {TEST: WAS}, forged_trailers(**{"Promoted-From": "qa"})),
            "its subject promotes from dev but its Promoted-From trailer says qa",
            id="other-source",
        ),
        pytest.param(
            {TEST: application("hello", "test", PROMOTED)},
            promo_message("promote", "test", "dev", PROMOTED, {TEST: WAS}, forged_trailers(**{"Chart-Version": "9"})),
            f"its subject says {PROMOTED} but its Chart-Version trailer says 9",
            id="subject-and-trailer-disagree",
        ),
        pytest.param(  # the body says it moved from another version than the tree held
            {TEST: application("hello", "test", PROMOTED)},
            promo_message("promote", "test", "dev", PROMOTED, {TEST: "0.0.1-rc.1111111"}, forged_trailers()),
            "the manifest moves its message lists are not the ones its tree made",
            id="body-lies",
        ),
    ],
)
def test_a_commit_worded_as_promos_whose_tree_did_otherwise_is_a_manual_edit(
    gitops_remote: GitRemote, cache_dir: Path, files: dict[str, str], message: str, reason: str
) -> None:
    """Anyone who can push can write promo's subject and an Approved-By: what the tree did decides, and a commit that
    did anything promo's write would not is a hand edit, whose approver, flow run and chart are not believed."""
    forged = gitops_remote.commit(files, message)

    change = history_of(gitops_remote, cache_dir)[0]
    assert change.commit == forged and change.subject == f"promote(hello): dev -> test {PROMOTED}"
    assert (change.kind, change.approver, change.flow_run, change.chart_digest, change.promoted_from) == (
        "manual",
        None,
        None,
        None,
        None,
    )
    assert (change.claimed_approver, change.manual_reason) == ("mallory", reason)
    row = table_row(change)
    assert (row[3], row[6]) == ("manual", "unknown (manual edit; says Approved-By: mallory, not believed)")
    assert row[-1] == f"not promo's: {reason}"
    printed = change.as_json()
    assert (printed["kind"], printed["approver"], printed["claimed_approver"], printed["manual_reason"]) == (
        "manual",
        None,
        "mallory",
        reason,
    )
    assert history_of(gitops_remote, cache_dir / "one", "test")[0] == change  # one environment: judged on all it did


def test_a_faithful_copy_of_promos_write_is_counted_as_promos(gitops_remote: GitRemote, cache_dir: Path) -> None:
    """The check needs no secret: a commit whose tree did exactly what its message says claims nothing false."""
    copied = gitops_remote.commit(
        {TEST: application("hello", "test", PROMOTED)},
        promo_message("promote", "test", "dev", PROMOTED, {TEST: WAS}, forged_trailers(**{"Approved-By": "carol"})),
    )
    change = history_of(gitops_remote, cache_dir)[0]
    assert (change.commit, change.kind, change.approver, change.manual_reason) == (copied, "promote", "carol", None)


def test_a_rollback_whose_rollback_of_is_not_what_ran_is_a_manual_edit(gitops_remote: GitRemote, cache_dir: Path):
    back = "0.1.0-rc.0a1b2c3"
    trailers = {"Chart-Version": back, "Approved-By": "mallory", "Rollback-Of": "0.9.9"}
    gitops_remote.commit(
        {TEST: application("hello", "test", back)}, promo_message("rollback", "test", None, back, {TEST: WAS}, trailers)
    )
    change = history_of(gitops_remote, cache_dir)[0]
    assert (change.kind, change.rollback_of) == ("manual", None)
    assert change.manual_reason == f"its Rollback-Of trailer says 0.9.9 but {TEST} ran {WAS} before it"


# A verdict is believed only when promo can prove it wrote it and it is about what its commit deployed there.


def test_a_verdict_about_another_version_than_its_commit_deployed_is_shown_untrusted(
    gitops_remote: GitRemote, cache_dir: Path
) -> None:
    written = GitOpsRepo(gitops_remote.url, "main", cache_dir / "writer").set_version(
        WriteRequest(
            "hello",
            "test",
            ["preprod"],
            PROMOTED,
            expected={"preprod": WAS},
            subject=f"promote(hello): dev -> test {PROMOTED}",
            trailers=Trailers(promoted_from="dev", chart_version=PROMOTED, approved_by="carol"),
        )
    )
    assert written.commit is not None
    checked_at = datetime.now(timezone.utc).replace(microsecond=0)  # a record is no older than its commit
    claim = Verdict("hello", "test", "0.1.3-rc.fff0000", written.commit, True, "synced and healthy", checked_at)
    record_verdict(Mirror.open(gitops_remote.url, cache_dir / "recorder"), claim, RECORD_SIGNER)

    change = history_of(gitops_remote, cache_dir)[0]
    reason = f"it says 0.1.3-rc.fff0000, but this commit deployed {PROMOTED} to test"
    assert (change.kind, change.approver) == ("promote", "carol")  # promo's commit; only the verdict is doubted
    assert (change.outcome, change.verdict_doubt, change.trusted_verdict) == (UNTRUSTED, reason, None)
    assert table_row(change)[8] == f"untrusted: {reason}"
    assert change.as_json()["verdict"] == {
        "outcome": "untrusted",
        "recorded_outcome": "verified",
        "reason": "synced and healthy",
        "checked_at": checked_at.isoformat(),
        "untrusted_reason": reason,
    }


def test_a_verdict_promo_cannot_prove_it_wrote_is_shown_untrusted_with_why() -> None:
    when = datetime(2026, 12, 1, tzinfo=timezone.utc)
    forged = Verdict(
        "hello", "test", PROMOTED, "c0ffee", True, "healthy", when, trusted=False, untrusted_reason="no valid signature"
    )
    change = Change("c0ffee", when, "test", "promote", (Move("preprod", WAS, PROMOTED),), "s", verdict=forged)
    assert (change.outcome, change.trusted_verdict) == (UNTRUSTED, None)
    assert table_row(change)[8] == "untrusted: no valid signature"
    assert change.as_json()["verdict"]["untrusted_reason"] == "no valid signature"
