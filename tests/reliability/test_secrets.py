"""Secrets never leak: registry passwords, ECR tokens, GitHub tokens and git tokens in URLs are set to marker strings,
flows run (successful and failing: refused credentials, a GitHub API answering 401 and 500, an unreachable git host),
and every place a secret could end up is searched for the markers (and their base64 forms):

    log records (caplog, with tracebacks), the Prefect API's logs (client.read_logs), artifacts (client.read_artifacts),
    flow and task run states and parameters, exception texts (str, repr, formatted tracebacks), CLI output, and every
    byte under the sandbox (git caches included: their config must hold no URL with userinfo).

Git over HTTP with ``http://x-access-token:TOKEN@127.0.0.1:PORT/<repo>.git`` is served by ``git http-backend`` behind
Basic auth (tests/reliability/git_http.py), so the token is really used for fetches and pushes, then looked for.
"""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from promo.flows.hotfix import hotfix
from promo.flows.publish_dev import publish_dev
from promo.errors import AuthError, PromoError, TransientError
from promo.gitops.mirror import Mirror, redact_url
from promo.gitops.repo import GitOpsRepo
from promo.registry.images import Buildah
from promo.registry.credentials import EcrCredentials
from promo.registry.oci import Registry
from promo.local.registry import _free_port
from tests.flows.test_cli import error_line, run_promo, write_config
from tests.reliability.git_http import GitHttpServer
from tests.reliability.test_bad_input import Ctx, github_forge, released_and_bumped

GIT_TOKEN = "MARKER-GIT-TOKEN-5b1e"
WRONG_GIT_TOKEN = "MARKER-WRONG-GIT-TOKEN-c2d4"
WRONG_REGISTRY_PASSWORD = "MARKER-REGISTRY-PASSWORD-9f0a"
GITHUB_TOKEN = "ghp_MARKERGITHUBTOKEN7e21"
ECR_PASSWORD = "MARKER-ECR-PASSWORD-3c8d"
UNREACHABLE_TOKEN = "MARKER-UNREACHABLE-TOKEN-a6b7"
SAMPLE = Path(__file__).resolve().parents[2] / "promo" / "sample-world" / "app"


def forms(*secrets: str) -> list[str]:
    """A secret and the encodings it travels in: ``user:secret`` in base64 (Basic auth, docker config.json)."""
    found = []
    for secret in secrets:
        found.append(secret)
        for user in ("AWS", "x-access-token", "promo-ci"):
            found.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return found


