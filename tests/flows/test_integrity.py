"""A GitOps write changes exactly what its approver was shown, or nothing: stale gates, downgrades, and clusters
that disagree, on a real sandbox and a real Prefect server."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import ArtifactSort

import promo.flows.publish_dev as publish_module
from promo.flows.bump_version import bump_version
from promo.flows.gate import approving_as
from promo.release.gates import NOT_APPLIED_TAG, decide
from promo.flows.hotfix import hotfix
from promo.flows.promote import promote_stage, promote_test
from promo.flows.publish_dev import publish_dev
from promo.flows.release_prod import release_prod
from promo.release.approvals import Decision
from promo.clients import gitops_repo
from promo.config import load_config
from promo.errors import ConflictError, InputError
from promo.gitops.repo import Trailers, WriteRequest
from promo.local.sandbox import Sandbox
from tests.flows.test_cli import run_promo, write_config
from tests.flows.test_release import end_state, git, main_chart_version, stage_a_build, target_revision

TEST_MANIFEST = "registry/environments/test/preprod/hello.yaml"
NEW_CLUSTER_MANIFEST = "registry/environments/test/preprod-b/hello.yaml"


def gitops_head(sandbox: Sandbox) -> str:
    return git(sandbox.gitops_remote, "rev-parse", "main").strip()


def write_by_hand(sandbox: Sandbox, env: str, version: str) -> str:
    """Another writer lands ``version`` in ``env`` (promo's own write, as a concurrent run would); the new head."""
    config = load_config(sandbox.config_path)
    clusters = config.environment(env).clusters
    gitops = gitops_repo(config)
    shown = gitops.plan(config.app, env, clusters, version).current
    gitops.set_version(
        WriteRequest(config.app, env, clusters, version, expected=shown, subject=f"by hand: {env}", trailers=Trailers())
    )
    return gitops_head(sandbox)


def push_file(sandbox: Sandbox, path: str, text: str) -> None:
    """Commit one file to the GitOps remote through a clone of its own, as a person would."""
    work = sandbox.directory / "by-hand"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(sandbox.gitops_remote), str(work)], check=True)
    git(work, "pull", "-q")
    (work / path).parent.mkdir(parents=True, exist_ok=True)
    (work / path).write_text(text)
    git(work, "add", path)
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", f"edit {path}")
    git(work, "push", "-q")


def test_a_stale_promote_test_gate_approved_after_a_newer_promotion_changes_nothing(sandbox, background):
    config = str(sandbox.config_path)
    first = publish_dev(config_path=config)
    stale = background(lambda: promote_test(config_path=config))
    gate = stale.gate("test")  # shown: test <none> -> first
    assert gate.version == first.chart_version
    second = publish_dev(config_path=config)  # another build of the same base, which may replace the first
    # Landed by another writer, not by a promotion (whose landing would cancel the stale gate as superseded:
    # tests/flows/test_supersede.py): the gate stays open and its approval must change nothing.
    landed = write_by_hand(sandbox, "test", second.chart_version)

    decide(gate, Decision(approved=True, approver="carol"))
    with pytest.raises(ConflictError) as refused:
        stale.join()

    assert str(refused.value) == (
        f"test of hello moved from <none> to {second.chart_version} since the gate opened; run promote-test again"
    )
    assert gitops_head(sandbox) == landed and target_revision(sandbox, "test") == second.chart_version
    said = said_not_applied(gate.flow_run_id, "gate-hello-test")
    approved = f"**hello {first.chart_version}: dev -> test** approved by `carol` (gate)"
    assert f"{approved}: **not applied**, nothing was written." in said["artifact"]
    assert str(refused.value) in said["artifact"]
    assert "was not applied, nothing was written" in said["log"] and str(refused.value) in said["log"]
    assert NOT_APPLIED_TAG in said["tags"]  # what the failure notification reads (deployments/notify.py)


