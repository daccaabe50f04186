"""Every environment write is verified, and only verified, soaked versions move on: on a real sandbox (its stand-in for
Argo CD and the clusters) and a real Prefect server; plus the pure readiness rules."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from prefect.artifacts import Artifact

import promo.flows.verification as verification_module
from promo.flows.gate import approval_form, approving_as
from promo.release.gates import decide, waiting_gates
from promo.flows.promote import promote_test
from promo.flows.publish_dev import publish_dev
from promo.flows.release_prod import release_prod
from promo.release.approvals import ApprovalRequest, Decision
from promo.clients import gitops_repo
from promo.config import EnvironmentSettings, load_config
from promo.errors import InputError, VerificationFailed
from promo.gitops.history import Change, Move
from promo.reports.history import app_history
from promo.release.readiness import readiness
from promo.local.sandbox import Sandbox, degrade_version
from promo.gitops.verdicts import Verdict, read_verdicts
from promo.versions import short_sha
from tests.flows.test_cli import error_line, run_promo, write_config
from tests.flows.test_release import git, stage_a_build

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
VERSION = "0.4.0-rc.ab12cd3"
VERIFY = {"http": {"url": "http://{app}.{env}.example/healthz"}}


class Killed(Exception):
    pass


def gitops_head(sandbox: Sandbox) -> str:
    return git(sandbox.gitops_remote, "rev-parse", "main").strip()


def verdicts_in(sandbox: Sandbox, env: str) -> dict[str, Verdict]:
    mirror = gitops_repo(load_config(sandbox.config_path)).mirror
    mirror.fetch()
    return read_verdicts(mirror, sandbox.app, env)


def next_build_version(sandbox: Sandbox) -> tuple[str, str]:
    """The commit at the app's main and the RC version publish-dev builds from it."""
    head = git(sandbox.app_remote, "rev-parse", "main").strip()
    return head, f"0.1.0-rc.{short_sha(head)}"


def soaking_dev(sandbox: Sandbox, soak: str) -> str:
    """A copy of the sandbox's promo.yaml in which a version must run ``soak`` in dev before it moves on."""

    def set_soak(data) -> None:
        next(env for env in data["environments"] if env["name"] == "dev")["soak"] = soak

    return write_config(sandbox, set_soak)


def test_every_write_is_verified_and_status_shows_the_verdicts(sandbox, monkeypatch, capsys):
    staged = stage_a_build(sandbox)
    with approving_as("alice"):
        released = release_prod(config_path=staged.config)

    changes = [change for change in app_history(load_config(staged.config)) if change.kind != "manual"]  # not the seed
    assert {change.kind for change in changes} == {"deploy", "promote", "release"}
    assert len(changes) == 5  # dev, test, stage, prod, and the next build in dev
    assert [change.outcome for change in changes] == ["verified"] * 5
    for change in changes:  # the verdict is about the version that commit deployed
        assert (change.verdict.gitops_commit, change.verdict.version) == (change.commit, change.version)
    assert released.verification.startswith("verified: hello 0.1.0 in prod")

    code, out, err = run_promo(monkeypatch, capsys, "status", "--config", staged.config)
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split()[-2:] == ["verdict", "soaked"]
    rows = {line.split()[0]: line.split() for line in lines}
    assert [rows[env][-2] for env in ("dev", "test", "stage", "prod")] == ["verified"] * 4
    assert all(rows[env][-1].endswith(("s", "m")) for env in rows)  # soaked since its verdict: seconds or minutes

    # Someone who can push replaces prod's verdict by hand: promo's record deleted, an unsigned copy in its place.
    remote = sandbox.gitops_remote
    [promos] = git(remote, "for-each-ref", "--format=%(refname)", "refs/promo/verdicts/hello/prod/").split()
    prod_commit = git(remote, "rev-parse", f"{promos}^{{commit}}").strip()
    unsigned = "".join(git(remote, "cat-file", "tag", promos).split("\n\n", 1)[1].splitlines(keepends=True)[:-1])
    (sandbox.directory / "forged").write_text(unsigned)
    identity = ("-c", "user.name=someone", "-c", "user.email=someone@example.com")
    git(remote, *identity, "tag", "-a", "-F", str(sandbox.directory / "forged"), "forged", prod_commit)
    git(remote, "update-ref", "-d", promos)
    git(remote, "update-ref", f"refs/promo/verdicts/hello/prod/{prod_commit}", "refs/tags/forged")
    git(remote, "tag", "-d", "forged")
    code, out, err = run_promo(monkeypatch, capsys, "status", "--config", staged.config)
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert code == 0 and rows["prod"][-2] == "untrusted" and rows["stage"][-2] == "verified", out


