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

from promo.local.sandbox import create_sandbox, stop_sandbox
from promo.local.standin import StandinServer, StandinSettings
from tests.fixtures.gitrepos import ROOT, GitRemote, application, make_remote

pytestmark = pytest.mark.integration

WAIT_SECONDS = 60  # generous: the machine is shared and loaded
TIMING = {"poll_seconds": 3600.0, "sync_delay": 0.3, "operation_seconds": 1.5, "progressing_seconds": 1.5}


@dataclass
class World:
    remote: GitRemote
    server: StandinServer
    degraded_versions: Path

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
    degraded = base / "degraded-versions"
    degraded.write_text("# none yet\n")
    settings = StandinSettings(port=0, gitops=remote.path, degraded_versions=degraded, **TIMING)
    server = StandinServer.start(base / "standin", settings)
    try:
        yield World(remote, server, degraded)
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