def test_a_paused_gate_approved_after_the_source_moved_on_ships_the_version_it_showed(sandbox, background):
    config = str(sandbox.config_path)
    shown = publish_dev(config_path=config)
    run = background(lambda: promote_test(config_path=config))
    gate = run.gate("test")
    newer = publish_dev(config_path=config)  # dev moves on while the gate waits
    assert target_revision(sandbox, "dev") == newer.chart_version != shown.chart_version

    decide(gate, Decision(approved=True, approver="carol"))
    promotion = run.join()

    assert promotion.version == shown.chart_version == target_revision(sandbox, "test")
    trailers = git(sandbox.gitops_remote, "log", "-1", "--format=%(trailers:only,unfold)", promotion.gitops_commit)
    assert f"Chart-Version: {shown.chart_version}" in trailers and "Approved-By: carol" in trailers


def said_not_applied(flow_run_id, artifact_key: str, timeout: float = 60) -> dict[str, str]:
    """What the run's gate artifact, its log on the server and its tags say, once it failed after its gate. The log
    reaches the server in batches: read until it holds the refusal, or the deadline passed."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            log = "\n".join(entry.message for entry in logs)
            if "not applied" in log or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            ),
            sort=ArtifactSort.CREATED_DESC,
        )
        tags = client.read_flow_run(flow_run_id).tags
    return {"artifact": str(artifacts[0].data) if artifacts else "", "log": log, "tags": " ".join(tags)}


def test_a_stale_release_prod_gate_cannot_move_prod_back(sandbox, background):
    staged = stage_a_build(sandbox)
    stale = background(lambda: release_prod(config_path=staged.config))
    gate = stale.gate("prod")  # shown: prod <none> -> 0.1.0
    landed = write_by_hand(sandbox, "prod", "0.2.0")
    before = end_state(sandbox)

    decide(gate, Decision(approved=True, approver="alice"))
    with pytest.raises(ConflictError) as refused:
        stale.join()

    assert str(refused.value) == (
        "prod of hello moved from <none> to 0.2.0 since the gate opened; run release-prod again"
    )
    assert "**not applied**" in said_not_applied(gate.flow_run_id, "gate-hello-prod")["artifact"]

    assert gitops_head(sandbox) == landed and target_revision(sandbox, "prod") == "0.2.0"
    assert main_chart_version(sandbox) == "0.1.0"  # nothing after the refused write ran: main was not bumped
    assert end_state(sandbox) == before  # refused right after the gate: no release chart, no tag


def test_release_prod_refuses_to_move_prod_back_before_its_gate_and_changes_nothing(sandbox):
    staged = stage_a_build(sandbox)
    write_by_hand(sandbox, "prod", "0.2.0")
    before = end_state(sandbox)
    with pytest.raises(ConflictError, match=r"prod runs a newer version of hello than 0\.1\.0 \(prod=0\.2\.0\)"):
        with approving_as("alice"):  # even an approval cannot take prod back
            release_prod(config_path=staged.config)
    assert end_state(sandbox) == before  # no tag, no release chart, no GitOps commit, no bump


def test_a_dev_write_landing_during_a_build_is_refused_not_overwritten(sandbox, monkeypatch):
    real_build = publish_module.build_image
    concurrent = "0.1.0-rc.c0ffee1"

    def build_while_another_write_lands(*args, **kwargs):
        built = real_build(*args, **kwargs)
        write_by_hand(sandbox, "dev", concurrent)
        return built

    monkeypatch.setattr(publish_module, "build_image", build_while_another_write_lands)
    refusal = f"dev of hello moved from <none> to {concurrent} since .*publish-dev again"
    with pytest.raises(ConflictError, match=refusal):
        publish_dev(config_path=str(sandbox.config_path))
    assert target_revision(sandbox, "dev") == concurrent


def test_a_hotfix_passes_environments_running_main_s_higher_rcs_on_its_way_to_prod(sandbox):
    staged = stage_a_build(sandbox)
    with approving_as("alice"):
        release_prod(config_path=staged.config)  # prod runs 0.1.0
    bump_version(part="minor", config_path=staged.config)
    main_rc = publish_dev(config_path=staged.config).chart_version
    with approving_as("carol"):
        promote_test(config_path=staged.config)
    assert main_rc.startswith("0.2.0-rc.") and target_revision(sandbox, "test") == main_rc

    hotfix(tag="v0.1.0", config_path=staged.config)
    fix = publish_dev(branch="hotfix-0-1-1", config_path=staged.config).chart_version  # below dev's 0.2.0-rc
    with pytest.raises(InputError, match=re.escape(f"into test replaces a newer version: {fix} is below {main_rc}")):
        with approving_as("carol"):  # it goes back in test: the approver says why
            promote_test(config_path=staged.config)
    with approving_as("carol", override_reason="hotfix 0.1.1 on its way to prod"):
        promote_test(config_path=staged.config)  # below test's 0.2.0-rc, above prod's 0.1.0
    with approving_as("alice"):
        promote_stage(config_path=staged.config)
    with approving_as("alice"):
        assert release_prod(config_path=staged.config).version == "0.1.1"
    assert fix.startswith("0.1.1-rc.") and target_revision(sandbox, "test") == fix
    assert target_revision(sandbox, "prod") == "0.1.1"


def with_new_cluster(sandbox: Sandbox) -> str:
    """test gets a second cluster, preprod-b, whose new manifest has nothing deployed; the promo.yaml listing it."""
    first_commit = git(sandbox.gitops_remote, "rev-list", "--max-parents=0", "main").strip()
    empty = git(sandbox.gitops_remote, "show", f"{first_commit}:{TEST_MANIFEST}")
    assert 'targetRevision: ""' in empty
    push_file(sandbox, NEW_CLUSTER_MANIFEST, empty.replace("name: preprod\n", "name: preprod-b\n"))
    return write_config(sandbox, lambda data: data["environments"][1].update(clusters=["preprod", "preprod-b"]))


def environments_table(sandbox: Sandbox) -> dict[str, dict[str, str]]:
    return {row["environment"]: row for row in json.loads(Artifact.get(f"environments-{sandbox.app}").data)}


def test_clusters_that_disagree_are_shown_refused_as_a_source_and_aligned_by_a_promotion(sandbox, monkeypatch, capsys):
    config = str(sandbox.config_path)
    first = publish_dev(config_path=config).chart_version
    with approving_as("carol"):
        promote_test(config_path=config)
    two_clusters = with_new_cluster(sandbox)
    disagreement = f"preprod={first}, preprod-b=<none> (clusters disagree)"

    code, out, err = run_promo(monkeypatch, capsys, "status", "--config", two_clusters)
    assert code == 0, err
    test_row = next(line for line in out.splitlines() if line.startswith("test "))
    assert disagreement in test_row and "preprod,preprod-b" in test_row

    before = gitops_head(sandbox)
    with pytest.raises(ConflictError, match=f"clusters of test run different versions of hello: {disagreement[:-20]}"):
        with approving_as("alice"):
            promote_stage(config_path=two_clusters)  # what would move on from test is ambiguous
    assert gitops_head(sandbox) == before

    second = publish_dev(config_path=two_clusters).chart_version  # lands, and its table renders the disagreement
    assert environments_table(sandbox)["test"]["version"] == disagreement

    with approving_as("carol"):
        aligned = promote_test(config_path=two_clusters)
    changed = git(sandbox.gitops_remote, "show", "--name-only", "--format=", aligned.gitops_commit).split()
    assert sorted(changed) == sorted([TEST_MANIFEST, NEW_CLUSTER_MANIFEST])
    assert environments_table(sandbox)["test"]["version"] == second


def test_the_environments_table_never_fails_a_run_whose_write_landed(sandbox):
    push_file(sandbox, "registry/environments/stage/preprod/hello.yaml", "kind: Application\nspec: [oops\n")
    published = publish_dev(config_path=str(sandbox.config_path))  # status cannot read stage: a warning only
    assert target_revision(sandbox, "dev") == published.chart_version
