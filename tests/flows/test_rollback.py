"""rollback on a real sandbox, its stand-in for Argo CD and a real Prefect server: through the gate, with --to, stale,
and automatic after a failed verification (once, never of a rollback)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prefect import flow

from promo.release.gates import decide
from promo.flows.publish_dev import publish_dev
from promo.flows.rollback import AUTOMATIC_APPROVER, roll_back_after_failure, rollback
from promo.release.approvals import Decision
from promo.clients import app_mirror
from promo.config import load_config
from promo.errors import ConfigError, ConflictError, NotFound, VerificationFailed
from promo.gitops.history import table_row
from promo.reports.history import app_history
from promo.local.sandbox import Sandbox, degrade_version
from promo.gitops.verdicts import Verdict
from promo.versions import rc_version
from promo.tasks.verify import verify_environment
from tests.flows.test_cli import error_line, run_promo, write_config
from tests.flows.test_integrity import gitops_head, write_by_hand
from tests.flows.test_release import git, main_chart_version, target_revision
from tests.flows.test_spine import gate_description


@dataclass(frozen=True)
class Build:
    version: str
    gitops_commit: str
    verdict: Verdict | None  # None: not verified (yet)


@flow(name="verify-dev")
def verify_dev(config_path: str, version: str, gitops_commit: str) -> Verdict:
    return verify_environment(load_config(config_path), "dev", version, gitops_commit)


@flow(name="verify-dev-then-roll-back")
def verify_then_roll_back(config_path: str, version: str, gitops_commit: str) -> tuple[Verdict, str | None]:
    """What a flow does after its write into dev: verify it, and on a failed verdict call the automatic rollback."""
    config = load_config(config_path)
    verdict = verify_environment(config, "dev", version, gitops_commit)
    return verdict, roll_back_after_failure(config, "dev", verdict)


def publish(sandbox: Sandbox, *, degraded: bool = False, verify: bool = True, config_path: str | None = None) -> Build:
    """A new build of a new commit in dev, Degraded in the stand-in from the start when ``degraded``, and its verdict.

    The build's version is known before publishing (its commit is made first), so it is Degraded from its first look,
    whether publish-dev verifies it itself or not."""
    config = load_config(sandbox.config_path)
    sha = app_mirror(config).commit_empty("main", "a build for the rollback tests")
    if degraded:
        degrade_version(sandbox.directory, rc_version(main_chart_version(sandbox), sha))
    try:
        publish_dev(sha=sha, config_path=config_path or str(sandbox.config_path))
    except VerificationFailed:
        assert degraded
    version, commit = target_revision(sandbox, "dev"), gitops_head(sandbox)
    verdict = verify_dev(str(sandbox.config_path), version, commit) if verify else None
    assert verdict is None or verdict.verified is not degraded, verdict
    return Build(version, commit, verdict)


def message(sandbox: Sandbox, commit: str = "main") -> str:
    return git(sandbox.gitops_remote, "log", "-1", "--format=%B", commit)


def on_failure_rollback(sandbox: Sandbox) -> str:
    return write_config(sandbox, lambda data: data["environments"][0].update(on_failure="rollback"))


def rollback_commits(sandbox: Sandbox) -> list[str]:
    return git(sandbox.gitops_remote, "log", "--format=%s", "--grep=^rollback(", "main").splitlines()


def test_a_rollback_through_the_gate_puts_back_the_last_verified_version_as_a_forward_commit(sandbox, background):
    good = publish(sandbox)
    bad = publish(sandbox, degraded=True)
    config = str(sandbox.config_path)

    run = background(lambda: rollback(env="dev", config_path=config))
    gate = run.gate("dev")
    assert gate.version == good.version
    page = gate_description(gate.flow_run_id)
    assert f"Roll back **hello** in **dev** from `{bad.version}` to `{good.version}`" in page
    assert bad.verdict is not None and bad.verdict.reason in page  # why: the failed verdict
    decide(gate, Decision(approved=True, approver="carol", comment="bad build"))
    rolled_back = run.join()

    head = gitops_head(sandbox)
    assert target_revision(sandbox, "dev") == good.version
    assert git(sandbox.gitops_remote, "rev-parse", "main^").strip() == bad.gitops_commit  # forward, not a reset
    text = message(sandbox)
    assert text.startswith(f"rollback(hello): dev -> {good.version}\n")
    for trailer in (
        f"Rollback-Of: {bad.version}",
        "Approved-By: carol",
        "Approval-Comment: bad build",
        f"Chart-Version: {good.version}",
        "Flow-Run: rollback/",
        "Chart-Digest: sha256:",
    ):
        assert f"\n{trailer}" in text, text
    assert rolled_back.gitops_commit == head and rolled_back.verdict.verified
    newest = app_history(load_config(config), "dev")[0]
    assert (newest.commit, newest.kind, newest.rollback_of) == (head, "rollback", bad.version)
    assert newest.outcome == "verified"
    assert table_row(newest)[-1] == f"rollback of {bad.version}"


def test_a_rollback_to_a_version_never_verified_there_is_refused_in_one_line_and_changes_nothing(
    sandbox, monkeypatch, capsys
):
    good = publish(sandbox)
    without_verification = write_config(sandbox, lambda data: data["environments"][0].pop("verify"))
    unverified = publish(sandbox, verify=False, config_path=without_verification)  # publish-dev verifies nothing
    publish(sandbox)
    before = gitops_head(sandbox)

    config = str(sandbox.config_path)
    code, _, err = run_promo(monkeypatch, capsys, "rollback", "dev", "--to", unverified.version, "--yes", "-c", config)

    assert code == 2
    assert error_line(err) == (
        f"promo: error: {unverified.version} was never verified in dev; roll back to one of: {good.version}"
    )
    assert gitops_head(sandbox) == before


def test_a_rollback_with_nothing_earlier_verified_says_so_and_changes_nothing(sandbox, monkeypatch, capsys):
    only = publish(sandbox)

    code, _, err = run_promo(monkeypatch, capsys, "rollback", "dev", "--yes", "--config", str(sandbox.config_path))

    assert code == NotFound.exit_code
    assert error_line(err) == (
        f"promo: error: no version other than {only.version} was verified in dev, so there is nothing to roll back "
        "to; deploy a version that works into dev (promote or publish it)"
    )
    assert gitops_head(sandbox) == only.gitops_commit


def test_a_rollback_in_an_environment_promo_does_not_verify_is_refused_before_anything(sandbox):
    unverified = write_config(sandbox, lambda data: data["environments"][0].pop("verify"))
    before = gitops_head(sandbox)

    with pytest.raises(ConfigError) as refused:
        rollback(env="dev", config_path=unverified)

    assert str(refused.value) == (
        "dev has no verify: in promo.yaml, so no version is known to have worked there and a rollback has none to "
        "choose; add verify: (argocd, http or both) to environments.dev in promo.yaml"
    )
    assert gitops_head(sandbox) == before


def test_a_stale_rollback_gate_approved_after_dev_moved_changes_nothing(sandbox, background):
    good = publish(sandbox)
    bad = publish(sandbox, degraded=True)
    config = str(sandbox.config_path)
    stale = background(lambda: rollback(env="dev", config_path=config))
    gate = stale.gate("dev")  # shown: dev bad -> good
    landed = write_by_hand(sandbox, "dev", "0.1.0-rc.fedcba9")

    decide(gate, Decision(approved=True, approver="carol"))
    with pytest.raises(ConflictError) as refused:
        stale.join()

    assert str(refused.value) == (
        f"dev of hello moved from {bad.version} to 0.1.0-rc.fedcba9 since the gate opened; run rollback again"
    )

    assert gitops_head(sandbox) == landed and target_revision(sandbox, "dev") == "0.1.0-rc.fedcba9"
    assert good.version != target_revision(sandbox, "dev") and not rollback_commits(sandbox)


def test_an_automatic_rollback_after_a_failed_verification_rolls_back_once_and_verifies(sandbox):
    good = publish(sandbox)
    bad = publish(sandbox, degraded=True, verify=False)

    failed, rolled_back_to = verify_then_roll_back(on_failure_rollback(sandbox), bad.version, bad.gitops_commit)

    assert not failed.verified and rolled_back_to == good.version
    assert target_revision(sandbox, "dev") == good.version
    assert rollback_commits(sandbox) == [f"rollback(hello): dev -> {good.version}"]
    text = message(sandbox)
    assert f"\nRollback-Of: {bad.version}\n" in text and f"\nApproved-By: {AUTOMATIC_APPROVER}\n" in text
    assert failed.reason.split()[0] in text.split("Approval-Comment: ", 1)[1]  # the failed verdict's reason
    newest = app_history(load_config(sandbox.config_path), "dev")[0]
    assert (newest.kind, newest.approver, newest.outcome) == ("rollback", AUTOMATIC_APPROVER, "verified")


def test_an_automatic_rollback_that_fails_too_ends_there_and_is_never_rolled_back(sandbox):
    oldest = publish(sandbox)  # verified: what a second rollback would go back to, were there one
    good = publish(sandbox)
    bad = publish(sandbox, degraded=True, verify=False)
    degrade_version(sandbox.directory, good.version)  # the version it goes back to breaks too
    config = on_failure_rollback(sandbox)

    with pytest.raises(VerificationFailed) as failed:
        verify_then_roll_back(config, bad.version, bad.gitops_commit)

    line = str(failed.value)
    assert line.startswith(f"hello {bad.version} failed verification in dev (")
    assert f"and the automatic rollback to {good.version} failed too (" in line and "promo rolls back only once" in line
    rolled_back = gitops_head(sandbox)
    assert rollback_commits(sandbox) == [f"rollback(hello): dev -> {good.version}"]

    # The rollback's own failed verdict, handed to the automatic rollback as any failed write's would be.
    verdict, again = verify_then_roll_back(config, good.version, rolled_back)
    assert not verdict.verified and again is None
    assert gitops_head(sandbox) == rolled_back and target_revision(sandbox, "dev") == good.version != oldest.version


def test_an_automatic_rollback_with_no_earlier_verified_version_does_nothing(sandbox):
    bad = publish(sandbox, degraded=True, verify=False)

    failed, rolled_back_to = verify_then_roll_back(on_failure_rollback(sandbox), bad.version, bad.gitops_commit)

    assert not failed.verified and rolled_back_to is None
    assert gitops_head(sandbox) == bad.gitops_commit and not rollback_commits(sandbox)


def test_no_automatic_rollback_unless_the_environment_asks_for_it(sandbox):
    publish(sandbox)
    bad = publish(sandbox, degraded=True, verify=False)

    failed, rolled_back_to = verify_then_roll_back(str(sandbox.config_path), bad.version, bad.gitops_commit)

    assert not failed.verified and rolled_back_to is None
    assert gitops_head(sandbox) == bad.gitops_commit


def test_publish_dev_into_an_environment_with_on_failure_rollback_rolls_back_then_fails(sandbox):
    """The hook in the flows themselves: publish-dev's own verification fails, dev is rolled back, the run fails."""
    good = publish(sandbox)
    config_path = on_failure_rollback(sandbox)
    config = load_config(config_path)
    sha = app_mirror(config).commit_empty("main", "a build that will not come up")
    bad_version = rc_version(main_chart_version(sandbox), sha)
    degrade_version(sandbox.directory, bad_version)

    with pytest.raises(VerificationFailed) as failed:
        publish_dev(sha=sha, config_path=config_path)

    assert str(failed.value).startswith(f"hello {bad_version} failed verification in dev: ")
    assert f"dev was rolled back to {good.version} (on_failure: rollback)" in str(failed.value)
    assert target_revision(sandbox, "dev") == good.version
    assert rollback_commits(sandbox) == [f"rollback(hello): dev -> {good.version}"]


