"""verify_deployment against a fake Argo CD and a fake app (pytest-httpserver) on a fake clock: nothing really waits.

Argo CD answers recorded Applications (tests/fixtures/argocd) that change with the fake time, as a real rollout does;
the app answers the chart version it serves. The task is checked against a real bare GitOps remote.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from promo.clients import argocd_client, pushed_chart_digest
from promo.config import ArgoCDCheck, PromoConfig
from promo.errors import AuthError, ConfigError, NotFound, TransientError
from promo.local.registry import RegistryServer
from promo.registry.charts import package_chart
from promo.registry.helm import push_chart
from promo.registry.oci import Registry
from promo.verify.argocd import ArgoCD
from promo.gitops.mirror import Mirror
from promo.gitops.signing import SigningKey
from promo.gitops.verdicts import KIND, Verdict, read_verdicts, record_verdict
from promo.signing_key import SIGNING_KEY_VARIABLE
from promo.verify.engine import verify_deployment
from promo.verify.http import served_version
from promo.tasks.verify import verify_environment
from tests.fixtures.argocd import OLDER, WANTED, WANTED_DIGEST, recorded
from tests.fixtures.argocd import threaded_httpserver  # noqa: F401  (a fixture, shared)
from tests.fixtures.gitrepos import RECORD_SIGNER, GitRemote

TOKEN = "argocd-api-token-s3cr3t"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeTime:
    """A monotonic clock that moves only when the engine sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture(autouse=True)
def argocd_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGOCD_TOKEN", TOKEN)


def config_for(
    httpserver: HTTPServer,
    tmp_path: Path,
    *,
    clusters: Sequence[str] = ("preprod",),
    argocd: bool = True,
    http: bool = False,
    gitops_url: str = "file:///nowhere/gitops.git",
    chart_repository: str = "127.0.0.1:5000/charts",
    **verify: Any,
) -> PromoConfig:
    settings: dict[str, Any] = {"timeout": "10m", "healthy_for": 0, "poll_interval_seconds": 2, **verify}
    if argocd:
        settings["argocd"] = {"url": httpserver.url_for("").rstrip("/")}
    if http:
        settings["http"] = {"url": httpserver.url_for("/{cluster}/{app}/version")}
    return PromoConfig.model_validate(
        {
            "app": "hello",
            "app_repo": {"url": "file:///nowhere/app.git"},
            "gitops": {"url": gitops_url},
            "chart": {"path": "charts/hello", "repository": chart_repository},
            "image": {"repository": "127.0.0.1:5000/hello"},
            "environments": [
                {"name": "dev", "clusters": ["preprod"]},
                {"name": "test", "clusters": list(clusters), "verify": settings},
            ],
            "cache_dir": str(tmp_path / "cache"),
        }
    )


def argocd_timeline(httpserver: HTTPServer, time: FakeTime, steps: Sequence[tuple[float, Any]], cluster="preprod"):
    """From each step's time on, Argo CD answers that recorded Application, or that HTTP status ("503"), or that
    Application document (a dict)."""

    def answer(request: Request) -> Response:
        current = [step for since, step in steps if since <= time.now][-1]
        if isinstance(current, dict):
            return Response(json.dumps(current), content_type="application/json")
        if current.isdigit():
            return Response(json.dumps({"error": "fault", "message": "fault"}), status=int(current))
        return Response(json.dumps(recorded(current)), content_type="application/json")

    httpserver.expect_request(f"/api/v1/applications/hello-test-{cluster}").respond_with_handler(answer)


def app_timeline(httpserver: HTTPServer, time: FakeTime, steps: Sequence[tuple[float, int, str]], cluster="preprod"):
    """From each step's time on, the app's version URL answers that status and body."""

    def answer(request: Request) -> Response:
        status, body = [(status, body) for since, status, body in steps if since <= time.now][-1]
        return Response(body, status=status)

    httpserver.expect_request(f"/{cluster}/hello/version").respond_with_handler(answer)


def verify(config: PromoConfig, time: FakeTime, **given: Any) -> Verdict:
    """The engine with the clients promo.yaml names, as promo.tasks.verify hands them in, unless a test gives its own."""
    settings = config.environment("test").verify
    made = argocd_client(settings.argocd) if settings.argocd is not None and "argocd" not in given else None
    given.setdefault("argocd", made)
    given.setdefault("pushed_digest", lambda: pushed_chart_digest(config, WANTED))
    try:
        return verify_deployment(
            config, "test", WANTED, COMMIT, flow_run="promote-test/brave-otter", clock=time.clock, sleep=time.sleep,
            **given,
        )  # fmt: skip
    finally:
        if made is not None:
            made.close()


