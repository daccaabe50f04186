"""The OCI client and Helm-over-OCI against a real ``docker-registry``, plus faults only a fake can stage.

pytest-httpserver stands in where the real server cannot misbehave on demand: a bearer token service,
corrupted blobs, 5xx with Retry-After, and ``Link`` pagination (distribution 2.8 ignores ``?n=``).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.stub import Stubber
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from promo.registry.charts import ChartPackage, package_chart, read_chart
from promo.errors import AuthError, ConfigError, InputError, NotFound, PromoError, TransientError
from promo.registry.helm import CONFIG_MEDIA_TYPE, chart_repository, pull_chart, push_chart
from promo.errors import RegistryUnavailable
from promo.registry.credentials import BasicCredentials, EcrCredentials, credentials_for
from promo.registry.names import digest_of
from promo.registry.oci import OCI_MANIFEST, Registry
from promo.local.registry import RegistryServer, _free_port
from tests.core.test_charts import write_chart
from tests.fixtures.registry import AuthRegistryServer

ECR_HOST = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


class CountingTransport(httpx.HTTPTransport):
    """A real transport that remembers what it sent, to see pagination and token caching happen."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def image_manifest(registry: Registry, repository: str, payload: bytes = b"{}") -> bytes:
    config = registry.push_blob(repository, payload)
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": len(payload)},
            "layers": [],
        }
    ).encode()


def chart_package(tmp_path: Path, version: str = "1.0.0") -> ChartPackage:
    return package_chart(write_chart(tmp_path), version=version, app_version="sha-abc")


def test_blob_push_pull_roundtrip(registry: Registry) -> None:
    data = b"layer bytes \x00\x01"
    digest = registry.push_blob("tests/blobs", data)

    assert digest == digest_of(data)
    assert registry.blob_exists("tests/blobs", digest)
    assert registry.pull_blob("tests/blobs", digest) == data
    assert registry.push_blob("tests/blobs", data) == digest  # already there: no second upload
    assert not registry.blob_exists("tests/blobs", digest_of(b"never pushed"))
    with pytest.raises(NotFound):
        registry.pull_blob("tests/blobs", digest_of(b"never pushed"))


def test_pulled_blob_must_match_its_digest(httpserver: HTTPServer) -> None:
    wanted = digest_of(b"the real bytes")
    httpserver.expect_request(f"/v2/tests/blobs/blobs/{wanted}").respond_with_data(b"corrupted bytes")

    with Registry(f"127.0.0.1:{httpserver.port}") as registry, pytest.raises(TransientError, match="corrupted"):
        registry.pull_blob("tests/blobs", wanted)


def test_manifest_push_head_pull_and_tags(registry: Registry) -> None:
    manifest = image_manifest(registry, "tests/manifests")
    digest = registry.push_manifest("tests/manifests", "v1", manifest, OCI_MANIFEST)
    registry.push_manifest("tests/manifests", "v2", manifest, OCI_MANIFEST)

    assert registry.manifest_digest("tests/manifests", "v1") == digest == digest_of(manifest)
    assert registry.manifest_digest("tests/manifests", "v3") is None
    pulled = registry.pull_manifest("tests/manifests", digest)
    assert (pulled.data, pulled.media_type, pulled.digest) == (manifest, OCI_MANIFEST, digest)
    assert registry.pull_manifest("tests/manifests", "v2").digest == digest
    assert registry.tags("tests/manifests") == ["v1", "v2"]
    assert registry.tags("tests/never-pushed") == []


def test_registry_rejection_carries_its_error_code(registry: Registry) -> None:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(b"?"), "size": 1},
            "layers": [],
        }
    ).encode()

    with pytest.raises(PromoError, match="HTTP 400 \\(MANIFEST_BLOB_UNKNOWN: ") as caught:
        registry.push_manifest("tests/manifests", "dangling", manifest, OCI_MANIFEST)
    assert type(caught.value) is PromoError


