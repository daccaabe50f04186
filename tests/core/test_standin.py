"""The stand-in for Argo CD and the clusters: a real process following a real bare GitOps remote over real HTTP.

Most tests share one stand-in that never polls on its own (``poll_seconds`` of an hour), so only ``?refresh=`` makes
it read git, and whose sync operation and rollout each last long enough to be seen between two requests. Each test
works on its own app, so the tests do not see each other's Applications.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from promo.config import PromoConfig
from promo.errors import NotFound
from promo.local.registry import RegistryServer
from promo.local.sandbox import create_sandbox, stop_sandbox
from promo.local.standin import StandinServer, StandinSettings
from promo.registry.charts import package_chart
from promo.registry.helm import PushedChart, push_chart
from promo.registry.oci import Registry
from promo.verify.argocd import ArgoCD
from promo.tasks.verify import verify_with_clients
from promo.verify.engine import verify_deployment
from tests.fixtures.gitrepos import ROOT, GitRemote, application, make_remote

pytestmark = pytest.mark.integration

WAIT_SECONDS = 60  # generous: the machine is shared and loaded
TIMING = {"poll_seconds": 3600.0, "sync_delay": 0.3, "operation_seconds": 1.5, "progressing_seconds": 1.5}


@dataclass
class World:
    remote: GitRemote
    server: StandinServer
    degraded_versions: Path
    failed_syncs: Path

    def get(self, name: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.server.url}/api/v1/applications/{name}", params=params, timeout=10)

    def application(self, name: str, **params: str) -> dict[str, Any]:
        response = self.get(name, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def version(self, env: str, cluster: str, app: str) -> httpx.Response:
        return httpx.get(f"{self.server.url}/clusters/{env}/{cluster}/{app}/version", timeout=10)

    def deploy(self, app: str, env: str, version: str, text: str | None = None) -> str:
        """Write ``version`` into the app's manifest as another writer would, and return the GitOps commit."""
        self.remote.commit({manifest(app, env): text or application(app, env, version)}, f"{app}: {env} -> {version}")
        return self.remote.head()


def manifest(app: str, env: str, cluster: str = "preprod") -> str:
    return f"{ROOT}/{env}/{cluster}/{app}.yaml"