def argocd_requests(httpserver: HTTPServer, cluster: str = "preprod") -> list[Request]:
    return [request for request, _ in httpserver.log if request.path == f"/api/v1/applications/hello-test-{cluster}"]


# -- the engine ----------------------------------------------------------------------------------------------------


def test_a_deployment_that_comes_up_on_every_cluster_is_verified(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [
        (0, "outofsync-older-revision"), (2, "operation-running"), (4, "progressing"), (8, "synced-healthy"),
    ])
    argocd_timeline(httpserver, fake_time, [(0, "synced-healthy")], cluster="eu")
    app_timeline(httpserver, fake_time, [(0, 200, f"{OLDER}\n"), (10, 200, f"{WANTED}\n")])
    app_timeline(httpserver, fake_time, [(0, 200, json.dumps({"version": WANTED, "image": "x"}))], cluster="eu")
    config = config_for(httpserver, tmp_path, clusters=("preprod", "eu"), http=True, healthy_for=5)

    verdict = verify(config, fake_time)

    assert verdict.verified, verdict.reason
    assert 15 <= fake_time.now <= 17  # the new version served from 10 on, then held for 5 s
    assert (verdict.app, verdict.env, verdict.version, verdict.gitops_commit) == ("hello", "test", WANTED, COMMIT)
    assert verdict.checks == ("argocd", "http") and verdict.flow_run == "promote-test/brave-otter"
    assert f"cluster preprod: Synced at {WANTED}, Healthy; " in verdict.reason
    assert f"/preprod/hello/version serves {WANTED}" in verdict.reason and verdict.reason.endswith("(held 5 s)")


def test_argocd_is_asked_to_refresh_once_right_after_the_commit(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "outofsync-older-revision"), (6, "synced-healthy")])
    verify(config_for(httpserver, tmp_path), fake_time)
    refreshes = [request.args.get("refresh") for request in argocd_requests(httpserver)]
    assert refreshes[0] == "normal" and refreshes[1:] == [None] * (len(refreshes) - 1) and len(refreshes) > 2
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in argocd_requests(httpserver))


def test_degraded_fails_at_once(httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "progressing"), (4, "degraded")])
    verdict = verify(config_for(httpserver, tmp_path), fake_time)
    assert not verdict.verified
    assert fake_time.now == 4  # the first look at Degraded ends it, not the 10-minute timeout
    assert verdict.reason == (
        f'cluster preprod: Synced at {WANTED}, health Degraded (Deployment hello: Deployment "hello" exceeded its '
        "progress deadline)"
    )


def test_a_deployment_that_never_comes_up_times_out_with_one_clear_line(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "progressing")])
    verdict = verify(config_for(httpserver, tmp_path), fake_time)
    assert not verdict.verified
    assert verdict.reason == (
        f"not healthy within 10 min: cluster preprod: Synced at {WANTED}, health Progressing (Deployment hello: "
        "Waiting for rollout to finish: 1 of 2 updated replicas are available...)"
    )
    assert fake_time.now == 600 and max(fake_time.sleeps) <= 2


def test_health_read_before_the_sync_finished_is_never_taken_for_healthy(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "health-before-sync")])
    verdict = verify(config_for(httpserver, tmp_path, timeout="1m"), fake_time)
    assert not verdict.verified
    assert verdict.reason.startswith(f"not healthy within 1 min: cluster preprod: Synced at {WANTED}, health Healthy")
    assert "before the sync finished at 2026-11-30T12:00:41Z: not trusted yet" in verdict.reason


def test_a_multi_source_application_is_verified_at_its_chart_source(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "multisource-synced-healthy")])
    verdict = verify(config_for(httpserver, tmp_path), fake_time)
    assert verdict.verified and fake_time.now == 0


def test_healthy_for_starts_again_after_a_drop(httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "synced-healthy"), (4, "progressing"), (6, "synced-healthy")])
    verdict = verify(config_for(httpserver, tmp_path, healthy_for=5), fake_time)
    assert verdict.verified
    assert fake_time.now >= 11  # healthy again from 6, for 5 s: the healthy look at 0 no longer counts


def test_too_short_a_healthy_spell_at_the_timeout_says_so(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "progressing"), (56, "synced-healthy")])
    verdict = verify(config_for(httpserver, tmp_path, timeout="1m", healthy_for=30), fake_time)
    assert not verdict.verified
    assert verdict.reason == (
        f"not healthy within 1 min: cluster preprod: Synced at {WANTED}, Healthy, but only for 4 s of 30 s"
    )