def test_tags_follow_link_pagination(httpserver: HTTPServer) -> None:
    base = "/v2/tests/paged/tags/list"
    httpserver.expect_request(base, query_string="n=2").respond_with_json(
        {"tags": ["c", "a"]}, headers={"Link": f'<{base}?n=2&last=c>; rel="next"'}
    )
    absolute = httpserver.url_for(base) + "?n=2&last=d"
    httpserver.expect_request(base, query_string="n=2&last=c").respond_with_json(
        {"tags": ["d"]}, headers={"Link": f'<{absolute}>; rel="next"'}
    )
    httpserver.expect_request(base, query_string="n=2&last=d").respond_with_json({"tags": ["b"]})
    transport = CountingTransport()

    with Registry(f"127.0.0.1:{httpserver.port}", transport=transport) as registry:
        assert registry.tags("tests/paged", page_size=2) == ["a", "b", "c", "d"]
    assert len(transport.requests) == 3


def test_chart_push_pull_by_digest_and_version(registry: Registry, tmp_path: Path) -> None:
    chart = chart_package(tmp_path, version="1.0.0")
    repository = chart_repository("charts", chart.name)

    pushed = push_chart(registry, repository, chart)

    assert (pushed.repository, pushed.tag) == ("charts/demo", "1.0.0")
    assert registry.manifest_digest(repository, "1.0.0") == pushed.digest
    assert pull_chart(registry, repository, pushed.digest) == chart.data
    assert pull_chart(registry, repository, "1.0.0") == chart.data
    # Deterministic: pushing the same package again gives the same manifest digest.
    assert push_chart(registry, repository, chart).digest == pushed.digest


def test_chart_manifest_is_what_helm_writes(registry: Registry, tmp_path: Path) -> None:
    chart = chart_package(tmp_path, version="2.1.0")
    pushed = push_chart(registry, "charts/demo", chart)

    manifest = registry.pull_manifest("charts/demo", pushed.digest).json()
    config = json.loads(registry.pull_blob("charts/demo", manifest["config"]["digest"]))

    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    ]
    assert manifest["annotations"]["org.opencontainers.image.title"] == "demo"
    assert manifest["annotations"]["org.opencontainers.image.version"] == "2.1.0"
    assert "org.opencontainers.image.created" not in manifest["annotations"]
    # Helm's json.Marshal(chart.Metadata): Go struct field order, empty fields left out.
    assert list(config) == [
        "name", "version", "description", "keywords", "maintainers", "apiVersion", "appVersion", "type"
    ]  # fmt: skip
    assert config["appVersion"] == "sha-abc"


def test_skopeo_sees_a_helm_chart(registry: Registry, registry_server: RegistryServer, tmp_path: Path) -> None:
    pushed = push_chart(registry, "charts/demo", chart_package(tmp_path, version="3.0.0"))

    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry_server.host}/charts/demo:3.0.0"],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout

    assert digest_of(raw) == pushed.digest
    assert json.loads(raw)["config"]["mediaType"] == CONFIG_MEDIA_TYPE


def test_plus_in_chart_version_becomes_underscore_in_tag(registry: Registry, tmp_path: Path) -> None:
    chart = chart_package(tmp_path, version="1.2.3+build.5")

    pushed = push_chart(registry, "charts/demo", chart)

    assert pushed.tag == "1.2.3_build.5"
    assert "1.2.3_build.5" in registry.tags("charts/demo")
    assert read_chart(pull_chart(registry, "charts/demo", "1.2.3+build.5")).version == "1.2.3+build.5"


def test_missing_chart_is_not_found_with_a_fix(registry: Registry) -> None:
    with pytest.raises(NotFound, match=r"chart 127\.0\.0\.1:\d+/charts/demo:9\.9\.9 not found; check") as caught:
        pull_chart(registry, "charts/demo", "9.9.9")
    assert caught.value.fix


def test_image_is_not_a_chart(registry: Registry) -> None:
    registry.push_manifest("charts/image", "1.0.0", image_manifest(registry, "charts/image"), OCI_MANIFEST)

    with pytest.raises(PromoError, match="is not a Helm chart"):
        pull_chart(registry, "charts/image", "1.0.0")