def test_a_degraded_build_fails_publish_dev_in_one_line_and_cannot_move_on_without_a_reason(
    sandbox, background, monkeypatch, capsys
):
    config = str(sandbox.config_path)
    head, version = next_build_version(sandbox)
    degrade_version(sandbox.directory, version)

    with pytest.raises(VerificationFailed) as failed:
        publish_dev(sha=head, config_path=config)
    assert str(failed.value).startswith(f"hello {version} failed verification in dev: cluster preprod")
    assert "Degraded" in str(failed.value) and "promo rollback dev" in str(failed.value)
    assert "\n" not in str(failed.value)
    (verdict,) = verdicts_in(sandbox, "dev").values()
    assert (verdict.verified, verdict.gitops_commit, verdict.version) == (False, gitops_head(sandbox), version)
    table = {row["environment"]: row for row in json.loads(Artifact.get(f"environments-{sandbox.app}").data)}
    assert table["dev"]["version"] == version, "the version landed in dev: the table shows it, whatever its verdict"

    written = gitops_head(sandbox)
    with approving_as("carol"), pytest.raises(InputError) as refused:  # --yes without --override-reason
        promote_test(config_path=config)
    assert f"is not ready for test: {version} failed verification in dev: cluster preprod" in str(refused.value)
    assert gitops_head(sandbox) == written

    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")
    with pytest.raises(InputError, match="the gate refused this answer"):
        decide(gate, Decision(approved=True, approver="carol"))  # the server wants the reason the form requires
    assert [waiting.flow_run_id for waiting in waiting_gates(env="test")] == [gate.flow_run_id]  # still waiting
    assert gitops_head(sandbox) == written

    reason = "emergency: dev's probe is broken"
    approve = ["approve", "--env", "test", "--as", "carol", "--override-reason", reason, "--config", config]
    code, _, err = run_promo(monkeypatch, capsys, *approve)
    assert code == 0, err
    with pytest.raises(VerificationFailed) as failed_in_test:  # the override moved it; it is Degraded in test too
        run.join()
    assert str(failed_in_test.value).startswith(f"hello {version} failed verification in test: cluster preprod")
    message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", "main")
    assert f"Override-Reason: {reason}" in message.splitlines()
    (in_test,) = verdicts_in(sandbox, "test").values()
    assert (in_test.verified, in_test.gitops_commit) == (False, gitops_head(sandbox))


def test_a_version_that_has_not_soaked_moves_only_with_a_reason(sandbox, monkeypatch, capsys):
    config = soaking_dev(sandbox, "1h")
    published = publish_dev(config_path=config)
    written = gitops_head(sandbox)

    code, _, err = run_promo(monkeypatch, capsys, "promote-test", "--yes", "--config", config)
    assert code == 2
    assert error_line(err) == (
        f"promo: error: hello {published.chart_version} is not ready for test: "
        f"{published.chart_version} has soaked 0 of 60 minutes in dev (60 to go); "
        "wait until it is, or approve anyway with an override reason (--override-reason TEXT)"
    )
    assert gitops_head(sandbox) == written

    reason = "hotfix for the outage"
    code, out, err = run_promo(monkeypatch, capsys, "promote-test", "--yes", "--override-reason", reason, "-c", config)
    assert code == 0, err
    message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", "main")
    assert f"Override-Reason: {reason}" in message.splitlines()
    (promoted,) = [change for change in app_history(load_config(config), "test") if change.kind == "promote"]
    assert (promoted.override_reason, promoted.outcome) == (reason, "verified")


