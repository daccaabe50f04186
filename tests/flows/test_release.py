"""release-prod, hotfix and bump-version on a real sandbox: safe to re-run at every step."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from ruamel.yaml import YAML

import promo.flows.release_prod as release_module
from promo.flows.gate import approving_as
from promo.release.gates import decide
from promo.flows.bump_version import bump_version
from promo.flows.hotfix import hotfix
from promo.tasks.limits import RELEASE, environment_lock, limit_name, release_lock
from promo.flows.promote import promote_stage, promote_test
from promo.flows.publish_dev import publish_dev
from promo.flows.release_prod import release_prod
from promo.release.approvals import Decision
from promo.registry.charts import read_chart
from promo.clients import chart_repository, open_registry
from promo.config import load_config
from promo.errors import ConflictError, InputError, NotFound
from promo.registry.helm import pull_chart
from promo.registry.oci import Registry
from promo.local.sandbox import Sandbox, create_sandbox, stop_sandbox
from promo.versions import short_sha
from tests.flows.test_cli import run_promo


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def target_revision(sandbox: Sandbox, env: str) -> str:
    cluster = "prod" if env == "prod" else "preprod"
    text = git(sandbox.gitops_remote, "show", f"main:registry/environments/{env}/{cluster}/{sandbox.app}.yaml")
    spec = YAML(typ="safe").load(text)["spec"]
    sources = spec.get("sources") or [spec["source"]]
    return next(source["targetRevision"] for source in sources if "chart" in source)


def main_chart_version(sandbox: Sandbox, branch: str = "main") -> str:
    return YAML(typ="safe").load(git(sandbox.app_remote, "show", f"{branch}:charts/{sandbox.app}/Chart.yaml"))["version"]


def chart_tags(sandbox: Sandbox) -> list[str]:
    response = httpx.get(f"http://{sandbox.registry_host}/v2/charts/{sandbox.app}/tags/list")
    return sorted(response.json()["tags"] or [])


def chart_digest(sandbox: Sandbox, version: str) -> str | None:
    config = load_config(sandbox.config_path)
    with open_registry(config, chart_repository(config)) as (registry, repository):
        return registry.manifest_digest(repository, version)


@dataclass(frozen=True)
class Staged:
    sandbox: Sandbox
    config: str
    rc: str
    rc_commit: str


def stage_a_build(sandbox: Sandbox) -> Staged:
    config = str(sandbox.config_path)
    published = publish_dev(config_path=config)
    with approving_as("carol"):
        promote_test(config_path=config)
    with approving_as("alice"):
        promote_stage(config_path=config)
    return Staged(sandbox, config, published.chart_version, published.commit)


@pytest.fixture()
def staged(sandbox: Sandbox) -> Staged:
    return stage_a_build(sandbox)


@dataclass(frozen=True)
class ReleasedWorld:
    staged: Staged
    result: release_module.Released


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleasedWorld]:
    """One staged build released once, shared by the tests that only read what the release left (and the one that
    checks a re-run changes nothing): staging and releasing again for each took ~20 s apiece."""
    sandbox = create_sandbox(tmp_path_factory.mktemp("released") / "world")
    try:
        staged = stage_a_build(sandbox)
        with approving_as("alice"):
            result = release_prod(config_path=staged.config)
        yield ReleasedWorld(staged, result)
    finally:
        stop_sandbox(sandbox.directory)


def end_state(sandbox: Sandbox) -> dict[str, object]:
    """What a release leaves behind, with SHAs made comparable between two worlds."""
    tags = git(sandbox.app_remote, "for-each-ref", "--format=%(refname:short)", "refs/tags").split()
    main_log = git(sandbox.app_remote, "log", "--format=%s", "main").splitlines()
    rcs = [tag for tag in chart_tags(sandbox) if "-rc." in tag]
    return {
        "tags": tags,
        "release charts": [tag for tag in chart_tags(sandbox) if "-rc." not in tag],
        "rc charts": len(rcs),
        "prod": target_revision(sandbox, "prod"),
        "main version": main_chart_version(sandbox),
        "bump commits": sum(subject.startswith("chore: bump chart version") for subject in main_log),
        "dev": target_revision(sandbox, "dev").rsplit(".", 1)[0],
    }


def test_release_prod_releases_the_staged_rc_and_starts_the_next_build(released, monkeypatch, capsys):
    staged, sandbox, result = released.staged, released.staged.sandbox, released.result
    assert (result.version, result.rc) == ("0.1.0", staged.rc)
    assert target_revision(sandbox, "prod") == "0.1.0"
    assert git(sandbox.app_remote, "rev-parse", "v0.1.0^{commit}").strip() == staged.rc_commit
    assert main_chart_version(sandbox) == "0.1.1"
    bump_commit = git(sandbox.app_remote, "rev-parse", "main").strip()
    assert target_revision(sandbox, "dev") == f"0.1.1-rc.{short_sha(bump_commit)}" == result.next_build
    notes = git(sandbox.app_remote, "tag", "-l", "--format=%(contents)", "v0.1.0")
    assert "0.1.0" in notes

    code, out, err = run_promo(monkeypatch, capsys, "releases", "-c", staged.config)
    assert code == 0, err
    assert out.splitlines()[-1] == "notes: `promo trace 0.1.0` (or --json for every release's)"  # where notes are
    code, out, err = run_promo(monkeypatch, capsys, "trace", "0.1.0", "-c", staged.config)
    assert code == 0, err
    shown = out[out.index("release     0.1.0") :].splitlines()[2:]  # after the release line and its name or link
    assert shown and all(line.startswith("            ") for line in shown if line), out  # the notes, under the release
    assert {line.strip() for line in shown if line} <= {line.strip() for line in notes.splitlines()}  # the tag's notes
    assert "            ## 0.1.0" in shown


def test_the_release_chart_equals_the_rc_but_for_the_version_line(released):
    staged = released.staged
    config = load_config(staged.config)
    with open_registry(config, chart_repository(config)) as (registry, repository):
        rc, release = read_chart(pull_chart(registry, repository, staged.rc)), read_chart(pull_chart(registry, repository, "0.1.0"))
    assert rc.files.keys() == release.files.keys()
    for path in rc.files:
        if path.endswith("/Chart.yaml"):
            before, after = rc.files[path].decode().splitlines(), release.files[path].decode().splitlines()
            changed = [(b, a) for b, a in zip(before, after) if b != a]
            assert len(before) == len(after) and len(changed) == 1
            assert changed[0][0].replace(staged.rc, "0.1.0") == changed[0][1]
        else:
            assert rc.files[path] == release.files[path], path
    assert release.app_version == rc.app_version


def test_running_release_prod_again_changes_nothing(released, monkeypatch):
    staged = released.staged
    before = end_state(staged.sandbox)
    manifest_puts: list[str] = []
    real_put = Registry.push_manifest

    def counting_put(registry, repository, reference, data, media_type):
        manifest_puts.append(f"{repository}:{reference}")
        return real_put(registry, repository, reference, data, media_type)

    monkeypatch.setattr(Registry, "push_manifest", counting_put)
    again = release_prod(config_path=staged.config)  # no gate: prod already runs it
    assert again.approved_by is None
    assert end_state(staged.sandbox) == before
    assert manifest_puts == [], "a re-run wrote a tag that held its manifest already (immutable tags refuse that)"


def test_the_release_lock_is_one_slot_per_app_made_on_first_use():
    with release_lock("lockapp"):  # a local run makes its limit on first use
        with pytest.raises(ConflictError, match="another run held release of lockapp"):
            with environment_lock("lockapp", RELEASE, timeout_seconds=1.5):
                pass
        with environment_lock("otherapp", RELEASE, timeout_seconds=5):  # another app's releases are not held up
            pass
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(limit_name("lockapp", RELEASE)).limit == 1


def test_of_two_releases_of_one_version_the_one_approved_second_fails_and_the_release_never_changes(
    staged, background
):
    """Stage moves to another RC of the same base while a release waits at its gate: whoever is approved first
    releases X.Y.Z; the other is checked again after its gate and fails, and the chart X.Y.Z stays as published."""
    sandbox = staged.sandbox
    waiting = background(lambda: release_prod(config_path=staged.config))
    gate = waiting.gate("prod")  # waits to release the first RC as 0.1.0
    restaged = stage_a_build(sandbox)
    with approving_as("alice"):
        released = release_prod(config_path=staged.config)  # the second RC becomes 0.1.0
    assert (released.version, released.rc) == ("0.1.0", restaged.rc)
    published = chart_digest(sandbox, "0.1.0")
    after_first = end_state(sandbox)

    decide(gate, Decision(approved=True, approver="alice"))

    with pytest.raises(ConflictError) as refused:
        waiting.join()
    message = str(refused.value)
    assert message.startswith(f"chart hello 0.1.0 is already released with other content ({published}); ")
    assert "build a new RC" in message and "\n" not in message
    assert chart_digest(sandbox, "0.1.0") == published == released.release_digest
    assert end_state(sandbox) == after_first
    assert git(sandbox.app_remote, "rev-parse", "v0.1.0^{commit}").strip() == restaged.rc_commit


STEPS = ["prepare_release_chart", "publish_release_chart", "publish_release", "deploy", "bump_main", "find_next_build_commit", "publish_dev"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, object]:
    sandbox = create_sandbox(tmp_path_factory.mktemp("reference") / "world")
    try:
        with approving_as("alice"):
            release_prod(config_path=stage_a_build(sandbox).config)
        return end_state(sandbox)
    finally:
        stop_sandbox(sandbox.directory)


class Killed(Exception):
    """Stands for the process dying right after a step did its work."""


@pytest.mark.slow  # a crash suite: a staged world per step
@pytest.mark.parametrize("step", STEPS)
def test_a_release_killed_after_any_step_finishes_exactly_once_when_run_again(step, staged, uninterrupted, monkeypatch):
    real = getattr(release_module, step)

    def dies_after(*args, **kwargs):
        real(*args, **kwargs)  # the step does its work, then the process "dies"
        raise Killed(step)

    monkeypatch.setattr(release_module, step, dies_after)
    with pytest.raises(Killed):
        with approving_as("alice"):
            release_prod(config_path=staged.config)
    monkeypatch.setattr(release_module, step, real)
    with approving_as("alice"):
        release_prod(config_path=staged.config)
    assert end_state(staged.sandbox) == uninterrupted


def test_stage_holding_a_release_is_refused(staged):
    with approving_as("alice"):
        release_prod(config_path=staged.config)
    config = staged.config
    # stage now runs an RC whose release exists; put a plain version into stage by hand, as a person might
    from tests.flows.test_cli import set_manifest

    set_manifest(staged.sandbox, "stage", lambda t: t.replace(staged.rc, "0.1.0"))
    before = end_state(staged.sandbox)
    with pytest.raises(InputError, match="stage runs 0.1.0, which is not a release candidate"):
        with approving_as("alice"):
            release_prod(config_path=config)
    assert end_state(staged.sandbox) == before


def test_an_rc_missing_from_the_registry_is_refused(staged):
    config = load_config(staged.config)
    subprocess.run(
        ["skopeo", "delete", "--tls-verify=false", f"docker://{chart_repository(config)}:{staged.rc}"],
        check=True,
        capture_output=True,
    )
    with pytest.raises(NotFound, match=f"chart hello {staged.rc} is not in"):
        with approving_as("alice"):
            release_prod(config_path=staged.config)
    assert target_revision(staged.sandbox, "prod") == ""


def test_a_tag_of_the_release_at_another_commit_is_refused_before_anything_is_pushed(staged):
    sandbox = staged.sandbox
    other = git(sandbox.app_remote, "rev-parse", f"{staged.rc_commit}~1").strip()
    git(sandbox.app_remote, "tag", "v0.1.0", other)
    tags_before = chart_tags(sandbox)
    with pytest.raises(ConflictError, match="v0.1.0"):
        with approving_as("alice"):
            release_prod(config_path=staged.config)
    assert chart_tags(sandbox) == tags_before
    assert target_revision(sandbox, "prod") == ""


def test_hotfix_after_a_release_needs_main_moved_past_it_then_builds_on_its_branch(staged):
    sandbox = staged.sandbox
    with approving_as("alice"):
        release_prod(config_path=staged.config)
    with pytest.raises(ConflictError, match="bump main's minor first"):
        hotfix(tag="v0.1.0", config_path=staged.config)
    assert bump_version(part="minor", config_path=staged.config).after == "0.2.0"
    made = hotfix(tag="v0.1.0", config_path=staged.config)
    assert made.branch == "hotfix-0-1-1"
    assert main_chart_version(sandbox, "hotfix-0-1-1") == "0.1.1"
    assert git(sandbox.app_remote, "rev-parse", "hotfix-0-1-1~1").strip() == staged.rc_commit
    assert hotfix(tag="v0.1.0", config_path=staged.config).commit == made.commit  # a re-run finishes, adds nothing
    built = publish_dev(branch="hotfix-0-1-1", config_path=staged.config)
    assert built.chart_version.startswith("0.1.1-rc.")
    assert git(sandbox.app_remote, "branch", "--contains", built.commit).split() == ["hotfix-0-1-1"]


def test_a_release_from_a_hotfix_leaves_main_above_it(staged):
    sandbox = staged.sandbox
    with approving_as("alice"):
        release_prod(config_path=staged.config)
    bump_version(part="minor", config_path=staged.config)
    hotfix(tag="v0.1.0", config_path=staged.config)
    publish_dev(branch="hotfix-0-1-1", config_path=staged.config)
    with approving_as("carol"):
        promote_test(config_path=staged.config)
    with approving_as("alice"):
        promote_stage(config_path=staged.config)
    with approving_as("alice"):
        released = release_prod(config_path=staged.config)
    assert released.version == "0.1.1" and released.main_bumped_to is None and released.next_build is None
    assert main_chart_version(sandbox) == "0.2.0"


@pytest.mark.parametrize(("part", "expected"), [("patch", "0.1.1"), ("minor", "0.2.0"), ("major", "1.0.0")])
def test_bump_version(sandbox, part, expected):
    change = bump_version(part=part, config_path=str(sandbox.config_path))
    assert (change.before, change.after) == ("0.1.0", expected)
    assert main_chart_version(sandbox) == expected
    assert git(sandbox.app_remote, "log", "-1", "--format=%s", "main").strip() == f"chore: bump chart version ({part})"