def wait_for(read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Read until ``done``; every body read, in order (the last one is done)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        seen.append(read())
        if done(seen[-1]):
            return seen
        time.sleep(0.05)
    pytest.fail(f"not done within {WAIT_SECONDS} s; last seen: {seen[-1] if seen else None}")


def state(body: dict[str, Any]) -> tuple[str, str, str | None]:
    status = body["status"]
    return status["sync"]["status"], status["health"]["status"], status.get("operationState", {}).get("phase")


def stages(seen: list[dict[str, Any]]) -> list[str]:
    """What an observer saw, repeats folded: OutOfSync, syncing (an operation in flight), then the health."""
    folded: list[str] = []
    for body in seen:
        sync, health, _ = state(body)
        stage = "syncing" if "operation" in body else health if sync == "Synced" else "OutOfSync"
        if not folded or folded[-1] != stage:
            folded.append(stage)
    return folded


def is_up(body: dict[str, Any], version: str) -> bool:
    status = body["status"]
    return (
        state(body) == ("Synced", "Healthy", "Succeeded")
        and status["sync"]["revision"] == version
        and "operation" not in body
    )


def is_alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def session_members(session: int) -> list[int]:
    """Every process, zombies too, in the session a server was started in (its own: it leads it)."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split() if entry.name.isdigit() else []
        except OSError:
            continue  # gone meanwhile
        if fields and int(fields[3]) == session:
            members.append(int(entry.name))
    return members


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("standin")
    remote = make_remote(base / "gitops", {"README.md": "# GitOps\n"})
    degraded, failed = base / "degraded-versions", base / "failed-syncs"
    degraded.write_text("# none yet\n")
    failed.write_text(
        "# <chart version> Failed|Error <message>\n"
        "4.0.0-rc.bad0000 Failed one or more objects failed to apply, reason: Deployment.apps \"golf\" is invalid\n"
        "4.0.0-rc.err0000 Error ComparisonError: Failed to load target state: failed to generate manifest\n"
    )
    settings = StandinSettings(
        port=0, gitops=remote.path, degraded_versions=degraded, failed_syncs=failed, **TIMING
    )  # fmt: skip
    server = StandinServer.start(base / "standin", settings)
    try:
        yield World(remote, server, degraded, failed)
    finally:
        server.stop()


def test_a_commit_is_read_on_refresh_then_synced_and_healthy_in_argo_cds_shapes(world: World) -> None:
    commit = world.deploy("alpha", "dev", "0.1.0-rc.aaaaaaa")
    name = "alpha-dev-preprod"
    assert world.get(name).status_code == 404, "without a refresh the stand-in has not read the commit yet"

    first = world.application(name, refresh="normal")
    seen = [first, *wait_for(lambda: world.application(name), lambda body: is_up(body, "0.1.0-rc.aaaaaaa"))]

    assert first["metadata"] == {"name": name, "namespace": "argocd"}
    assert first["spec"]["source"]["targetRevision"] == "0.1.0-rc.aaaaaaa"
    assert first["status"]["sync"] == {**first["status"]["sync"], "status": "OutOfSync", "revision": "0.1.0-rc.aaaaaaa"}
    assert state(first) == ("OutOfSync", "Missing", None)
    assert stages(seen) == ["OutOfSync", "syncing", "Progressing", "Healthy"]
    in_flight = next(body for body in seen if "operation" in body)
    assert in_flight["operation"]["sync"] == {"revision": "0.1.0-rc.aaaaaaa"}
    assert in_flight["status"]["operationState"]["phase"] == "Running"
    assert "finishedAt" not in in_flight["status"]["operationState"]
    assert in_flight["status"]["sync"]["status"] == "OutOfSync"

    up = seen[-1]["status"]
    assert up["operationState"]["syncResult"]["revision"] == "0.1.0-rc.aaaaaaa"
    assert up["operationState"]["startedAt"] <= up["operationState"]["finishedAt"] <= up["health"]["lastTransitionTime"]
    assert up["reconciledAt"] >= up["operationState"]["finishedAt"]
    assert [(entry["id"], entry["revision"]) for entry in up["history"]] == [(0, "0.1.0-rc.aaaaaaa")]
    assert world.version("dev", "preprod", "alpha").text == "0.1.0-rc.aaaaaaa"
    assert commit == world.remote.head()


def test_the_version_endpoint_serves_the_running_version_until_the_next_one_is_healthy(world: World) -> None:
    name = "bravo-dev-preprod"
    assert world.version("dev", "preprod", "bravo").status_code == 404
    world.deploy("bravo", "dev", "1.0.0")
    world.application(name, refresh="normal")
    assert world.version("dev", "preprod", "bravo").status_code == 503, "nothing runs before the first sync"
    wait_for(lambda: world.application(name), lambda body: is_up(body, "1.0.0"))
    assert world.version("dev", "preprod", "bravo").text == "1.0.0"

    world.deploy("bravo", "dev", "1.0.1")
    assert world.application(name, refresh="hard")["status"]["sync"]["status"] == "OutOfSync"
    assert world.version("dev", "preprod", "bravo").text == "1.0.0", "the old version runs until the sync"
    progressing = wait_for(lambda: world.application(name), lambda body: state(body)[1] == "Progressing")[-1]
    assert progressing["status"]["sync"] == {**progressing["status"]["sync"], "status": "Synced", "revision": "1.0.1"}
    assert world.version("dev", "preprod", "bravo").status_code == 503
    up = wait_for(lambda: world.application(name), lambda body: is_up(body, "1.0.1"))[-1]
    assert world.version("dev", "preprod", "bravo").text == "1.0.1"
    assert [entry["revision"] for entry in up["status"]["history"]] == ["1.0.0", "1.0.1"]


def test_a_version_the_knob_marks_bad_comes_up_degraded_and_can_recover(world: World) -> None:
    name = "charlie-test-preprod"
    world.degraded_versions.write_text("# bad ones\n2.0.0-rc.bad0000\n")
    world.deploy("charlie", "test", "2.0.0-rc.bad0000")
    world.application(name, refresh="normal")

    seen = wait_for(lambda: world.application(name), lambda body: state(body)[1] == "Degraded")

    assert state(seen[-1]) == ("Synced", "Degraded", "Succeeded"), "the sync succeeds; the workload is what fails"
    assert seen[-1]["status"]["sync"]["revision"] == "2.0.0-rc.bad0000"
    assert all(state(body)[1] != "Healthy" for body in seen)
    assert world.version("test", "preprod", "charlie").status_code == 503

    world.degraded_versions.write_text("")
    wait_for(lambda: world.application(name), lambda body: is_up(body, "2.0.0-rc.bad0000"))
    assert world.version("test", "preprod", "charlie").text == "2.0.0-rc.bad0000"


def test_a_multi_source_application_reports_revisions_in_spec_sources_order(world: World) -> None:
    text = f"""\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: delta-prod
  namespace: argocd
spec:
  project: default
  sources:
    - repoURL: {world.remote.url}
      targetRevision: main
      ref: values
    - repoURL: 127.0.0.1:5000/charts
      chart: delta
      targetRevision: "3.1.0"
      helm:
        valueFiles: [$values/values/delta/prod.yaml]
  destination: {{name: prod, namespace: delta-prod}}
"""
    world.remote.commit({manifest("delta", "prod", "prod"): text}, "delta: prod -> 3.1.0")
    commit = world.remote.head()
    name = "delta-prod-prod"

    first = world.application(name, refresh="normal")
    up = wait_for(lambda: world.application(name), lambda body: state(body) == ("Synced", "Healthy", "Succeeded"))[-1]

    assert first["spec"]["sources"][1]["chart"] == "delta"
    assert "revision" not in up["status"]["sync"]
    assert up["status"]["sync"]["revisions"] == [commit, "3.1.0"]
    assert up["status"]["operationState"]["syncResult"]["revisions"] == [commit, "3.1.0"]
    assert [entry["revisions"] for entry in up["status"]["history"]] == [[commit, "3.1.0"]]
    assert world.version("prod", "prod", "delta").text == "3.1.0"


def test_unknown_applications_are_argo_cds_404(world: World) -> None:
    world.deploy("echo", "stage", "0.3.0")
    world.application("echo-stage-preprod", refresh="normal")

    for response in (world.get("no-such-app"), world.get("echo-stage-preprod", appNamespace="elsewhere")):
        assert response.status_code == 404
        message = response.json()["message"]
        assert response.json() == {"error": message, "code": 5, "message": message}
    assert world.get("no-such-app").json()["message"] == 'applications.argoproj.io "no-such-app" not found'
    assert world.get("echo-stage-preprod", appNamespace="argocd").status_code == 200


def verify_config(url: str, app: str, *, timeout: str = "10m", chart_repository: str = "127.0.0.1:5000/charts"):
    """promo.yaml for ``app`` whose ``test`` environment is verified by the stand-in at ``url``."""
    argocd = {"url": url, "token": "none"}
    verify = {"timeout": timeout, "healthy_for": 0, "poll_interval_seconds": 0.2, "argocd": argocd}
    return PromoConfig.model_validate(
        {
            "app": app,
            "app_repo": {"url": "file:///nowhere/app.git"},
            "gitops": {"url": "file:///nowhere/gitops.git"},
            "chart": {"path": f"charts/{app}", "repository": chart_repository},
            "image": {"repository": "127.0.0.1:5000/app"},
            "environments": [
                {"name": "dev", "clusters": ["preprod"]},
                {"name": "test", "clusters": ["preprod"], "verify": verify},
            ],
        }
    )


@pytest.mark.parametrize(
    ("app", "version", "phase", "message"),
    [
        ("golf", "4.0.0-rc.bad0000", "Failed", 'one or more objects failed to apply, reason: Deployment.apps "golf"'),
        ("hotel", "4.0.0-rc.err0000", "Error", "ComparisonError: Failed to load target state"),
    ],
)
def test_a_sync_the_knob_fails_ends_failed_or_errored_with_its_message(
    world: World, app: str, version: str, phase: str, message: str
) -> None:
    name = f"{app}-test-preprod"
    world.deploy(app, "test", version)
    world.application(name, refresh="normal")

    done = wait_for(lambda: world.application(name), lambda body: state(body)[2] == phase)[-1]

    operation = done["status"]["operationState"]
    assert operation["message"].startswith(message) and "operation" not in done
    assert operation["operation"]["sync"]["revision"] == version
    assert ("syncResult" in operation) is (phase == "Failed"), "an Error is a sync that could not be carried out"
    assert done["status"]["sync"]["status"] == "OutOfSync" and done["status"]["history"] == []
    assert world.version("test", "preprod", app).status_code == 503, "nothing was deployed"


def test_verification_ends_at_a_failed_sync_well_before_its_timeout(world: World) -> None:
    world.deploy("india", "test", "4.0.0-rc.bad0000")
    started = time.monotonic()
    verdict = verify_with_clients(verify_config(world.server.url, "india"), "test", "4.0.0-rc.bad0000", "c0ffee")
    assert time.monotonic() - started < WAIT_SECONDS, "well before the 10-minute verify.timeout"
    assert not verdict.verified
    assert verdict.reason.startswith(
        'cluster preprod: sync to 4.0.0-rc.bad0000 Failed: one or more objects failed to apply, reason: Deployment.apps'
    )


def a_chart(tmp_path: Path, registry_server: RegistryServer, repository: str, version: str) -> PushedChart:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {repository.rsplit('/', 1)[-1]}\nversion: 0.0.0\n")
    with Registry(registry_server.host) as registry:
        return push_chart(registry, repository, package_chart(chart, version=version, app_version="abc1234"))


def native_oci_application(app: str, repo_url: str, version: str) -> str:
    return f"""\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {app}-test
  namespace: argocd
spec:
  project: default
  source:
    repoURL: {repo_url}  # Argo CD 3.1+ native OCI source: no chart key
    targetRevision: "{version}"
    path: .
  destination: {{name: preprod, namespace: {app}-test}}
"""


def test_a_native_oci_source_reports_the_digest_its_tag_resolves_to(
    world: World, tmp_path: Path, registry_server: RegistryServer
) -> None:
    pushed = a_chart(tmp_path, registry_server, "standin-oci/juliet", "5.0.0")
    repo_url = f"oci://{registry_server.host}/standin-oci/juliet"
    world.deploy("juliet", "test", "5.0.0", native_oci_application("juliet", repo_url, "5.0.0"))
    name = "juliet-test-preprod"
    world.application(name, refresh="normal")

    up = wait_for(lambda: world.application(name), lambda body: is_up(body, pushed.digest))[-1]

    assert up["spec"]["source"] == {"repoURL": repo_url, "targetRevision": "5.0.0", "path": "."}
    assert up["status"]["operationState"]["syncResult"]["revision"] == pushed.digest
    assert world.version("test", "preprod", "juliet").text == "5.0.0", "the app serves its chart version"
    config = verify_config(world.server.url, "juliet", chart_repository=f"{registry_server.host}/standin-oci")
    verdict = verify_with_clients(config, "test", "5.0.0", "c0ffee")  # the digest is read from the chart repository
    assert verdict.verified and f"Synced at 5.0.0 ({pushed.digest[:19]}...), Healthy" in verdict.reason

    world.deploy("juliet", "test", "5.0.1", native_oci_application("juliet", repo_url, "5.0.1"))  # never pushed
    unresolved = world.application(name, refresh="normal")["status"]
    assert unresolved["sync"]["status"] == "Unknown" and unresolved["conditions"][0]["type"] == "ComparisonError"


@pytest.fixture(scope="module")
def slow_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A stand-in whose Applications appear 6 s after their manifest (an ApplicationSet creating them), and whose
    refreshes are answered 3 s late."""
    base = tmp_path_factory.mktemp("slow-standin")
    remote = make_remote(base / "gitops", {"README.md": "# GitOps\n"})
    timing = {**TIMING, "create_delay": 6.0, "refresh_seconds": 3.0}
    server = StandinServer.start(base / "standin", StandinSettings(port=0, gitops=remote.path, **timing))
    try:
        yield World(remote, server, base / "none", base / "none")
    finally:
        server.stop()


def test_an_application_created_later_is_404_until_then(slow_world: World) -> None:
    slow_world.deploy("kilo", "test", "1.0.0")
    started = time.monotonic()
    assert slow_world.get("kilo-test-preprod", refresh="normal").status_code == 404
    assert time.monotonic() - started >= 3, "the refresh was answered refresh_seconds late"
    seen = wait_for(lambda: slow_world.get("kilo-test-preprod").json(), lambda body: "status" in body)
    assert "not found" in seen[0]["message"], "404 until created, with no refresh needed to see it then"
    wait_for(lambda: slow_world.application("kilo-test-preprod"), lambda body: is_up(body, "1.0.0"))


def test_verification_waits_for_an_application_to_appear_and_past_a_slow_refresh(slow_world: World) -> None:
    slow_world.deploy("lima", "test", "1.0.0")
    config = verify_config(slow_world.server.url, "lima")
    argocd = ArgoCD(config.environment("test").verify.argocd, None, refresh_timeout=0.5)
    started = time.monotonic()
    verdict = verify_deployment(config, "test", "1.0.0", "c0ffee", argocd=argocd)
    assert verdict.verified, verdict.reason
    assert time.monotonic() - started < WAIT_SECONDS


def test_verification_of_an_application_that_never_appears_reaches_no_verdict(slow_world: World) -> None:
    slow_world.deploy("mike", "test", "1.0.0")
    argocd_settings = verify_config(slow_world.server.url, "nobody", timeout="1s").environment("test").verify.argocd
    with pytest.raises(NotFound, match="Argo CD has no Application nobody-test-preprod, and none appeared within 1 s"):
        verify_deployment(
            verify_config(slow_world.server.url, "nobody", timeout="1s"), "test", "1.0.0", "c0ffee",
            argocd=ArgoCD(argocd_settings, None, refresh_timeout=0.5),
        )  # fmt: skip


def test_a_configured_token_is_required(tmp_path: Path) -> None:
    remote = make_remote(tmp_path / "gitops", {manifest("hello", "dev"): application("hello", "dev", "0.1.0")})
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    settings = StandinSettings(port=0, gitops=remote.path, token_file=token_file, **TIMING)
    server = StandinServer.start(tmp_path / "standin", settings)
    try:
        url = f"{server.url}/api/v1/applications/hello-dev-preprod"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = httpx.get(url, headers=headers)
            assert refused.status_code == 401
            message = "no session information"
            assert refused.json() == {"error": message, "code": 16, "message": message}
        assert httpx.get(url, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert "s3cret-token" not in server.config_path.read_text() + server.log_tail()
    finally:
        server.stop()


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    remote = make_remote(tmp_path / "gitops", {manifest("hello", "dev"): application("hello", "dev", "0.1.0")})
    # Polling without pause, so a git process is likely running at the moment the stop comes.
    settings = StandinSettings(port=0, gitops=remote.path, poll_seconds=0.001)
    server = StandinServer.start(tmp_path / "standin", settings)
    server.write_state(tmp_path / "state.json")
    assert server.is_running()
    assert httpx.get(f"{server.url}/api/v1/applications/hello-dev-preprod", timeout=10).status_code == 200

    assert StandinServer.stop_recorded(tmp_path / "state.json") is True

    assert not is_alive(server.pid)
    assert session_members(server.pid) == [], "its git processes went with it (none orphaned, none a zombie)"
    assert not (tmp_path / "state.json").exists()
    assert StandinServer.stop_recorded(tmp_path / "state.json") is False
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_the_sandbox_standin_follows_its_gitops_remote_by_polling(tmp_path: Path) -> None:
    sandbox = create_sandbox(tmp_path / "sandbox")
    try:
        writer = tmp_path / "writer"
        subprocess.run(["git", "clone", "--quiet", sandbox.gitops_remote.as_uri(), str(writer)], check=True)
        remote = GitRemote(sandbox.gitops_remote, writer)
        path = manifest("hello", "test")
        remote.commit({path: remote.read(path).replace('targetRevision: ""', "targetRevision: 0.1.0-rc.abc1234")})
        url = f"{sandbox.standin_url}/api/v1/applications/hello-test-preprod"

        wait_for(lambda: httpx.get(url, timeout=10).json(), lambda body: is_up(body, "0.1.0-rc.abc1234"))

        version = httpx.get(f"{sandbox.standin_url}/clusters/test/preprod/hello/version", timeout=10)
        assert version.text == "0.1.0-rc.abc1234"
        nothing_yet = httpx.get(f"{sandbox.standin_url}/api/v1/applications/hello-dev-preprod", timeout=10).json()
        assert state(nothing_yet) == ("OutOfSync", "Missing", None)
    finally:
        stop_sandbox(sandbox.directory)
    assert not is_alive(sandbox.standin_pid)