def test_a_run_killed_during_verification_verifies_on_re_run_without_writing_again(sandbox, monkeypatch):
    config = str(sandbox.config_path)
    publish_dev(config_path=config)
    real_verify = verification_module.verify_environment
    kills = []

    def killed_once(*args, **kwargs):
        if not kills:
            kills.append(args)
            raise Killed("the worker was stopped")  # what a killed process leaves: the write, and no verdict
        return real_verify(*args, **kwargs)

    monkeypatch.setattr(verification_module, "verify_environment", killed_once)
    with approving_as("carol"), pytest.raises(Killed):
        promote_test(config_path=config)
    written = gitops_head(sandbox)
    assert git(sandbox.gitops_remote, "log", "-1", "--format=%s", "main").startswith("promote(hello): dev -> test")
    assert verdicts_in(sandbox, "test") == {}

    again = promote_test(config_path=config)  # no approval needed: nothing is written

    assert gitops_head(sandbox) == written
    assert again.gitops_commit is None and again.verification.startswith("verified:")
    assert list(verdicts_in(sandbox, "test")) == [written]
    assert promote_test(config_path=config).verification == again.verification  # the verdict stands, reused


def test_the_gate_page_says_what_is_missing_first_and_loudly_when_verification_failed():
    request = ApprovalRequest(
        app="hello",
        version="0.4.0-rc.ab12cd3",
        source="dev",
        target="test",
        diff="",
        not_ready=("0.4.0-rc.ab12cd3 failed verification in dev: cluster preprod: health Degraded",),
        failed_verification=True,
    )
    page = request.description()
    assert page.index("Not ready") < page.index("| app |")
    assert "FAILED verification in dev" in page and "override reason" in page
    ready = ApprovalRequest(app="hello", version="0.4.0-rc.ab12cd3", source="dev", target="test", diff="")
    assert "Not ready" not in ready.description()


def test_the_form_of_a_gate_for_a_version_that_is_not_ready_requires_a_reason_the_server_checks():
    not_ready = ApprovalRequest(
        app="hello", version=VERSION, source="dev", target="test", diff="", not_ready=(f"{VERSION} has soaked",)
    )
    schema = approval_form(not_ready).model_json_schema()
    assert "override_reason" in schema["required"] and schema["properties"]["override_reason"]["pattern"] == r"\S"
    ready = ApprovalRequest(app="hello", version=VERSION, source="dev", target="test", diff="")
    assert "override_reason" not in approval_form(ready).model_json_schema()["required"]


# The readiness rules, pure: a history of one environment, its settings, and a clock.


def deployed(minutes_ago: int, verified: bool | None, *, verified_minutes_ago: int | None = None) -> Change:
    checked = NOW - timedelta(minutes=minutes_ago if verified_minutes_ago is None else verified_minutes_ago)
    verdict = None
    if verified is not None:
        reason = "healthy" if verified else "cluster preprod: health Degraded"
        verdict = Verdict("hello", "test", VERSION, "c0ffee", verified, reason, checked)
    return Change(
        commit="c0ffee",
        time=NOW - timedelta(minutes=minutes_ago),
        env="test",
        kind="promote",
        moves=(Move("preprod", "0.3.0", VERSION),),
        subject="promote",
        verdict=verdict,
    )


def settings(soak: str, verify: bool = True) -> EnvironmentSettings:
    return EnvironmentSettings(name="test", clusters=["preprod"], soak=soak, verify=VERIFY if verify else None)


@pytest.mark.parametrize(
    ("history", "env", "missing", "failed"),
    [
        ([deployed(40, True, verified_minutes_ago=35)], settings("30m"), (), False),
        (
            [deployed(40, True, verified_minutes_ago=12)],
            settings("30m"),
            (f"{VERSION} has soaked 12 of 30 minutes in test (18 to go)",),
            False,
        ),
        ([deployed(40, None)], settings("0"), (f"{VERSION} has not been verified in test yet",), False),
        (
            [deployed(40, False)],
            settings("0"),
            (f"{VERSION} failed verification in test: cluster preprod: health Degraded",),
            True,
        ),
        (  # unverified: soaks from promo's deployed record, never from the commit (tests/core/test_readiness.py)
            [deployed(5, None)],
            settings("90s", verify=False),
            (f"{VERSION} has no record of promo deploying it to test (commit c0ffee), so it has not started to soak",),
            False,
        ),
        ([], settings("0"), (f"{VERSION} was not deployed to test by any commit of the GitOps repo",), False),
    ],
)
def test_readiness(history, env, missing, failed):
    found = readiness(history, env, VERSION, NOW)
    assert (found.missing, found.failed, found.ready) == (missing, failed, not missing)
