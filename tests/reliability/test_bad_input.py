"""The bad-input catalogue: every bad value, file or answer ends in one line naming the cause and the fix, an exit
code, and an untouched world (GitOps refs, app repo refs, registry tags: snapshots before and after).

Extends tests/flows/test_cli.py (whose cases are not repeated here). Cases run through ``promo.cli.main.main`` in this
process, against a real sandbox: SHARED cases on one world where dev and test already run a real build (built once per
module), WORLD cases on a fresh sandbox each, broken first by ``setup``.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from promo.flows.gate import approving_as

from promo.release.gates import decide, waiting_gates
from promo.flows.promote import promote_stage, promote_test
from promo.flows.publish_dev import publish_dev
from promo.release.approvals import Decision
from promo.errors import ApprovalRejected
from promo.local.sandbox import Sandbox, create_sandbox, stop_sandbox
from tests.flows.test_cli import edit_remote, error_line, run_promo, set_manifest, world_snapshot, write_config
from tests.reliability.faulty_proxy import FaultyProxy

FIGURES: dict[str, object] = {}


@dataclass
class Ctx:
    world: Sandbox
    monkeypatch: pytest.MonkeyPatch
    httpserver: object
    stack: ExitStack

    def config(self, change: Callable[[dict], object]) -> str:
        return write_config(self.world, change)


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    expected: str  # words of the one line
    code: int
    setup: Callable[[Ctx], str | None] | None = None  # breaks the world; may return another promo.yaml
    env: dict[str, str] = field(default_factory=dict)
    bug: str | None = None  # set when the world is known to change: the message of the failing assertion


# -- setups ------------------------------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def through_proxy(**proxy_options) -> Callable[[Ctx], str]:
    def setup(ctx: Ctx) -> str:
        proxy = ctx.stack.enter_context(FaultyProxy(ctx.world.registry_host, **proxy_options))

        def change(data):
            data["image"]["repository"] = f"{proxy.host}/{ctx.world.app}"
            data["chart"]["repository"] = f"{proxy.host}/charts"

        return ctx.config(change)

    return setup


def github_forge(status: int, body: dict) -> Callable[[Ctx], str]:
    def setup(ctx: Ctx) -> str:
        ctx.monkeypatch.setenv("GITHUB_TOKEN", "ghp_not-a-real-token")
        ctx.httpserver.expect_request(uri=__import__("re").compile("/repos/.*")).respond_with_json(body, status=status)
        url = ctx.httpserver.url_for("/").rstrip("/")
        return ctx.config(lambda d: d.update(forge={"kind": "github", "repository": "acme/hello", "api_url": url}))

    return setup


def released_and_bumped(ctx: Ctx) -> None:
    """v0.1.0 tagged (by hand, on the first commit) and main moved to 0.2.0: a hotfix of v0.1.0 is allowed."""
    git(ctx.world.app_remote, "tag", "v0.1.0", "main")
    chart = f"charts/{ctx.world.app}/Chart.yaml"
    text = git(ctx.world.app_remote, "show", f"main:{chart}")
    edit_remote(ctx.world, ctx.world.app_remote, chart, text.replace("version: 0.1.0", "version: 0.2.0"))


def tag(ctx: Ctx, name: str, *, bump_main: bool) -> None:
    """v0.1.0 (and main at 0.2.0 when ``bump_main``), then tag ``name`` on main."""
    if bump_main:
        released_and_bumped(ctx)
    if name != "v0.1.0" or not bump_main:
        git(ctx.world.app_remote, "tag", name, "main")


def branch(ctx: Ctx, name: str) -> None:
    released_and_bumped(ctx)
    git(ctx.world.app_remote, "branch", name, "v0.1.0")


def chart_yaml(text: str) -> Callable[[Ctx], None]:
    return lambda ctx: edit_remote(ctx.world, ctx.world.app_remote, f"charts/{ctx.world.app}/Chart.yaml", text)


def manifest(env: str, transform) -> Callable[[Ctx], None]:
    return lambda ctx: set_manifest(ctx.world, env, transform)


def non_utf8_dev_manifest(ctx: Ctx) -> None:
    work = ctx.world.directory / "edit-bytes"
    subprocess.run(["git", "clone", "-q", str(ctx.world.gitops_remote), str(work)], check=True)
    path = work / "registry/environments/dev/preprod/hello.yaml"
    path.write_bytes(path.read_bytes().replace(b"# Argo CD", "# Argo CD caf\u00e9".encode("latin-1")))
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "latin-1")
    git(work, "push", "-q")


def second_dev_cluster(version: str | None) -> Callable[[Ctx], str]:
    """dev gets a second cluster, east: with a manifest at ``version``, or without any manifest (None)."""

    def setup(ctx: Ctx) -> str:
        if version is not None:
            text = git(ctx.world.gitops_remote, "show", "main:registry/environments/dev/preprod/hello.yaml")
            work = ctx.world.directory / "edit-east"
            subprocess.run(["git", "clone", "-q", str(ctx.world.gitops_remote), str(work)], check=True)
            (work / "registry/environments/dev/east").mkdir(parents=True)
            (work / "registry/environments/dev/east/hello.yaml").write_text(
                text.replace('targetRevision: ""', f"targetRevision: {version}")
            )
            git(work, "add", "-A")
            git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "east")
            git(work, "push", "-q")
        return ctx.config(lambda d: d["environments"][0].update(clusters=["preprod", "east"]))

    return setup


# -- the catalogue -------------------------------------------------------------------------------------------------

# Cases on the shared world: dev and test run a real build, stage and prod nothing.
SHARED: dict[str, Case] = {
    "hotfix tag without patch (v1.2)": Case(("hotfix", "v1.2"), "'v1.2' is not a release tag; use the form vX.Y.Z", 2),
    "hotfix tag without v (1.2.3)": Case(("hotfix", "1.2.3"), "'1.2.3' is not a release tag", 2),
    "hotfix tag with a leading zero (v01.2.3)": Case(("hotfix", "v01.2.3"), "'v01.2.3' is not a release tag", 2),
    "hotfix of a missing tag": Case(("hotfix", "v9.9.9"), "release tag v9.9.9 does not exist; pick a release", 4),
    "bump-version huge": Case(
        ("bump-version", "huge"), "unknown version part 'huge'; use one of: patch, minor, major", 2
    ),
    "bump-version PATCH (case)": Case(("bump-version", "PATCH"), "unknown version part 'PATCH'", 2),
    "approve with no gate waiting": Case(
        ("approve", "--env", "test", "--as", "carol"), "no gate is waiting into test on the Prefect server at http", 2
    ),
    "approve naming no gate": Case(("approve",), "name exactly one gate; pass a flow run id or --env ENV", 2),
    "approve an unknown flow run id": Case(
        ("approve", str(uuid.UUID(int=7))), "no gate is waiting with flow run id", 2
    ),
    "approve into env ../x": Case(("approve", "--env", "../x"), "unknown environment '../x'; use one of", 2),
    "publish-dev sha of digits only": Case(("publish-dev", "--sha", "0" * 40), "is made only of digits", 2),
    "publish-dev on a missing branch": Case(
        ("publish-dev", "--branch", "nope"), "'nope' is not a branch, tag or commit", 4
    ),
    "publish-dev branch with '..'": Case(
        ("publish-dev", "--branch", "main..x"), "'main..x' is not a valid git branch name", 2
    ),
    "publish-dev branch with a space": Case(
        ("publish-dev", "--branch", "a b"), "'a b' is not a valid git branch name", 2
    ),
    "promote-stage --yes by an approver not on the list": Case(
        ("promote-stage", "--yes"),
        "'mallory' may not approve promotions into stage; ask one of: demo, alice",
        2,
        env={"PROMO_USER": "mallory"},
    ),
    "release-prod with nothing in stage": Case(("release-prod", "--yes"), "hello has no version in stage yet", 4),
    "expired gate (gate.timeout_seconds: 1)": Case(
        ("promote-stage",),
        "no decision on hello",
        7,
        setup=lambda ctx: ctx.config(lambda d: d["gate"].update(timeout_seconds=1)),
    ),
    "forge (GitHub) answering 401": Case(
        ("releases",),
        "GitHub answered 401: Bad credentials; check the token",
        5,
        setup=github_forge(401, {"message": "Bad credentials"}),
    ),
    "forge (GitHub) answering 500": Case(
        ("releases",),
        "GitHub answered 500: boom; retry",
        9,
        setup=github_forge(500, {"message": "boom"}),
    ),
    "registry answering 500 forever": Case(
        ("publish-dev",),
        "with HTTP 500 (UNKNOWN: injected by the faulty proxy (500)); promo retries this",
        9,
        setup=through_proxy(status=500),
    ),
    "registry answering 401 to an anonymous client": Case(
        ("publish-dev",),
        "hello (UNAUTHORIZED: injected by the faulty proxy (401)): these credentials may not push to",
        5,
        setup=through_proxy(status=401),
    ),
    "promo.yaml: duplicate environment names": Case(
        ("promote-test", "--yes"),
        "environment names must be unique, repeated: test",
        2,
        setup=lambda ctx: ctx.config(lambda d: d["environments"].append({"name": "test", "clusters": ["x"]})),
    ),
    "promo.yaml: environment named prod;rm": Case(
        ("promote-test", "--yes"),
        "environment 'prod;rm' is not a DNS label",
        2,
        setup=lambda ctx: ctx.config(lambda d: d["environments"][3].update(name="prod;rm")),
    ),
    "promo.yaml: cluster ../../etc": Case(
        ("promote-test", "--yes"),
        "cluster '../../etc' is not a DNS label",
        2,
        setup=lambda ctx: ctx.config(lambda d: d["environments"][1].update(clusters=["../../etc"])),
    ),
    "promo.yaml: unknown key (a password)": Case(
        ("publish-dev",),
        "registry.password",
        2,
        setup=lambda ctx: ctx.config(lambda d: d.update(registry={"auth": "anonymous", "password": "x"})),
    ),
    "promo.yaml: a single environment": Case(
        ("publish-dev",),
        "environments",
        2,
        setup=lambda ctx: ctx.config(lambda d: d.update(environments=d["environments"][:1])),
    ),
    "promo.yaml: gate.timeout_seconds 0": Case(
        ("promote-test",),
        "gate.timeout_seconds",
        2,
        setup=lambda ctx: ctx.config(lambda d: d["gate"].update(timeout_seconds=0)),
    ),
    "promo.yaml: registry.auth token": Case(
        ("publish-dev",),
        "registry.auth",
        2,
        setup=lambda ctx: ctx.config(lambda d: d.update(registry={"auth": "token"})),
    ),
    "promo.yaml: image repository in uppercase": Case(
        ("publish-dev",),
        "'Hello' is not a valid repository name; use lowercase",
        2,
        setup=lambda ctx: ctx.config(
            lambda d: d["image"].update(repository=d["image"]["repository"].replace("hello", "Hello"))
        ),
    ),
    "promo.yaml: chart.path that does not exist": Case(
        ("publish-dev",),
        "charts/nope/Chart.yaml does not exist at main",
        3,
        setup=lambda ctx: ctx.config(lambda d: d["chart"].update(path="charts/nope")),
    ),
    "promo.yaml: chart.name not the chart's": Case(
        ("publish-dev",),
        "names the chart 'hello', promo.yaml expects 'other'",
        3,
        setup=lambda ctx: ctx.config(lambda d: d["chart"].update(name="other")),
    ),
    "promo.yaml: gitops.branch --upload-pack=x": Case(
        ("promote-test", "--yes"),
        "'--upload-pack=x' is not a valid git branch name",
        2,
        setup=lambda ctx: ctx.config(lambda d: d["gitops"].update(branch="--upload-pack=x")),
    ),
    "promo.yaml: gitops.url that is no repository": Case(
        ("promote-test", "--yes"),
        "does not appear to be a git repository; check the repository URL",
        4,
        setup=lambda ctx: ctx.config(lambda d: d["gitops"].update(url=(ctx.world.directory / "nope.git").as_uri())),
    ),
    "promo.yaml: a cluster of test without a manifest": Case(
        ("promote-test", "--yes"),
        "registry/environments/test/east/hello.yaml does not exist",
        4,
        setup=lambda ctx: ctx.config(lambda d: d["environments"][1].update(clusters=["preprod", "east"])),
    ),
    "--config naming a directory": Case(
        ("status",),
        "cannot read config file",
        2,
        setup=lambda ctx: str(ctx.world.directory),
    ),
}

# Cases on a fresh sandbox each (nothing published), broken by their setup.
WORLD: dict[str, Case] = {
    "manifest of another kind": Case(
        ("promote-test", "--yes"),
        "is not an Argo CD Application (kind: Deployment)",
        3,
        setup=manifest("dev", lambda t: t.replace("kind: Application", "kind: Deployment")),
    ),
    "manifest with both source and sources": Case(
        ("promote-test", "--yes"),
        "has both spec.source and spec.sources",
        3,
        setup=manifest("dev", lambda t: t.replace("  source:\n", "  sources: []\n  source:\n")),
    ),
    "manifest with a git source only": Case(
        ("promote-test", "--yes"),
        "",
        3,
        setup=manifest("dev", lambda t: t.replace("chart: hello", "path: charts/hello")),
    ),
    "manifest that is not UTF-8": Case(
        ("promote-test", "--yes"), "is not UTF-8 text; save the file as UTF-8", 8, setup=non_utf8_dev_manifest
    ),
    "clusters of dev that disagree": Case(
        ("promote-test", "--yes"),
        "the clusters of dev run different versions of hello: preprod=<none>, east=0.0.1-rc.abcdef1",
        6,
        setup=second_dev_cluster("0.0.1-rc.abcdef1"),
    ),
    "stage holding targetRevision main": Case(
        ("release-prod", "--yes"),
        "the targetRevision of hello in stage 'main' is not SemVer 2.0",
        2,
        setup=manifest("stage", lambda t: t.replace('targetRevision: ""', "targetRevision: main")),
    ),
    "Chart.yaml with version: 1.2 (a float)": Case(
        ("publish-dev",),
        "has a version that is not a string; set `version:` to a string",
        3,
        setup=chart_yaml("apiVersion: v2\nname: hello\nversion: 1.2\n"),
    ),
    "Chart.yaml with a pre-release version": Case(
        ("publish-dev",),
        "has a pre-release or build part",
        2,
        setup=chart_yaml("apiVersion: v2\nname: hello\nversion: 1.2.3-rc.1\n"),
    ),
    "Chart.yaml naming another chart": Case(
        ("publish-dev",),
        "names the chart 'other', promo.yaml expects 'hello'",
        3,
        setup=chart_yaml("apiVersion: v2\nname: other\nversion: 0.1.0\n"),
    ),
    "Chart.yaml that is a list": Case(("publish-dev",), "is not a YAML mapping", 3, setup=chart_yaml("- a\n- b\n")),
    "hotfix before main moved past the release": Case(
        ("hotfix", "v0.1.0"),
        "bump main's minor first",
        6,
        setup=lambda ctx: tag(ctx, "v0.1.0", bump_main=False),
    ),
    "hotfix whose branch exists": Case(
        ("hotfix", "v0.1.0"),
        "branch hotfix-0-1-1 already exists",
        6,
        setup=lambda ctx: branch(ctx, "hotfix-0-1-1"),
    ),
    "hotfix of a release whose patch is released": Case(
        ("hotfix", "v0.1.0"),
        "0.1.1 is already released as v0.1.1",
        6,
        setup=lambda ctx: tag(ctx, "v0.1.1", bump_main=True),
    ),
    "publish-dev into a dev cluster without a manifest": Case(
        ("publish-dev",),
        "registry/environments/dev/east/hello.yaml does not exist",
        4,
        setup=second_dev_cluster(None),
        bug=(
            "PROMO BUG (publish-dev checks the GitOps side last): a dev cluster without a manifest fails only at "
            "write-environment-version, after the build commit, the image and the RC chart were pushed. "
            "flows/publish_dev.py should plan the first environment's edit (promo.tasks.gitops.plan_environment_version with "
            "any valid version, or GitOpsRepo._manifests + set_target_revision dry run) before resolve_build_commit"
        ),
    ),
    "hotfix with a GitHub forge answering 401": Case(
        ("hotfix", "v0.1.0"),
        "GitHub answered 401: Bad credentials; check the token",
        5,
        setup=lambda ctx: (released_and_bumped(ctx), github_forge(401, {"message": "Bad credentials"})(ctx))[1],
        bug=(
            "PROMO BUG (hotfix pushes its branch before the forge is asked): flows/hotfix.py runs "
            "create_hotfix_branch before open_pull_request, so a refused GitHub token leaves branch hotfix-0-1-1 "
            "behind; check the forge's access first (e.g. list open pull requests) and see "
            "test_a_hotfix_whose_pull_request_failed_cannot_be_run_again"
        ),
    ),
}


def check_case(case: Case, name: str, ctx: Ctx, capsys) -> None:
    config = (case.setup(ctx) if case.setup else None) or str(ctx.world.config_path)
    for key, value in case.env.items():
        ctx.monkeypatch.setenv(key, value)
    before = world_snapshot(ctx.world)
    started = time.monotonic()
    code, _, err = run_promo(ctx.monkeypatch, capsys, case.args[0], "--config", config, *case.args[1:])
    FIGURES.setdefault("seconds", {})[name] = round(time.monotonic() - started, 2)
    line = error_line(err)
    FIGURES.setdefault("lines", {})[name] = (code, line)
    assert case.expected in line, f"{name}: {line}"
    assert "; " in line.removeprefix("promo: error: "), f"{name}: the line names no fix: {line}"
    assert code == case.code, f"{name}: exit {code}: {line}"
    assert world_snapshot(ctx.world) == before, case.bug or f"{name}: the world changed"


@pytest.fixture(scope="module", autouse=True)
def report_figures():
    yield
    seconds = FIGURES.get("seconds", {})
    print(
        f"\nbad input figures: {len(SHARED)} shared + {len(WORLD)} world cases + 3 gate/hotfix tests, "
        f"{len(seconds)} run in {sum(seconds.values()):.1f} s (promo calls only)"
    )


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory) -> Sandbox:
    world = create_sandbox(tmp_path_factory.mktemp("bad-input") / "world")
    try:
        publish_dev(config_path=str(world.config_path))
        with approving_as("carol"):
            promote_test(config_path=str(world.config_path))
        yield world
    finally:
        stop_sandbox(world.directory)


@pytest.mark.parametrize("name", list(SHARED))
def test_bad_input_on_a_published_world(name, shared_world, monkeypatch, capsys, httpserver, fast_retries):
    monkeypatch.delenv("PROMO_CONFIG", raising=False)
    with ExitStack() as stack:
        check_case(SHARED[name], name, Ctx(shared_world, monkeypatch, httpserver, stack), capsys)


@pytest.mark.parametrize("name", list(WORLD))
def test_bad_input_on_a_broken_world(name, sandbox, monkeypatch, capsys, httpserver, fast_retries):
    monkeypatch.delenv("PROMO_CONFIG", raising=False)
    with ExitStack() as stack:
        check_case(WORLD[name], name, Ctx(sandbox, monkeypatch, httpserver, stack), capsys)


# -- gates: a rejection, and an approver the gate refuses ------------------------------------------------------------


def test_a_rejected_approval_fails_the_run_and_changes_nothing(shared_world, monkeypatch, capsys):
    world = shared_world
    before = world_snapshot(world)

    def reject() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gates = waiting_gates(env="stage")
            if gates:
                decide(gates[0], Decision(approved=False, approver="alice", comment="smoke tests red"))
                return
            time.sleep(0.1)

    rejecter = threading.Thread(target=reject, daemon=True)
    rejecter.start()
    code, _, err = run_promo(monkeypatch, capsys, "promote-stage", "--config", str(world.config_path))
    rejecter.join(5)
    line = error_line(err)
    assert code == 7 and "rejected by alice: smoke tests red; fix what the approver asked for" in line, line
    assert world_snapshot(world) == before


def test_an_approver_not_on_the_list_is_refused_and_the_gate_keeps_waiting(
    shared_world, monkeypatch, capsys, background
):
    world = shared_world
    before = world_snapshot(world)
    run = background(lambda: promote_stage(config_path=str(world.config_path)))
    run.gate("stage")
    code, _, err = run_promo(
        monkeypatch, capsys, "approve", "--config", str(world.config_path), "--env", "stage", "--as", "mallory"
    )
    line = error_line(err)
    assert code == 2 and "the gate refused this answer" in line and "; check the approver name" in line, line
    time.sleep(1.0)  # the refused answer is not a decision: the gate still waits (poll interval 0.5 s)
    gates = waiting_gates(env="stage")
    assert gates, "the gate stopped waiting after a refused approver"
    decide(gates[0], Decision(approved=False, approver="alice", comment="end of test"))
    with pytest.raises(ApprovalRejected):
        run.join()
    assert world_snapshot(world) == before


def test_a_hotfix_whose_pull_request_failed_cannot_be_run_again(sandbox, monkeypatch, capsys, httpserver, fast_retries):
    """After a refused token the branch exists; with the token fixed, the re-run must open the pull request."""
    with ExitStack() as stack:
        ctx = Ctx(sandbox, monkeypatch, httpserver, stack)
        released_and_bumped(ctx)
        config = github_forge(401, {"message": "Bad credentials"})(ctx)
        code, _, err = run_promo(monkeypatch, capsys, "hotfix", "--config", config, "v0.1.0")
        assert code == 5, err
        httpserver.clear()  # the token is fixed: GitHub now lists no open pull request and creates one
        pull = {"number": 1, "head": {"ref": "hotfix-0-1-1"}, "base": {"ref": "main"}, "title": "t", "draft": True,
                "html_url": "https://github.com/acme/hello/pull/1"}  # fmt: skip
        httpserver.expect_request("/repos/acme/hello/pulls", method="GET").respond_with_json([])
        httpserver.expect_request("/repos/acme/hello/pulls", method="POST").respond_with_json(pull, status=201)
        code, _out, err = run_promo(monkeypatch, capsys, "hotfix", "--config", config, "v0.1.0")
    assert code == 0, (
        "PROMO BUG (hotfix is not resumable): after a failure between create-hotfix-branch and open-pull-request, "
        "`promo hotfix` refuses with ConflictError because promo.release.hotfix.check_hotfix treats promo's own branch as a "
        "collision, so the pull request is never opened by promo. check_hotfix should accept an existing branch whose "
        "head is exactly promo's 'chore: start hotfix' commit on the release commit, and go on to open_pull_request "
        f"(already idempotent). Got exit {code}: {err.strip()}"
    )
