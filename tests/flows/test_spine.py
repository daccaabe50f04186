"""publish-dev, promote-test and promote-stage end to end on a real sandbox and a real Prefect server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.input.run_input import keyset_from_paused_state
from ruamel.yaml import YAML

from promo.flows.gate import approving_as

from promo.release.gates import decide
from promo.flows.promote import promote_stage, promote_test
import promo.tasks.image
from promo.flows.publish_dev import publish_dev
from promo.release.approvals import Decision
from promo.clients import chart_repository, open_registry
from promo.config import load_config
from promo.errors import ApprovalRejected, InputError, NotFound
from promo.registry.oci import Registry
from promo.local.sandbox import Sandbox
from promo.versions import short_sha


def gate_description(flow_run_id) -> str:
    """The markdown the Prefect UI shows above the gate's form."""
    with get_client(sync_client=True) as client:
        keyset = keyset_from_paused_state(client.read_flow_run(flow_run_id).state)
        return json.loads(client.read_flow_run_input(flow_run_id, keyset["description"]))


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(remote), *args], check=True, capture_output=True, text=True).stdout


def target_revision(sandbox: Sandbox, env: str) -> str:
    cluster = "prod" if env == "prod" else "preprod"
    text = git(sandbox.gitops_remote, "show", f"main:registry/environments/{env}/{cluster}/{sandbox.app}.yaml")
    return YAML(typ="safe").load(text)["spec"]["source"]["targetRevision"]


def changed_lines(remote: Path, commit: str) -> list[str]:
    diff = git(remote, "show", "--format=", "--unified=0", commit)
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def gitops_head(sandbox: Sandbox) -> str:
    return git(sandbox.gitops_remote, "rev-parse", "main").strip()


def with_gate(sandbox: Sandbox, **gate: object) -> str:
    """A copy of the sandbox's promo.yaml with other gate settings."""
    yaml = YAML()
    data = yaml.load(sandbox.config_path.read_text())
    data["gate"] = dict(gate)
    path = sandbox.directory / "promo-gate.yaml"
    with path.open("w") as out:
        yaml.dump(data, out)
    return str(path)


@pytest.fixture()
def published(sandbox: Sandbox):
    return publish_dev(config_path=str(sandbox.config_path))


def test_publish_dev_builds_pushes_and_deploys_dev(sandbox, published):
    app_head = git(sandbox.app_remote, "rev-parse", "main").strip()
    assert published.commit == app_head  # the manual run made an empty build commit and built it
    assert git(sandbox.app_remote, "log", "-1", "--format=%s", "main").startswith("build: publish-dev")
    assert published.chart_version == f"0.1.0-rc.{short_sha(app_head)}"
    assert target_revision(sandbox, "dev") == published.chart_version
    lines = changed_lines(sandbox.gitops_remote, published.gitops_commit)
    assert len(lines) == 2 and all("targetRevision:" in line for line in lines)
    message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", published.gitops_commit)
    assert f"Chart-Version: {published.chart_version}" in message
    assert f"Chart-Digest: {published.chart_digest}" in message
    assert f"Image: {published.image.rpartition(':')[0]}@{published.image_digest}" in message
    assert "Flow-Run: publish-dev/" in message
    for image in (f"{published.image}", f"{sandbox.registry_host}/charts/{sandbox.app}:{published.chart_version}"):
        subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{image}"], check=True, capture_output=True)


def test_publish_dev_of_a_given_sha_builds_that_commit(sandbox):
    sha = git(sandbox.app_remote, "rev-parse", "main").strip()
    result = publish_dev(sha=sha, config_path=str(sandbox.config_path))
    assert result.commit == sha
    assert git(sandbox.app_remote, "rev-parse", "main").strip() == sha  # no build commit when a SHA is given


def registry_digests(sandbox: Sandbox, image_tag: str, chart_version: str) -> tuple[str | None, str | None]:
    """What the image tag and the chart tag point at, read from the registry."""
    config = load_config(sandbox.config_path)
    with open_registry(config, config.image.repository) as (registry, image_repository):
        image = registry.manifest_digest(image_repository, image_tag)
    with open_registry(config, chart_repository(config)) as (registry, repository):
        return image, registry.manifest_digest(repository, chart_version)


def test_publishing_one_commit_again_builds_nothing_and_moves_no_tag(sandbox, monkeypatch):
    """CI on push, a manual --sha run and release-prod's next build all publish one commit: its tags never move."""
    builds: list[str] = []
    manifest_puts: list[str] = []
    real_builder, real_put = promo.tasks.image.image_builder, Registry.push_manifest

    class CountingBuilder:
        def __init__(self, config):
            self.builder = real_builder(config)

        def build_and_push(self, **options):
            builds.append(options["tag"])
            return self.builder.build_and_push(**options)

    def counting_put(registry, repository, reference, data, media_type):
        manifest_puts.append(f"{repository}:{reference}")
        return real_put(registry, repository, reference, data, media_type)

    monkeypatch.setattr(promo.tasks.image, "image_builder", CountingBuilder)
    monkeypatch.setattr(Registry, "push_manifest", counting_put)
    sha = git(sandbox.app_remote, "rev-parse", "main").strip()
    config = str(sandbox.config_path)
    first = publish_dev(sha=sha, config_path=config)
    tags = registry_digests(sandbox, short_sha(sha), first.chart_version)
    assert tags == (first.image_digest, first.chart_digest) and builds == [short_sha(sha)]
    manifest_puts.clear()

    again = publish_dev(sha=sha, config_path=config)

    assert builds == [short_sha(sha)], "the second run built the image again"
    assert manifest_puts == [], "the second run pushed a tag again"
    assert registry_digests(sandbox, short_sha(sha), first.chart_version) == tags
    assert (again.image_digest, again.chart_digest) == (first.image_digest, first.chart_digest)
    summary = Artifact.get(f"publish-{sandbox.app}").data
    assert f"`{first.image_digest}` (in the registry already: reused, not pushed again)" in summary
    assert f"`{first.chart_digest}` (in the registry already: reused, not pushed again)" in summary