def test_argocd_faults_inside_the_wait_are_looked_past(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "503"), (6, "synced-healthy")])
    verdict = verify(config_for(httpserver, tmp_path), fake_time)
    assert verdict.verified and fake_time.now == 6
    # the refresh is asked for until Argo CD has answered it once
    assert [request.args.get("refresh") for request in argocd_requests(httpserver)] == ["normal"] * 4


def test_argocd_unreachable_until_the_timeout_reaches_no_verdict(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "503")])
    with pytest.raises(TransientError, match=r"Argo CD unreachable within 1 min .*no verdict was recorded"):
        verify(config_for(httpserver, tmp_path, timeout="1m"), fake_time)


def test_a_refused_token_raises_instead_of_failing_the_deployment(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "401")])
    with pytest.raises(AuthError) as caught:
        verify(config_for(httpserver, tmp_path), fake_time)
    assert TOKEN not in str(caught.value) and fake_time.now == 0


def test_the_app_is_asked_only_once_argocd_is_content(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "progressing"), (4, "synced-healthy")])
    app_timeline(httpserver, fake_time, [(0, 404, "no /version in the old release"), (4, 200, WANTED)])
    verdict = verify(config_for(httpserver, tmp_path, http=True), fake_time)
    assert verdict.verified and fake_time.now == 4


def test_a_4xx_from_the_app_fails_at_once(httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "synced-healthy")])
    app_timeline(httpserver, fake_time, [(0, 404, "not found")])
    verdict = verify(config_for(httpserver, tmp_path, http=True), fake_time)
    assert not verdict.verified and fake_time.now == 0
    assert verdict.reason == f"cluster preprod: {httpserver.url_for('/preprod/hello/version')} answered 404"


def test_the_app_alone_old_pods_and_5xx_are_waited_for(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    app_timeline(httpserver, fake_time, [(0, 503, "no healthy upstream"), (4, 200, OLDER), (8, 200, WANTED)])
    verdict = verify(config_for(httpserver, tmp_path, argocd=False, http=True), fake_time)
    assert verdict.verified and fake_time.now == 8 and verdict.checks == ("http",)


def test_an_app_serving_another_version_times_out_naming_it(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    app_timeline(httpserver, fake_time, [(0, 200, json.dumps({"chartVersion": OLDER}))])
    verdict = verify(config_for(httpserver, tmp_path, argocd=False, http=True, timeout=30), fake_time)
    url = httpserver.url_for("/preprod/hello/version")
    assert verdict.reason == f"not healthy within 30 s: cluster preprod: {url} serves {OLDER}, not yet {WANTED}"


@pytest.mark.parametrize(
    ("body", "version"),
    [
        (f"{WANTED}\n", WANTED),  # plain text, as `echo $CHART_VERSION` serves it
        (json.dumps({"version": WANTED, "image": "hello@sha256:..."}), WANTED),
        (json.dumps({"chartVersion": WANTED}), WANTED),
        (json.dumps(WANTED), WANTED),
        ("<!doctype html><html><h1>Hello from hello</h1></html>", None),  # the sample app's page: no version
        (json.dumps({"status": "ok"}), None),
        ("", None),
    ],
)
def test_the_served_version_is_read_from_text_or_json(body: str, version: str | None) -> None:
    assert served_version(body) == version


@pytest.mark.parametrize(
    ("outcome", "words"),
    [
        ("sync-failed", f"sync to {WANTED} Failed after 2 retries: one or more objects failed to apply, reason: "),
        ("sync-error", f"sync to {WANTED} Error: ComparisonError: Failed to load target state: failed to generate"),
    ],
)
def test_a_failed_or_errored_sync_of_the_written_revision_ends_well_before_the_timeout(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime, outcome: str, words: str
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "outofsync-older-revision"), (4, "sync-retrying"), (10, outcome)])
    verdict = verify(config_for(httpserver, tmp_path), fake_time)
    assert not verdict.verified
    assert fake_time.now == 10, "the first look at the failed sync ends it, not the 10-minute timeout"
    assert verdict.reason.startswith(f"cluster preprod: {words}") and "\n" not in verdict.reason


def test_a_sync_argo_cd_still_retries_is_waited_for_and_named_at_the_timeout(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "sync-retrying")])
    verdict = verify(config_for(httpserver, tmp_path, timeout="1m"), fake_time)
    assert not verdict.verified and fake_time.now == 60
    assert "a sync is in flight (Running: one or more objects failed to apply" in verdict.reason