class Scan:
    """Every text a secret could reach, gathered during a test."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.started = datetime.now(UTC) - timedelta(seconds=1)
        self.texts: list[tuple[str, str]] = []

    def error(self, where: str, error: BaseException) -> None:
        self.texts.append((f"{where}: str", str(error)))
        self.texts.append((f"{where}: repr", repr(error)))
        self.texts.append((f"{where}: traceback", "".join(traceback.format_exception(error))))

    def text(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def prefect(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            ArtifactFilter,
            ArtifactFilterFlowRunId,
            FlowRunFilter,
            FlowRunFilterStartTime,
            LogFilter,
            LogFilterTimestamp,
        )
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=self.started))
            )
            assert runs, "no flow run to scan"
            ids = [run.id for run in runs]
            for run in runs:
                self.text(f"flow run {run.name} state", f"{run.state!r} {run.state.message if run.state else ''}")
                self.text(f"flow run {run.name} parameters", repr(run.parameters))
            for task_run in client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": ids})):
                self.text(
                    f"task run {task_run.name} state",
                    f"{task_run.state!r} {task_run.state.message if task_run.state else ''}",
                )
            offset, logs = 0, []
            while True:
                page = client.read_logs(
                    LogFilter(timestamp=LogFilterTimestamp(after_=self.started)), limit=200, offset=offset
                )
                logs += page
                offset += len(page)
                if len(page) < 200:
                    break
            assert logs, "no Prefect API log to scan"
            self.text("Prefect API logs", "\n".join(log.message for log in logs))
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
            )
            self.text("artifacts", "\n".join(f"{a.key} {a.description} {a.data}" for a in artifacts))
        self.counts = {"flow runs": len(runs), "api logs": len(logs), "artifacts": len(artifacts)}

    def files(self, root: Path, *, skip: tuple[Path, ...] = ()) -> None:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in skip:
                self.texts.append((f"file {path}", path.read_bytes().decode("latin-1")))

    def assert_clean(self, *secrets: str) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        self.text("log records", "\n".join(formatter.format(record) for record in self.caplog.records))
        leaks = [(where, marker) for where, text in self.texts for marker in forms(*secrets) if marker in text]
        assert not leaks, f"secrets leaked: {leaks[:10]}"


def assert_no_userinfo_in_caches(cache: Path) -> None:
    configs = list(cache.rglob("config"))
    assert configs, f"no git cache under {cache}"
    for config in configs:
        text = config.read_text()
        assert not re.search(r"://[^/\s]*@", text), f"{config} stores a URL with userinfo:\n{text}"
        assert "url =" not in text, f"{config} stores a remote URL:\n{text}"


@pytest.fixture()
def git_server(sandbox):
    with GitHttpServer(sandbox.directory / "remotes", "x-access-token", GIT_TOKEN) as server:
        yield server


def over_http(sandbox, server: GitHttpServer, token: str, registry) -> callable:
    def change(data):
        data["app_repo"]["url"] = server.url(f"{sandbox.app}.git", f"x-access-token:{token}")
        data["gitops"]["url"] = server.url("gitops.git", f"x-access-token:{token}")
        data["registry"] = {"auth": "basic"}
        data["image"]["repository"] = f"{registry.host}/{sandbox.app}"
        data["chart"]["repository"] = f"{registry.host}/charts"

    return change


def test_git_tokens_and_registry_passwords_never_leak(
    sandbox, git_server, basic_auth_registry_server, monkeypatch, capsys, caplog, fast_retries
):
    registry = basic_auth_registry_server
    scan = Scan(caplog)
    monkeypatch.setenv("PROMO_REGISTRY_USERNAME", registry.username)
    monkeypatch.setenv("PROMO_REGISTRY_PASSWORD", registry.password)

    # A whole publish through the token URLs and the password-protected registry.
    config = write_config(sandbox, over_http(sandbox, git_server, GIT_TOKEN, registry))
    published = publish_dev(config_path=config)
    assert git_server.authorizations > 0 and published.gitops_commit, "the git token was not used"
    scan.text("result", repr(published))

    # A refused registry password: the flow fails at its first task.
    monkeypatch.setenv("PROMO_REGISTRY_PASSWORD", WRONG_REGISTRY_PASSWORD)
    code, out, err = run_promo(monkeypatch, capsys, "publish-dev", "--config", config)
    assert code == 5 and "check the registry credentials" in error_line(err)
    scan.text("cli output (registry)", out + err)
    monkeypatch.setenv("PROMO_REGISTRY_PASSWORD", registry.password)

    # A refused git token: the message shows the URL, redacted.
    wrong = write_config(sandbox, over_http(sandbox, git_server, WRONG_GIT_TOKEN, registry))
    with pytest.raises(AuthError) as refused:
        publish_dev(config_path=wrong)
    assert git_server.refusals > 0
    assert git_server.url(f"{sandbox.app}.git", None) in str(refused.value), "the redacted URL names the repository"
    scan.error("git auth failure", refused.value)
    code, out, err = run_promo(monkeypatch, capsys, "status", "--config", wrong)
    assert code == 5, err
    scan.text("cli output (git)", out + err)

    scan.prefect()
    scan.files(sandbox.directory, skip=(Path(config), Path(wrong)))  # the promo.yaml written here holds the URL
    assert_no_userinfo_in_caches(sandbox.directory / "cache")
    scan.assert_clean(GIT_TOKEN, WRONG_GIT_TOKEN, registry.password, WRONG_REGISTRY_PASSWORD)


def test_github_tokens_never_leak_when_the_api_answers_401_or_500(
    sandbox, monkeypatch, caplog, httpserver, fast_retries
):
    scan = Scan(caplog)
    from contextlib import ExitStack

    with ExitStack() as stack:
        ctx = Ctx(sandbox, monkeypatch, httpserver, stack)
        released_and_bumped(ctx)
        for status, error in ((401, AuthError), (500, TransientError)):
            httpserver.clear()
            config = github_forge(status, {"message": f"answer {status}"})(ctx)
            monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
            with pytest.raises(error) as failed:
                hotfix(tag="v0.1.0", config_path=config)
            scan.error(f"GitHub {status}", failed.value)
            seen = [request.headers.get("Authorization") for request, _ in httpserver.log]
            assert f"Bearer {GITHUB_TOKEN}" in seen, "the token was not sent: the test proves nothing"
            subprocess.run(
                ["git", "-C", str(sandbox.app_remote), "branch", "-D", "hotfix-0-1-1"], capture_output=True, check=False
            )
    scan.prefect()
    scan.files(sandbox.directory)
    scan.assert_clean(GITHUB_TOKEN)


def stubbed_ecr(password: str) -> EcrCredentials:
    client = boto3.client("ecr", region_name="eu-west-1", aws_access_key_id="AKIATEST", aws_secret_access_key="x")
    stubber = Stubber(client)
    token = base64.b64encode(f"AWS:{password}".encode()).decode()
    expires = datetime.now(UTC) + timedelta(hours=12)
    stubber.add_response(
        "get_authorization_token", {"authorizationData": [{"authorizationToken": token, "expiresAt": expires}]}
    )
    stubber.activate()
    return EcrCredentials("eu-west-1", client=client)


def test_ecr_tokens_never_leak_from_the_registry_client_or_the_image_builder(
    basic_auth_registry_server, tmp_path, caplog
):
    """The registry only knows promo-ci, so the ECR password (user AWS) is refused: by promo's client, and by buildah
    reading it from the config.json promo writes."""
    scan = Scan(caplog)
    host = basic_auth_registry_server.host
    credentials = stubbed_ecr(ECR_PASSWORD)
    with Registry(host, credentials) as registry, pytest.raises(AuthError) as refused:
        registry.push_blob("hello", b"layer")  # the stub answers GetAuthorizationToken only
        scan.text("registry repr", repr(registry))
    scan.error("registry client", refused.value)
    scan.text("credentials repr", repr(credentials))
    builder = Buildah(tmp_path / "buildah")
    with pytest.raises(PromoError) as failed:
        builder.build_and_push(
            context=SAMPLE, containerfile=SAMPLE / "Containerfile", repository=f"{host}/hello", tag="ecr",
            created=1_700_000_000, insecure=True, login=stubbed_ecr(ECR_PASSWORD),
        )  # fmt: skip
    assert isinstance(failed.value, AuthError), failed.value
    scan.error("buildah", failed.value)
    scan.files(tmp_path)
    scan.assert_clean(ECR_PASSWORD)


def test_a_token_url_to_an_unreachable_host_is_redacted_and_never_stored(tmp_path, caplog):
    scan = Scan(caplog)
    url = f"https://x-access-token:{UNREACHABLE_TOKEN}@127.0.0.1:{_free_port()}/acme/gitops.git"
    mirror = Mirror.open(url, tmp_path / "cache")
    assert mirror.display_url == redact_url(url) == url.replace(f"x-access-token:{UNREACHABLE_TOKEN}@", "")
    with pytest.raises(TransientError) as unreachable:
        mirror.fetch()
    assert mirror.display_url in str(unreachable.value)
    scan.error("fetch", unreachable.value)
    with pytest.raises(TransientError) as again:
        GitOpsRepo(url, "main", tmp_path / "cache").environment_version("hello", "dev", ["preprod"])
    scan.error("gitops read", again.value)
    scan.text("cache directory names", " ".join(str(path) for path in (tmp_path / "cache").rglob("*")))
    scan.files(tmp_path)
    assert_no_userinfo_in_caches(tmp_path / "cache")
    scan.assert_clean(UNREACHABLE_TOKEN)