def test_chart_pushed_to_a_repository_named_otherwise_is_refused(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="chart name"):
        push_chart(registry, "charts/other", chart_package(tmp_path))


def test_basic_auth_with_right_credentials(basic_auth_registry_server: AuthRegistryServer, tmp_path: Path) -> None:
    auth = basic_auth_registry_server
    credentials = BasicCredentials(auth.username, auth.password)
    chart = chart_package(tmp_path)

    with Registry(auth.host, credentials) as registry:
        pushed = push_chart(registry, "charts/demo", chart)
        assert pull_chart(registry, "charts/demo", pushed.digest) == chart.data


@pytest.mark.parametrize("password", ["wrong password", None])
def test_basic_auth_refusal_is_an_auth_error_without_the_password(
    basic_auth_registry_server: AuthRegistryServer, password: str | None
) -> None:
    credentials = BasicCredentials("promo-ci", password) if password else None

    with Registry(basic_auth_registry_server.host, credentials) as registry:
        with pytest.raises(AuthError, match="PROMO_REGISTRY_USERNAME") as caught:
            registry.tags("charts/demo")
        assert "wrong password" not in f"{caught.value} {caught.value!r} {registry!r}"


def test_bearer_token_challenge_is_answered_and_cached(httpserver: HTTPServer) -> None:
    realm = httpserver.url_for("/token")
    token_requests: list[Request] = []

    def token(request: Request) -> Response:
        token_requests.append(request)
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"robot:s3cret").decode()
        assert request.args.to_dict() == {"service": "fake-registry", "scope": "repository:tests/app:pull"}
        return Response(json.dumps({"access_token": "tok-1"}), content_type="application/json")

    def tags(request: Request) -> Response:
        if request.headers.get("Authorization") != "Bearer tok-1":
            challenge = f'Bearer realm="{realm}",service="fake-registry",scope="repository:tests/app:pull"'
            return Response(status=401, headers={"WWW-Authenticate": challenge})
        return Response(json.dumps({"tags": ["1.0.0"]}), content_type="application/json")

    httpserver.expect_request("/token").respond_with_handler(token)
    httpserver.expect_request("/v2/tests/app/tags/list").respond_with_handler(tags)

    with Registry(f"127.0.0.1:{httpserver.port}", BasicCredentials("robot", "s3cret")) as registry:
        assert registry.tags("tests/app") == ["1.0.0"]
        assert registry.tags("tests/app") == ["1.0.0"]
    assert len(token_requests) == 1


def test_bearer_token_refused_is_an_auth_error(httpserver: HTTPServer) -> None:
    challenge = f'Bearer realm="{httpserver.url_for("/token")}",service="fake-registry"'
    httpserver.expect_request("/v2/tests/app/tags/list").respond_with_data("", 401, {"WWW-Authenticate": challenge})
    httpserver.expect_request("/token").respond_with_json({"errors": [{"code": "UNAUTHORIZED", "message": "no"}]}, 401)

    with Registry(f"127.0.0.1:{httpserver.port}", BasicCredentials("robot", "s3cret")) as registry:
        with pytest.raises(AuthError, match="UNAUTHORIZED") as caught:
            registry.tags("tests/app")
    assert "s3cret" not in str(caught.value)


