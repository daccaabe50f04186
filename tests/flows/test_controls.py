"""Freezes and rejected versions in real flows: signed records in a real bare GitOps remote, read at planning by a
second machine whose cache is empty; a real Prefect server runs the flows."""

from __future__ import annotations

import json
import re

import pytest

from promo.clients import gitops_repo
from promo.config import load_config
from promo.errors import ConflictError, InputError
from promo.flows.gate import approving_as
from promo.flows.promote import promote_stage, promote_test
from promo.flows.publish_dev import publish_dev
from promo.flows.release_prod import release_prod
from promo.flows.rollback import rollback
from promo.gitops import controls
from promo.local.sandbox import Sandbox
from promo.release.approvals import Decision
from promo.release.gates import decide
from tests.flows.test_cli import error_line, run_promo, write_config
from tests.flows.test_gate import git, gitops_head
from tests.flows.test_release import target_revision
from tests.flows.test_rollback import publish
from tests.flows.test_spine import gate_description


def second_machine(sandbox: Sandbox) -> str:
    """The sandbox's promo.yaml with a cache nobody has filled: another machine's view of the same remotes."""
    return write_config(sandbox, lambda data: data.update(cache_dir=str(sandbox.directory / "second-machine-cache")))


def promo(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("PROMO_USER", "alice")
    return run_promo(monkeypatch, capsys, *args)


def test_a_freeze_refuses_a_promotion_from_a_second_machine_until_it_is_lifted(sandbox, monkeypatch, capsys):
    build = publish(sandbox)
    config = str(sandbox.config_path)
    freeze = ("freeze", "test", "--reason", "release week", "--until", "2h", "-c", config)
    code, out, err = promo(monkeypatch, capsys, *freeze)
    assert code == 0, err
    assert re.fullmatch(r"froze test: test is frozen by alice until \S+: release week\n", out), out

    other, before = second_machine(sandbox), gitops_head(sandbox)
    code, _, err = promo(monkeypatch, capsys, "promote-test", "--yes", "--config", other)
    refusal = error_line(err)
    assert code != 0 and "test is frozen by alice until" in refusal and "release week" in refusal, err
    assert "promo unfreeze test" in refusal and "--override-reason" in refusal
    assert gitops_head(sandbox) == before

    code, out, err = promo(monkeypatch, capsys, "status", "--config", other)
    assert code == 0, err
    assert re.search(r"^test: frozen: test is frozen by alice until \S+: release week$", out, re.M), out
    code, out, err = promo(monkeypatch, capsys, "status", "--json", "--config", other)
    frozen = {row["environment"]: row["frozen"] for row in json.loads(out)}
    assert frozen["dev"] is None and frozen["test"].startswith("test is frozen by alice until ")
    code, out, err = promo(monkeypatch, capsys, "status", "--all", "--config", other)
    assert code == 0 and "frozen: test is frozen by alice" in out, err
    code, out, err = promo(monkeypatch, capsys, "history", "test", "--config", other)
    assert code == 0 and "frozen: test is frozen by alice" in out, err

    code, out, err = promo(monkeypatch, capsys, "unfreeze", "test", "--json", "--config", config)
    assert code == 0, err
    assert {key: json.loads(out)[key] for key in ("kind", "subject", "action", "by")} == {
        "kind": "freezes", "subject": "test", "action": "unfreeze", "by": "alice"
    }  # fmt: skip
    code, _, err = promo(monkeypatch, capsys, "promote-test", "--yes", "--config", other)
    assert code == 0, err
    assert target_revision(sandbox, "test") == build.version


def test_a_rollback_passes_a_freeze_and_an_override_reason_passes_it_at_the_gate(sandbox, monkeypatch, capsys):
    older, newer = publish(sandbox), publish(sandbox)
    config = str(sandbox.config_path)
    for env in ("dev", "test"):
        code, _, err = promo(monkeypatch, capsys, "freeze", env, "--reason", "incident 42", "-c", config)
        assert code == 0, err
    with pytest.raises(ConflictError, match="dev is frozen by alice until unfrozen: incident 42"):
        publish_dev(config_path=config)  # no gate: nobody can pass the freeze
    with approving_as("carol"):  # the emergency exit
        rollback(env="dev", to=older.version, config_path=config)
    assert target_revision(sandbox, "dev") == older.version != newer.version

    with approving_as("carol"), pytest.raises(InputError, match="test is frozen by alice until unfrozen: incident 42"):
        promote_test(config_path=config)
    reason = "the fix for incident 42 itself"
    with approving_as("carol", override_reason=reason):
        promotion = promote_test(config_path=config)
    assert target_revision(sandbox, "test") == older.version
    message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", promotion.gitops_commit)
    assert f"Override-Reason: {reason}" in message.splitlines()


def test_a_rejected_version_is_refused_by_promote_release_and_rollback(sandbox, monkeypatch, capsys):
    config = str(sandbox.config_path)
    first = publish(sandbox)
    with approving_as("carol"):
        promote_test(config_path=config)
    with approving_as("alice"):  # stage and prod: alice or demo may approve
        promote_stage(config_path=config)
    second, third = publish(sandbox), publish(sandbox)

    reject = ("reject", second.version, "--reason", "corrupts carts", "--json", "-c", config)
    code, out, err = promo(monkeypatch, capsys, *reject)
    assert code == 0, err
    assert {key: json.loads(out)[key] for key in ("action", "version", "by", "reason", "trusted")} == {
        "action": "reject", "version": second.version, "by": "alice", "reason": "corrupts carts", "trusted": True
    }  # fmt: skip
    with approving_as("carol"):  # the automatic choice skips the rejected version
        rolled = rollback(env="dev", config_path=config)
    assert rolled.version == first.version and target_revision(sandbox, "dev") == first.version
    with approving_as("carol"), pytest.raises(InputError, match=f"{re.escape(second.version)} was rejected by alice"):
        rollback(env="dev", to=second.version, config_path=config)

    code, _, err = promo(monkeypatch, capsys, "reject", first.version, "--reason", "leaks memory", "-c", config)
    assert code == 0, err
    before = gitops_head(sandbox)
    refusal = f"hello {first.version} was rejected by alice: leaks memory; choose another version, or `promo unreject"
    for command in ("promote-test", "release-prod"):
        code, _, err = promo(monkeypatch, capsys, command, "--yes", "--config", second_machine(sandbox))
        assert code != 0 and error_line(err).startswith(f"promo: error: {refusal}"), err
    assert gitops_head(sandbox) == before
    code, out, err = promo(monkeypatch, capsys, "status", "--config", config)
    assert f"rejected: {first.version} was rejected by alice: leaks memory" in out, err
    code, out, err = promo(monkeypatch, capsys, "trace", first.version, "--config", config)
    assert f"REJECTED    {first.version} was rejected by alice: leaks memory" in out, err
    code, out, err = promo(monkeypatch, capsys, "history", "dev", "--json", "--config", config)
    marked = {change["version"]: change["rejected"] for change in json.loads(out)}
    assert marked[second.version] == f"{second.version} was rejected by alice: corrupts carts"
    assert marked[third.version] is None

    code, _, err = promo(monkeypatch, capsys, "unreject", first.version, "--reason", "was the cache", "-c", config)
    assert code == 0, err
    code, _, err = promo(monkeypatch, capsys, "freeze", "dev", "--reason", "lab move", "-c", config)
    assert code == 0, err
    with approving_as("alice"):
        released = release_prod(config_path=config)  # the RC stage runs: rejected a moment ago, released now
    # dev is frozen, which refuses the next build (publish-dev has no gate): the release still completes
    assert target_revision(sandbox, "prod") == released.version and released.verification is not None
    assert released.next_build is None and target_revision(sandbox, "dev") == first.version


def test_a_forged_freeze_or_rejection_is_shown_untrusted_and_refuses_nothing(sandbox, monkeypatch, capsys):
    build = publish(sandbox)
    config = load_config(sandbox.config_path)
    forged = "freeze of test by mallory\n\nAction: freeze\nEnvironment: test\nReason: forged\nBy: mallory\n"
    gitops_repo(config).mirror.append_log(controls.FREEZES, "test", forged)  # anyone who may push can do this
    rejection = f"reject {build.version}\n\nAction: reject\nApp: hello\nVersion: {build.version}\nBy: mallory\n"
    gitops_repo(config).mirror.append_log(controls.REJECTIONS, "hello", rejection)
    entries = controls.read_controls(gitops_repo(config).mirror, controls.FREEZES, "test")
    assert [(entry.by, entry.trusted) for entry in entries] == [("mallory", False)]

    code, out, err = promo(monkeypatch, capsys, "status", "--config", str(sandbox.config_path))
    assert code == 0, err
    assert "frozen:" not in out
    assert re.search(r"^test: ignored, untrusted \(.+\): freeze of test by mallory", out, re.M), out
    assert "rejected:" not in out  # dev runs the version mallory's record names: shown untrusted beside it
    assert re.search(rf"^dev: ignored, untrusted \(.+\): reject {re.escape(build.version)} by mallory", out, re.M), out
    code, _, err = promo(monkeypatch, capsys, "promote-test", "--yes", "--config", second_machine(sandbox))
    assert code == 0, err
    assert target_revision(sandbox, "test") == build.version


def test_a_gate_shows_the_freeze_and_a_freeze_set_while_it_waits_holds_the_approval_back(
    sandbox, background, monkeypatch, capsys
):
    publish(sandbox)
    config = str(sandbox.config_path)
    code, _, err = promo(monkeypatch, capsys, "freeze", "test", "--reason", "audit", "-c", config)
    assert code == 0, err
    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")
    shown = gate_description(gate.flow_run_id)
    assert "test is frozen by alice until unfrozen: audit (`promo unfreeze test` lifts it)" in shown
    decide(gate, Decision(approved=True, approver="carol", override_reason="the auditors asked for it"))
    assert run.join().gitops_commit is not None

    newer = publish(sandbox)
    code, _, err = promo(monkeypatch, capsys, "unfreeze", "test", "-c", config)
    assert code == 0, err
    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")  # opened unfrozen: approving needs no reason ...
    code, _, err = promo(monkeypatch, capsys, "freeze", "test", "--reason", "incident 7", "-c", config)
    assert code == 0, err
    before = gitops_head(sandbox)
    # ... but the freeze set meanwhile holds it back: it is not what the approver saw, so no reason passes it
    decide(gate, Decision(approved=True, approver="carol", override_reason="it was fine when the gate opened"))
    with pytest.raises(ConflictError, match="test is frozen by alice until unfrozen: incident 7"):
        run.join()
    assert gitops_head(sandbox) == before and target_revision(sandbox, "test") != newer.version