def test_an_application_that_does_not_exist_yet_is_waited_for(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "404"), (8, "synced-healthy")])
    verdict = verify(config_for(httpserver, tmp_path), fake_time)
    assert verdict.verified and fake_time.now == 8


def test_an_application_that_does_not_exist_yet_is_named_so_at_the_timeout(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "404")])
    argocd_timeline(httpserver, fake_time, [(0, "progressing")], cluster="eu")
    verdict = verify(config_for(httpserver, tmp_path, clusters=("preprod", "eu"), timeout=6), fake_time)
    assert not verdict.verified and fake_time.now == 6
    assert verdict.reason.startswith(
        "not healthy within 6 s: cluster preprod: Application hello-test-preprod does not exist yet: waiting for it "
        "to be created (by an app-of-apps or ApplicationSet); cluster eu: Synced at"
    )


def test_an_application_that_never_appears_reaches_no_verdict(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "404")])
    with pytest.raises(NotFound) as caught:
        verify(config_for(httpserver, tmp_path, timeout="1m"), fake_time)
    assert fake_time.now == 60
    assert "has no Application hello-test-preprod, and none appeared within 1 min" in caught.value.cause
    assert "check verify.argocd.application" in caught.value.fix and "no verdict was recorded" in caught.value.fix


def test_a_native_oci_source_is_verified_against_the_digest_handed_in(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    argocd_timeline(httpserver, fake_time, [(0, "oci-synced-healthy")])
    verdict = verify(config_for(httpserver, tmp_path), fake_time, chart_digest=WANTED_DIGEST)
    assert verdict.verified and verdict.reason.startswith(f"cluster preprod: Synced at {WANTED} (sha256:1d89afe3")


def test_a_native_oci_source_without_a_digest_handed_in_reads_the_pushed_charts_digest(
    httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime, registry_server: RegistryServer
) -> None:
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.0.0\n")
    with Registry(registry_server.host) as registry:
        pushed = push_chart(registry, "oci-verify/hello", package_chart(chart, version=WANTED, app_version="abc1234"))
    synced = recorded("oci-synced-healthy")
    for record in (synced["status"]["sync"], synced["status"]["operationState"]["syncResult"]):
        record["revision"] = pushed.digest  # what Argo CD resolved the tag to
    other = json.loads(json.dumps(synced).replace(pushed.digest, WANTED_DIGEST))
    config = config_for(httpserver, tmp_path, chart_repository=f"{registry_server.host}/oci-verify")
    argocd_timeline(httpserver, fake_time, [(0, other), (4, synced)])

    verdict = verify(config, fake_time)

    assert verdict.verified and fake_time.now == 4, verdict.reason
    assert f"Synced at {WANTED} ({pushed.digest[:19]}...), Healthy" in verdict.reason


def test_a_refresh_that_times_out_does_not_hold_up_the_next_looks(
    threaded_httpserver: HTTPServer, tmp_path: Path, fake_time: FakeTime
) -> None:
    compared = threading.Event()  # Argo CD's refresh answers only once this is set
    timeline = [(0, "outofsync-older-revision"), (4, "progressing"), (8, "synced-healthy")]
    steps = dict(timeline)

    def answer(request: Request) -> Response:
        if request.args.get("refresh"):
            compared.wait(60)
        current = [step for since, step in steps.items() if since <= fake_time.now][-1]
        return Response(json.dumps(recorded(current)), content_type="application/json")

    threaded_httpserver.expect_request("/api/v1/applications/hello-test-preprod").respond_with_handler(answer)
    config = config_for(threaded_httpserver, tmp_path)
    check = ArgoCDCheck(url=threaded_httpserver.url_for("").rstrip("/"), token="none")
    argocd = ArgoCD(check, None, refresh_timeout=0.5)
    started = time.monotonic()
    try:
        verdict = verify(config, fake_time, argocd=argocd)
        took = time.monotonic() - started
    finally:
        compared.set()
    assert verdict.verified and fake_time.now == 8
    assert took < 30, f"one refresh timed out after 0.5 s; the plain looks after it were not held up ({took:.1f} s)"
    deadline = time.monotonic() + 30
    while len(threaded_httpserver.log) < 6 and time.monotonic() < deadline:  # the refresh is logged once answered
        time.sleep(0.01)
    refreshes = [request.args.get("refresh") for request, _ in threaded_httpserver.log]
    assert (refreshes.count("normal"), refreshes.count(None)) == (1, 5), "one refresh, then a plain look every 2 s"


# -- the task ------------------------------------------------------------------------------------------------------


@pytest.fixture
def signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's record signing key, from its environment (the key the GitOps remote of the tests lists)."""
    monkeypatch.setenv(SIGNING_KEY_VARIABLE, RECORD_SIGNER.to_openssh())


def a_verdict(commit: str) -> Verdict:
    return Verdict(
        app="hello", env="test", version=WANTED, gitops_commit=commit, verified=False,
        reason="cluster preprod: Synced at 0.2.0-rc.abc1234, health Degraded",
        checked_at=datetime.now(timezone.utc).replace(microsecond=0), checks=("argocd",),
        flow_run="promote-test/first-run",
    )


def test_the_task_returns_the_verdict_that_stands_without_looking_again(
    httpserver: HTTPServer, tmp_path: Path, gitops_remote: GitRemote, signing_key: None
) -> None:
    commit = gitops_remote.head()
    first = record_verdict(Mirror.open(gitops_remote.url, tmp_path / "first-run"), a_verdict(commit), RECORD_SIGNER)
    argocd_timeline(httpserver, FakeTime(), [(0, "synced-healthy")])  # healthy now: a second look would pass
    config = config_for(httpserver, tmp_path, gitops_url=gitops_remote.url)

    assert verify_environment.fn(config, "test", WANTED, commit) == first
    assert httpserver.log == []


def test_the_task_records_the_verdict_it_reaches(
    httpserver: HTTPServer, tmp_path: Path, gitops_remote: GitRemote, signing_key: None
) -> None:
    commit = gitops_remote.head()
    argocd_timeline(httpserver, FakeTime(), [(0, "synced-healthy")])
    config = config_for(httpserver, tmp_path, gitops_url=gitops_remote.url)

    verdict = verify_environment.fn(config, "test", WANTED, commit, flow_run="promote-test/brave-otter")

    assert verdict is not None and verdict.verified and verdict.flow_run == "promote-test/brave-otter"
    reader = Mirror.open(gitops_remote.url, tmp_path / "reader")
    reader.fetch()
    assert read_verdicts(reader, "hello", "test") == {commit: verdict}
    looks = len(httpserver.log)
    assert verify_environment.fn(config, "test", WANTED, commit) == verdict and len(httpserver.log) == looks


def test_a_verdict_someone_else_signed_does_not_spare_the_check(
    httpserver: HTTPServer, tmp_path: Path, gitops_remote: GitRemote, signing_key: None
) -> None:
    commit = gitops_remote.head()
    elsewhere = Mirror.open(gitops_remote.url, tmp_path / "forger")
    forged = replace(a_verdict(commit), verified=True, reason="trust me")
    elsewhere.create_record(KIND, f"hello/test/{commit}-0badc0ffee00", commit, forged.message())  # unsigned
    argocd_timeline(httpserver, FakeTime(), [(0, "degraded")])
    config = config_for(httpserver, tmp_path, gitops_url=gitops_remote.url, timeout="5s")

    verdict = verify_environment.fn(config, "test", WANTED, commit)

    assert verdict is not None and verdict.trusted and not verdict.verified and httpserver.log


def test_a_worker_without_the_signing_key_says_so_before_checking(
    httpserver: HTTPServer, tmp_path: Path, gitops_remote: GitRemote, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIGNING_KEY_VARIABLE, SigningKey.generate().to_openssh())  # not the key the remote lists
    config = config_for(httpserver, tmp_path, gitops_url=gitops_remote.url)
    with pytest.raises(ConfigError, match="is not listed in .promo/record-signers"):
        verify_environment.fn(config, "test", WANTED, gitops_remote.head())
    assert gitops_remote.git("for-each-ref", "refs/promo/") == ""


def test_a_write_into_an_environment_without_verify_is_recorded_as_deployed_once(
    tmp_path: Path, httpserver: HTTPServer, gitops_remote: GitRemote, signing_key: None
) -> None:
    config = config_for(httpserver, tmp_path, gitops_url=gitops_remote.url)
    commit = gitops_remote.head()
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert verify_environment.fn(config, "dev", WANTED, commit, flow_run="publish-dev/quick-fox") is None  # no verdict
    reader = Mirror.open(gitops_remote.url, tmp_path / "reader")
    reader.fetch()
    recorded = read_verdicts(reader, "hello", "dev")[commit]
    assert (recorded.outcome, recorded.trusted, recorded.version, recorded.flow_run) == (
        "deployed", True, WANTED, "publish-dev/quick-fox"
    )
    assert recorded.checked_at >= before and httpserver.log == []  # nothing is checked
    assert verify_environment.fn(config, "dev", WANTED, commit) is None  # a re-run keeps the first record
    assert len(gitops_remote.log_messages("refs/promo/log/verdicts/hello/dev")) == 1