@pytest.fixture
def other_host() -> Iterator[HTTPServer]:
    """A second server, on another port: a CDN or object storage that upload Locations and next pages point at."""
    server = HTTPServer(host="127.0.0.1")
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.mark.parametrize("scheme", ["Basic", "Bearer"])
def test_credentials_never_go_to_another_host(httpserver: HTTPServer, other_host: HTTPServer, scheme: str) -> None:
    data = b"layer bytes"
    digest = digest_of(data)
    realm = httpserver.url_for("/token")
    ours = "Bearer tok-1" if scheme == "Bearer" else "Basic " + base64.b64encode(b"robot:s3cret").decode()

    def registry_api(request: Request) -> Response:
        if request.path == "/token":
            return Response(json.dumps({"token": "tok-1"}), content_type="application/json")
        if request.headers.get("Authorization") != ours:
            challenge = f'Bearer realm="{realm}",service="fake"' if scheme == "Bearer" else 'Basic realm="fake"'
            return Response(status=401, headers={"WWW-Authenticate": challenge})
        if request.method == "HEAD":
            return Response(status=404)
        if request.method == "POST":
            return Response(status=202, headers={"Location": other_host.url_for("/upload/1?state=s")})
        link = f'<{other_host.url_for("/v2/tests/app/tags/list")}?last=a>; rel="next"'
        return Response(json.dumps({"tags": ["a"]}), content_type="application/json", headers={"Link": link})

    httpserver.expect_request(re.compile("/.*")).respond_with_handler(registry_api)
    upload = {"state": "s", "digest": digest}
    other_host.expect_request("/upload/1", method="PUT", query_string=upload).respond_with_data("", 201)
    other_host.expect_request("/v2/tests/app/tags/list", query_string="last=a").respond_with_json({"tags": ["b"]})

    with Registry(f"127.0.0.1:{httpserver.port}", BasicCredentials("robot", "s3cret")) as registry:
        assert registry.push_blob("tests/app", data) == digest
        assert registry.tags("tests/app") == ["a", "b"]

    assert [request.method for request, _ in other_host.log] == ["PUT", "GET"]
    assert [request.headers.get("Authorization") for request, _ in other_host.log] == [None, None]
    assert ours in [request.headers.get("Authorization") for request, _ in httpserver.log], "nothing was authorized"


def test_push_access_check_refuses_a_pull_only_token(httpserver: HTTPServer) -> None:
    """The token service grants only pull whatever is asked; reading tags works, starting an upload is denied."""
    realm = httpserver.url_for("/token")
    denied = {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}

    def registry_api(request: Request) -> Response:
        if request.path == "/token":
            return Response(json.dumps({"token": "pull-only"}), content_type="application/json")
        if request.headers.get("Authorization") != "Bearer pull-only":
            challenge = f'Bearer realm="{realm}",service="fake",scope="repository:tests/app:pull,push"'
            return Response(status=401, headers={"WWW-Authenticate": challenge})
        if request.method == "GET":
            return Response(json.dumps({"tags": ["1.0.0"]}), content_type="application/json")
        return Response(json.dumps(denied), status=403, content_type="application/json")

    httpserver.expect_request(re.compile("/.*")).respond_with_handler(registry_api)

    with Registry(f"127.0.0.1:{httpserver.port}", BasicCredentials("robot", "s3cret")) as registry:
        with pytest.raises(AuthError) as refused:
            registry.check_push_access("tests/app")

    message = str(refused.value)
    assert "DENIED" in message and f"may not push to 127.0.0.1:{httpserver.port}/tests/app" in message
    assert "grant them the push right on tests/app" in message and "\n" not in message and "s3cret" not in message
    assert [request.method for request, _ in httpserver.log if request.path != "/token"] == ["POST", "POST"]


def test_push_access_check_starts_and_cancels_an_upload(registry_server: RegistryServer) -> None:
    transport = CountingTransport()
    with Registry(registry_server.host, transport=transport) as registry:
        registry.check_push_access("tests/push-check")
        assert registry.tags("tests/push-check") == []  # nothing was stored under the name
    methods = [request.method for request in transport.requests]
    assert methods[:2] == ["POST", "DELETE"] and "/blobs/uploads/" in transport.requests[1].url.path