def test_a_version_whose_last_deployment_failed_is_no_place_to_roll_back_to(sandbox, monkeypatch, capsys):
    """first was verified in dev, then broke when a rollback put it back: though its first deployment was verified,
    a rollback to it is refused, in one line that names why and what is left to choose."""
    first = publish(sandbox)
    second = publish(sandbox)
    config = str(sandbox.config_path)
    degrade_version(sandbox.directory, first.version)
    code, _, err = run_promo(monkeypatch, capsys, "rollback", "dev", "--to", first.version, "--yes", "-c", config)
    assert code == VerificationFailed.exit_code, err
    failed_rollback = app_history(load_config(config), "dev")[0]
    assert (failed_rollback.kind, failed_rollback.outcome) == ("rollback", "failed")
    assert failed_rollback.version == first.version
    third = publish(sandbox)
    before = gitops_head(sandbox)

    code, _, err = run_promo(monkeypatch, capsys, "rollback", "dev", "--to", first.version, "--yes", "-c", config)

    assert code == 2
    assert failed_rollback.verdict is not None
    assert error_line(err) == (
        f"promo: error: {first.version} failed verification in dev the last time it was checked there "
        f"(commit {failed_rollback.commit[:12]}: {failed_rollback.verdict.reason}); roll back to one of: "
        f"{second.version} ({first.version} is left out: it failed verification the last time it was checked there)"
    )
    assert gitops_head(sandbox) == before and target_revision(sandbox, "dev") == third.version