def test_promote_test_waits_at_the_gate_then_writes_test(sandbox, published, background):
    run = background(lambda: promote_test(config_path=str(sandbox.config_path)))
    gate = run.gate("test")
    assert (gate.app, gate.version) == (sandbox.app, published.chart_version)
    assert target_revision(sandbox, "test") != published.chart_version  # nothing written before the decision
    description = gate_description(gate.flow_run_id)
    compact = description.replace(" ", "")  # digests are shown in groups of 16 so the UI can wrap them
    assert f"`{published.chart_version}`" in description and published.chart_digest in compact
    assert f"{published.image}@{published.image_digest}" in compact
    assert "+    targetRevision:" in description and "### Commits" in description and "build: publish-dev" in description
    decide(gate, Decision(approved=True, approver="carol", comment="tests green"))
    promotion = run.join()
    assert target_revision(sandbox, "test") == published.chart_version
    lines = changed_lines(sandbox.gitops_remote, promotion.gitops_commit)
    assert len(lines) == 2 and all("targetRevision:" in line for line in lines)
    message = git(sandbox.gitops_remote, "log", "-1", "--format=%B", promotion.gitops_commit)
    assert "Promoted-From: dev" in message and "Approved-By: carol" in message
    table = {row["environment"]: row for row in json.loads(Artifact.get(f"environments-{sandbox.app}").data)}
    assert table["test"]["version"] == table["dev"]["version"] == published.chart_version
    assert table["test"]["chart digest"] == published.chart_digest and table["stage"]["version"] == "-"
    decision = Artifact.get(f"gate-{sandbox.app}-test")
    assert "approved by `carol`" in decision.data and "tests green" in decision.data


def test_promote_stage_refuses_approvers_not_on_the_list_and_keeps_waiting(sandbox, published, background):
    config = str(sandbox.config_path)
    with approving_as("carol"):
        promote_test(config_path=config)
    run = background(lambda: promote_stage(config_path=config))
    gate = run.gate("stage")
    with pytest.raises(InputError, match="mallory"):
        decide(gate, Decision(approved=True, approver="mallory"))
    assert run.thread.is_alive() and run.gate("stage").flow_run_id == gate.flow_run_id
    decide(gate, Decision(approved=True, approver="alice"))
    assert run.join().approved_by == "alice"
    assert target_revision(sandbox, "stage") == published.chart_version


def test_pre_approval_by_someone_not_on_the_list_is_refused_before_any_change(sandbox, published):
    config = str(sandbox.config_path)
    with approving_as("carol"):
        promote_test(config_path=config)
    before = gitops_head(sandbox)
    with pytest.raises(InputError, match="'mallory' may not approve promotions into stage"):
        with approving_as("mallory"):
            promote_stage(config_path=config)
    assert gitops_head(sandbox) == before


def test_rejection_fails_the_run_with_the_reason_and_changes_nothing(sandbox, published, background):
    before = gitops_head(sandbox)
    run = background(lambda: promote_test(config_path=str(sandbox.config_path)))
    decide(run.gate("test"), Decision(approved=False, approver="carol", comment="smoke tests failing"))
    with pytest.raises(ApprovalRejected, match="rejected by carol: smoke tests failing"):
        run.join()
    assert gitops_head(sandbox) == before


def test_a_gate_with_no_decision_times_out_and_fails(sandbox, published):
    before = gitops_head(sandbox)
    with pytest.raises(ApprovalRejected, match="no decision .* within 2 s"):
        promote_test(config_path=with_gate(sandbox, timeout_seconds=2, poll_interval_seconds=0.2))
    assert gitops_head(sandbox) == before


def test_a_promotion_already_in_place_makes_no_commit_and_says_so(sandbox, published):
    config = str(sandbox.config_path)
    with approving_as("carol"):
        promote_test(config_path=config)
    before = gitops_head(sandbox)
    again = promote_test(config_path=config)  # no gate: nothing to approve
    assert again.gitops_commit is None and "already at" in again.summary()
    assert gitops_head(sandbox) == before


def test_a_source_environment_with_no_version_is_refused(sandbox):
    before = gitops_head(sandbox)
    with pytest.raises(NotFound, match="dev"):
        with approving_as("carol"):
            promote_test(config_path=str(sandbox.config_path))
    assert gitops_head(sandbox) == before


def test_a_chart_missing_from_the_registry_is_refused_before_the_gate(sandbox, published):
    config = load_config(sandbox.config_path)
    subprocess.run(
        ["skopeo", "delete", "--tls-verify=false", f"docker://{config.chart.repository}/{sandbox.app}:{published.chart_version}"],
        check=True,
        capture_output=True,
    )
    before = gitops_head(sandbox)
    with pytest.raises(NotFound, match=f"chart {sandbox.app} {published.chart_version} is not in"):
        with approving_as("carol"):
            promote_test(config_path=str(sandbox.config_path))
    assert gitops_head(sandbox) == before