def test_push_access_check_names_a_missing_ecr_repository_before_any_request() -> None:
    client = boto3.client("ecr", region_name="eu-west-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="x")
    stubber = Stubber(client)
    asked = {"repositoryNames": ["hello"], "registryId": "123456789012"}
    stubber.add_client_error(
        "describe_repositories", "RepositoryNotFoundException", http_status_code=400, expected_params=asked
    )
    stubber.add_response("describe_repositories", {"repositories": [{"repositoryName": "hello"}]}, asked)
    sent: list[httpx.Request] = []

    def registry_api(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/hello/blobs/uploads/u1"})
        return httpx.Response(204)

    credentials = EcrCredentials("eu-west-1", registry_id="123456789012", client=client)
    with stubber, Registry(ECR_HOST, credentials, transport=httpx.MockTransport(registry_api)) as registry:
        with pytest.raises(NotFound) as missing:
            registry.check_push_access("hello")
        assert sent == []
        registry.check_push_access("hello")
    assert str(missing.value) == (
        "ECR repository hello does not exist in eu-west-1; "
        "create it: aws ecr create-repository --repository-name hello --region eu-west-1"
    )
    assert [request.method for request in sent] == ["POST", "DELETE"]


def test_ecr_credentials_from_get_authorization_token() -> None:
    client = boto3.client("ecr", region_name="eu-west-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_response(
        "get_authorization_token",
        {
            "authorizationData": [
                {
                    "authorizationToken": base64.b64encode(b"AWS:ecr-secret-token").decode(),
                    "expiresAt": datetime.now(timezone.utc) + timedelta(hours=12),
                    "proxyEndpoint": f"https://{ECR_HOST}",
                }
            ]
        },
    )
    credentials = EcrCredentials("eu-west-1", client=client)

    with stubber:
        assert credentials.basic_auth() == ("AWS", "ecr-secret-token")
        assert credentials.basic_auth() == ("AWS", "ecr-secret-token")  # cached: the stub holds one response only
    with Registry(ECR_HOST, credentials) as registry:
        shown = f"{credentials!r} {credentials} {registry!r}"
    assert "ecr-secret-token" not in shown and "eu-west-1" in shown


def test_ecr_refusal_is_an_auth_error() -> None:
    client = boto3.client("ecr", region_name="eu-west-1", aws_access_key_id="AKIDTEST", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.add_client_error("get_authorization_token", "AccessDeniedException", http_status_code=403)

    with stubber, pytest.raises(AuthError, match="AccessDeniedException.*AWS credentials for ECR"):
        EcrCredentials("eu-west-1", client=client).basic_auth()


def test_credentials_for() -> None:
    ecr = credentials_for("ecr", ECR_HOST)
    assert isinstance(ecr, EcrCredentials) and (ecr.region, ecr.registry_id) == ("eu-west-1", "123456789012")
    with pytest.raises(InputError, match="not an ECR registry"):
        credentials_for("ecr", "registry.example.com")

    basic = credentials_for("basic", "registry.example.com", username="robot", password="pa55word")
    assert basic.basic_auth() == ("robot", "pa55word") and "pa55word" not in repr(basic)
    with pytest.raises(ConfigError, match="have no password; set PROMO_REGISTRY_USERNAME and PROMO_REGISTRY_PASSWORD"):
        credentials_for("basic", "registry.example.com", username="robot")
    assert credentials_for("anonymous", "registry.example.com").basic_auth() is None


def test_repository_names_must_be_lowercase() -> None:
    with Registry(ECR_HOST, credentials_for("ecr", ECR_HOST)) as registry:
        with pytest.raises(InputError, match="lowercase"):
            registry.tags("Charts/Demo")


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"), [(503, {"Retry-After": "7"}, 7.0), (500, {}, None), (429, {}, None)]
)
def test_server_errors_are_transient(
    httpserver: HTTPServer, status: int, headers: dict[str, str], retry_after: float | None
) -> None:
    httpserver.expect_request("/v2/tests/app/tags/list").respond_with_data("busy", status, headers)

    with Registry(f"127.0.0.1:{httpserver.port}") as registry, pytest.raises(RegistryUnavailable) as caught:
        registry.tags("tests/app")

    assert isinstance(caught.value, TransientError)
    assert caught.value.retry_after == retry_after
    assert ("retry after 7 s" in str(caught.value)) == (retry_after is not None)


def test_connection_refused_is_transient() -> None:
    with Registry(f"127.0.0.1:{_free_port()}", timeout=2) as registry:
        with pytest.raises(TransientError, match="cannot reach registry"):
            registry.blob_exists("tests/app", digest_of(b""))
