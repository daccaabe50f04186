"""Argo CD's view of a deployment: the assessment of recorded Applications, and the client against a fake Argo CD."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from promo.clients import argocd_client, argocd_token_source
from promo.config import ArgoCDCheck
from promo.errors import AuthError, ConfigError, NotFound, ToolError, TransientError
from promo.forges.github import PrefectSecretToken
from promo.verify.argocd import ArgoCD, assess, chart_revision, chart_source
from promo.verify.observation import State
from tests.fixtures.argocd import OLDER, OLDER_DIGEST, WANTED, WANTED_DIGEST, recorded
from tests.fixtures.argocd import threaded_httpserver  # noqa: F401  (a fixture, shared)

TOKEN = "argocd-api-token-s3cr3t"
PATH = "/api/v1/applications/hello-test-preprod"


# -- the assessment ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "state", "words"),
    [
        ("synced-healthy", State.HEALTHY, f"Synced at {WANTED}, Healthy"),
        ("multisource-synced-healthy", State.HEALTHY, f"Synced at {WANTED}, Healthy"),
        ("progressing", State.PENDING, "health Progressing (Deployment hello: Waiting for rollout to finish"),
        ("degraded", State.FAILED, 'health Degraded (Deployment hello: Deployment "hello" exceeded its progress'),
        ("outofsync-older-revision", State.PENDING, f"OutOfSync at {OLDER}, not yet at {WANTED}"),
        ("operation-running", State.PENDING, "a sync is in flight (Running: waiting for completion of hook"),
        ("health-before-sync", State.PENDING, "read at 2026-11-30T12:00:30Z, before the sync finished"),
        ("sync-failed", State.FAILED, f"sync to {WANTED} Failed after 2 retries: one or more objects failed to apply"),
        ("sync-error", State.FAILED, f"sync to {WANTED} Error: ComparisonError: Failed to load target state"),
        ("sync-retrying", State.PENDING, "a sync is in flight (Running: one or more objects failed to apply"),
        ("sync-requested", State.PENDING, f"Synced at {WANTED}, sync requested, not started"),
    ],
)
def test_each_recorded_application_is_assessed(name: str, state: State, words: str) -> None:
    seen = assess(recorded(name), WANTED)
    assert seen.state is state
    assert words in seen.reason and "\n" not in seen.reason


def test_health_read_before_the_sync_finished_is_not_trusted_even_when_healthy() -> None:
    application = recorded("health-before-sync")
    assert application["status"]["health"]["status"] == "Healthy"
    assert assess(application, WANTED).state is State.PENDING
    application["status"]["reconciledAt"] = application["status"]["operationState"]["finishedAt"]  # read it again
    assert assess(application, WANTED).state is State.HEALTHY


def test_a_running_operation_is_not_done_even_with_synced_and_healthy_resources() -> None:
    application = recorded("operation-running")
    del application["operation"]  # the hook finished ...
    application["status"]["operationState"]["phase"] = "Succeeded"  # ... and the sync with it
    application["status"]["operationState"]["finishedAt"] = "2026-11-30T12:00:49Z"
    assert assess(application, WANTED).state is State.HEALTHY


def test_synced_and_healthy_at_another_version_is_not_done() -> None:
    seen = assess(recorded("synced-healthy"), "0.3.0-rc.1234567")
    assert seen.state is State.PENDING
    assert seen.reason == f"Synced at {WANTED}, not yet at 0.3.0-rc.1234567"


def test_a_multi_source_application_is_read_at_its_chart_source() -> None:
    application = recorded("multisource-synced-healthy")
    git_revision, chart_version = application["status"]["sync"]["revisions"]
    assert application["spec"]["sources"][1]["chart"] == "hello" and chart_version == WANTED
    assert chart_revision(application) == WANTED
    application["status"]["sync"]["revisions"] = [git_revision, OLDER]
    assert assess(application, WANTED).reason == f"Synced at {OLDER}, not yet at {WANTED}"


def test_an_application_without_one_chart_source_is_a_config_error() -> None:
    application = recorded("multisource-synced-healthy")
    application["spec"]["sources"].pop(1)
    with pytest.raises(ConfigError, match="hello-test-preprod has no chart sources.*verify.argocd.application"):
        assess(application, WANTED)


def test_a_failed_sync_is_taken_only_for_the_written_revision() -> None:
    application = recorded("sync-failed")
    operation = application["status"]["operationState"]
    assert operation["phase"] == "Failed" and "operation" not in application
    operation["syncResult"]["revision"] = operation["operation"]["sync"]["revision"] = OLDER  # an older sync failed
    application["status"]["sync"]["revision"] = WANTED
    seen = assess(application, WANTED)
    assert seen.state is State.PENDING and seen.reason == f"OutOfSync at {WANTED}"


def test_a_sync_requested_after_a_failed_one_is_waited_for() -> None:
    application = recorded("sync-failed")
    application["operation"] = {"sync": {"revision": WANTED}, "initiatedBy": {"username": "admin"}}  # synced again
    seen = assess(application, WANTED)
    assert seen.state is State.PENDING
    assert seen.reason == f"OutOfSync at {WANTED}, sync requested, not started"


def test_an_error_without_a_sync_result_is_read_at_the_operations_revision() -> None:
    application = recorded("sync-error")
    assert "syncResult" not in application["status"]["operationState"]
    assert assess(application, WANTED).state is State.FAILED
    application["status"]["operationState"]["operation"]["sync"]["revision"] = OLDER
    assert assess(application, WANTED).state is State.PENDING


def test_health_without_reconciled_at_says_so() -> None:
    application = recorded("synced-healthy")
    del application["status"]["reconciledAt"]
    seen = assess(application, WANTED)
    assert seen.state is State.PENDING
    assert seen.reason == f"Synced at {WANTED}, health Healthy not trusted yet: no reconciledAt yet"


def test_a_native_oci_source_is_verified_against_the_pushed_charts_digest() -> None:
    application = recorded("oci-synced-healthy")
    source = application["spec"]["source"]
    assert source["repoURL"].startswith("oci://") and "chart" not in source
    assert chart_source(application).native_oci and chart_revision(application) == WANTED_DIGEST

    seen = assess(application, WANTED, WANTED_DIGEST)
    assert seen.state is State.HEALTHY
    assert seen.reason == f"Synced at {WANTED} ({WANTED_DIGEST[:19]}...), Healthy"

    other = assess(application, "0.3.0", OLDER_DIGEST)  # what promo pushed is not what Argo CD synced
    assert other.state is State.PENDING
    assert other.reason == f"Synced at {WANTED_DIGEST[:19]}..., not yet at 0.3.0 ({OLDER_DIGEST[:19]}...)"
    unknown = assess(application, WANTED)
    assert unknown.state is State.PENDING and "digest of chart 0.2.0-rc.abc1234 is not known" in unknown.reason


def test_a_failed_sync_of_a_native_oci_source_is_read_at_its_digest() -> None:
    application = recorded("sync-failed")
    application["spec"]["source"] = {"repoURL": "oci://registry.example.com/charts/hello", "path": "."}
    operation = application["status"]["operationState"]
    operation["syncResult"]["revision"] = operation["operation"]["sync"]["revision"] = WANTED_DIGEST
    assert assess(application, WANTED, WANTED_DIGEST).state is State.FAILED
    assert assess(application, WANTED, OLDER_DIGEST).state is State.PENDING


def test_a_multi_source_application_may_have_a_native_oci_chart_source() -> None:
    application = recorded("multisource-synced-healthy")
    git_revision, _ = application["status"]["sync"]["revisions"]
    application["spec"]["sources"][1] = {"repoURL": "oci://registry.example.com/charts/hello", "targetRevision": WANTED}
    application["status"]["sync"]["revisions"] = [git_revision, WANTED_DIGEST]
    assert chart_source(application).index == 1 and chart_revision(application) == WANTED_DIGEST
    application["spec"]["sources"][0] = {"repoURL": "registry.example.com/charts", "chart": "hello"}
    with pytest.raises(ConfigError, match="has 2 chart sources"):
        chart_source(application)


# -- the client ----------------------------------------------------------------------------------------------------


def settings(httpserver: HTTPServer, **changes: object) -> ArgoCDCheck:
    return ArgoCDCheck(url=httpserver.url_for("/").rstrip("/"), **changes)


@pytest.fixture
def argocd(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> ArgoCD:
    monkeypatch.setenv("ARGOCD_TOKEN", TOKEN)
    return argocd_client(settings(httpserver))


def test_the_application_is_read_with_the_bearer_token(httpserver: HTTPServer, argocd: ArgoCD) -> None:
    httpserver.expect_request(
        PATH, method="GET", headers={"Authorization": f"Bearer {TOKEN}"}, query_string=""
    ).respond_with_json(recorded("synced-healthy"))
    assert argocd.application("hello-test-preprod") == recorded("synced-healthy")


def test_refresh_normal_is_asked_for_when_wanted(httpserver: HTTPServer, argocd: ArgoCD) -> None:
    httpserver.expect_request(PATH, query_string={"refresh": "normal"}).respond_with_json(recorded("progressing"))
    assert argocd.application("hello-test-preprod", refresh=True)["status"]["health"]["status"] == "Progressing"


def test_a_refresh_that_times_out_is_left_to_argo_cd_and_the_application_read_as_it_is(
    threaded_httpserver: HTTPServer,
) -> None:
    comparing = threading.Event()  # set: Argo CD has finished comparing and answers the refresh

    def answer(request) -> Response:
        if request.args.get("refresh"):
            comparing.wait(60)
        return Response(json.dumps(recorded("progressing")), content_type="application/json")

    threaded_httpserver.expect_request(PATH).respond_with_handler(answer)
    client = ArgoCD(settings(threaded_httpserver, token="none"), None, refresh_timeout=0.5)
    started = time.monotonic()
    try:
        assert client.application("hello-test-preprod", refresh=True) == recorded("progressing")
        assert time.monotonic() - started < 30, "the answer came from the plain read, not the refresh"
    finally:
        comparing.set()
    deadline = time.monotonic() + 30
    while len(threaded_httpserver.log) < 2 and time.monotonic() < deadline:  # the refresh is logged once answered
        time.sleep(0.01)
    assert [request.args.get("refresh") for request, _ in threaded_httpserver.log] == [None, "normal"]


def test_app_namespace_is_passed_on(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARGOCD_TOKEN", TOKEN)
    client = argocd_client(settings(httpserver, app_namespace="team-hello"))
    httpserver.expect_request(PATH, query_string={"appNamespace": "team-hello"}).respond_with_json({"status": {}})
    assert client.application("hello-test-preprod") == {"status": {}}


def test_the_application_name_comes_from_the_template(httpserver: HTTPServer) -> None:
    client = ArgoCD(settings(httpserver, application="{cluster}-{app}-{env}"), None)
    assert client.application_name("hello", "test", "preprod") == "preprod-hello-test"
    with pytest.raises(ConfigError, match=r"\{app\}, \{env\} and \{cluster\}"):
        ArgoCD(settings(httpserver, application="{app}-{region}"), None).application_name("hello", "test", "x")


def test_401_is_an_auth_error_that_never_shows_the_token(httpserver: HTTPServer, argocd: ArgoCD) -> None:
    httpserver.expect_request(PATH).respond_with_json(
        {"error": "invalid session: token is expired", "code": 16, "message": "invalid session: token is expired"},
        status=401,
    )
    with pytest.raises(AuthError) as caught:
        argocd.application("hello-test-preprod")
    message = str(caught.value)
    assert "answered 401 for Application hello-test-preprod: invalid session: token is expired" in message
    assert "set a valid Argo CD API token in $ARGOCD_TOKEN" in message
    assert TOKEN not in message and TOKEN not in repr(argocd) and TOKEN not in repr(caught.value)


def test_403_names_both_possible_causes(httpserver: HTTPServer, argocd: ArgoCD) -> None:
    httpserver.expect_request(PATH).respond_with_json({"error": "permission denied", "code": 7}, status=403)
    refused = r"no such Application, or .* may not read it\); check verify.argocd.application"
    with pytest.raises(AuthError, match=refused):
        argocd.application("hello-test-preprod")


def test_404_names_the_application_and_the_template(httpserver: HTTPServer, argocd: ArgoCD) -> None:
    httpserver.expect_request(PATH).respond_with_json({"error": "not found", "code": 5}, status=404)
    with pytest.raises(NotFound) as caught:
        argocd.application("hello-test-preprod")
    assert "has no Application 'hello-test-preprod'" in str(caught.value)
    assert "verify.argocd.application ('{app}-{env}-{cluster}')" in str(caught.value)


def test_5xx_and_refused_connections_are_transient(httpserver: HTTPServer, argocd: ArgoCD) -> None:
    httpserver.expect_request(PATH).respond_with_data("upstream connect error", status=503)
    with pytest.raises(TransientError, match="answered 503"):
        argocd.application("hello-test-preprod")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    nowhere = ArgoCD(ArgoCDCheck(url=f"http://127.0.0.1:{port}", token="none"), None)
    with pytest.raises(TransientError, match="ConnectError"):
        nowhere.application("hello-test-preprod")


def test_an_answer_that_is_no_application_names_the_url_setting(httpserver: HTTPServer, argocd: ArgoCD) -> None:
    httpserver.expect_request(PATH).respond_with_data("<!doctype html><title>Argo CD</title>", content_type="text/html")
    with pytest.raises(ToolError, match="check verify.argocd.url"):
        argocd.application("hello-test-preprod")


def test_the_token_is_read_once_per_client(httpserver: HTTPServer) -> None:
    reads: list[str] = []

    class CountingToken:
        def token(self) -> str:
            reads.append("read")
            return TOKEN

    httpserver.expect_request(PATH, headers={"Authorization": f"Bearer {TOKEN}"}).respond_with_json({})
    client = ArgoCD(settings(httpserver), CountingToken())
    for _ in range(3):
        client.application("hello-test-preprod")
    assert reads == ["read"]


def test_a_missing_token_variable_says_which_and_what_for(httpserver: HTTPServer, monkeypatch) -> None:
    monkeypatch.delenv("ARGOCD_TOKEN", raising=False)
    httpserver.expect_request(PATH).respond_with_json({})
    with pytest.raises(AuthError, match=r"\$ARGOCD_TOKEN is not set; export an Argo CD API token"):
        argocd_client(settings(httpserver)).application("hello-test-preprod")
    assert len(httpserver.log) == 0


def test_no_token_sends_no_authorization_header(httpserver: HTTPServer) -> None:
    def answer(request) -> Response:
        return Response(json.dumps({"authorization": request.headers.get("Authorization")}))

    httpserver.expect_request(PATH).respond_with_handler(answer)
    assert argocd_client(settings(httpserver, token="none")).application("hello-test-preprod") == {
        "authorization": None
    }



def test_a_secret_token_is_read_from_the_named_prefect_secret_block() -> None:
    check = ArgoCDCheck(url="https://argocd.example.com", token="secret", secret_block="argocd-prod-token")
    assert argocd_token_source(check) == PrefectSecretToken("argocd-prod-token")
