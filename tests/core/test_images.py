"""Image builds: buildah for real against a real registry, checked with skopeo; docker buildx through a fake CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import promo
from promo.registry import images
from promo.errors import AuthError, InputError, ToolError, TransientError
from promo.registry.images import Buildah, BuiltImage, DockerBuildx, existing_image, select_builder
from promo.registry.credentials import BasicCredentials
from promo.registry.oci import OCI_MANIFEST
from tests.core.test_oci import image_manifest

SAMPLE_APP = Path(promo.__file__).parent / "sample-world" / "app"
DIGEST = "sha256:" + "ab" * 32

needs_buildah = pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed")

# A stand-in for the docker CLI: records what it was given and answers like `docker buildx build --push` would.
FAKE_DOCKER = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if os.environ.get("FAKE_DOCKER_DAEMON") != "up":
    sys.exit("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?")
if args[:2] == ["buildx", "build"]:
    config = os.path.join(os.environ.get("DOCKER_CONFIG", "/nonexistent"), "config.json")
    record = {{"argv": args, "config": None, "mode": None, "epoch": os.environ.get("SOURCE_DATE_EPOCH")}}
    if os.path.exists(config):
        record.update(config=json.load(open(config)), mode=os.stat(config).st_mode & 0o777)
    json.dump(record, open(os.environ["FAKE_DOCKER_RECORD"], "w"))
    json.dump({{"containerimage.digest": "{DIGEST}"}}, open(args[args.index("--metadata-file") + 1], "w"))
"""


COMMIT_TIME = 1_700_000_000


def build(builder: images.ImageBuilder, host: str, tag: str = "abc1234", **kwargs: object) -> BuiltImage:
    options = {
        "context": SAMPLE_APP, "containerfile": SAMPLE_APP / "Containerfile", "created": COMMIT_TIME,
        "insecure": True, "login": None,
    }  # fmt: skip
    options.update(kwargs)
    return builder.build_and_push(repository=f"{host}/hello", tag=tag, **options)


def skopeo_inspect(reference: str, *extra: str) -> dict:
    argv = ["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{reference}"]
    return json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding the fake docker (daemon down unless FAKE_DOCKER_DAEMON=up) and the real buildah."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    if buildah := shutil.which("buildah"):
        (bin_dir / "buildah").symlink_to(buildah)
    monkeypatch.setenv("PATH", str(bin_dir))
    record = tmp_path / "docker-record.json"
    monkeypatch.setenv("FAKE_DOCKER_RECORD", str(record))
    return record


@pytest.mark.integration
@needs_buildah
def test_buildah_pushes_and_returns_the_digest_the_registry_holds(registry_server, tmp_path: Path) -> None:
    image = build(Buildah(tmp_path / "buildah"), registry_server.host)

    assert image.reference == f"{registry_server.host}/hello:abc1234"
    assert image.pinned == f"{registry_server.host}/hello@{image.digest}"
    inspected = skopeo_inspect(image.reference)
    assert inspected["Digest"] == image.digest
    assert inspected["Labels"]["org.opencontainers.image.description"] == "promo sandbox sample app"
    assert skopeo_inspect(image.pinned)["Digest"] == image.digest
    assert (tmp_path / "buildah" / "storage").is_dir()  # images stay in the given storage root


@pytest.mark.integration
@needs_buildah
def test_buildah_logs_in_through_a_private_authfile(basic_auth_registry_server, tmp_path, monkeypatch) -> None:
    calls: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(argv, **kwargs):
        calls.append(list(argv))
        authfile = next((argv[i + 1] for i, arg in enumerate(argv) if arg == "--authfile"), None)
        if authfile:
            assert os.stat(authfile).st_mode & 0o777 == 0o600
        return real_run(argv, **kwargs)

    monkeypatch.setattr(images.subprocess, "run", recording_run)
    server = basic_auth_registry_server
    login = BasicCredentials(server.username, server.password)

    image = build(Buildah(tmp_path / "buildah"), server.host, login=login)

    assert [call[:4] for call in calls] == [["buildah", "--storage-driver", "vfs", "--root"]] * 2
    assert all("--authfile" in call for call in calls)
    assert not any(server.password in arg for call in calls for arg in call)
    creds = f"--creds={server.username}:{server.password}"
    assert skopeo_inspect(image.reference, creds)["Digest"] == image.digest


@pytest.mark.integration
@needs_buildah
def test_refused_credentials_are_an_auth_error_without_the_password(basic_auth_registry_server, tmp_path) -> None:
    server = basic_auth_registry_server
    with pytest.raises(AuthError) as caught:
        build(Buildah(tmp_path / "buildah"), server.host, login=BasicCredentials(server.username, "wrong-password"))
    assert "unauthorized" in str(caught.value)
    assert "wrong-password" not in str(caught.value)


@pytest.mark.integration
@needs_buildah
def test_buildah_builds_of_one_commit_give_one_digest(registry_server, tmp_path: Path) -> None:
    """Two builds of one context, in fresh storage and from files with other mtimes (a later export of the commit),
    stamped with the commit's time: one digest. Another time gives another digest, so the time is what pins it."""
    contexts = []
    for index, mtime in enumerate((1_000_000_000, 1_600_000_000)):
        context = shutil.copytree(SAMPLE_APP, tmp_path / f"context-{index}", ignore=shutil.ignore_patterns("charts"))
        for path in [context, *context.rglob("*")]:
            os.utime(path, (mtime, mtime))
        contexts.append(context)

    def build_in_fresh_storage(index: int, context: Path, created: int) -> BuiltImage:
        builder = Buildah(tmp_path / f"buildah-{index}")
        return build(builder, registry_server.host, f"repro{index}", context=context, created=created,
                     containerfile=context / "Containerfile")  # fmt: skip

    first = build_in_fresh_storage(0, contexts[0], COMMIT_TIME)
    second = build_in_fresh_storage(1, contexts[1], COMMIT_TIME)
    later = build_in_fresh_storage(2, contexts[0], COMMIT_TIME + 1)

    assert first.digest == second.digest != later.digest
    assert skopeo_inspect(first.reference)["Created"].startswith("2023-11-14T22:13:20")  # COMMIT_TIME in UTC


def test_existing_image_is_the_digest_the_tag_holds_or_none(registry_server, registry, tmp_path: Path) -> None:
    repository = f"{registry_server.host}/existing"
    assert existing_image(registry, repository, "abc1234") is None
    manifest = image_manifest(registry, "existing")
    digest = registry.push_manifest("existing", "abc1234", manifest, OCI_MANIFEST)
    assert existing_image(registry, repository, "abc1234") == BuiltImage(repository, "abc1234", digest, reused=True)


@needs_buildah
def test_unreachable_registry_is_transient(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free once the socket closes: nothing listens there

    with pytest.raises(TransientError, match="connection refused"):
        build(Buildah(tmp_path / "buildah"), f"127.0.0.1:{port}")


@needs_buildah
def test_failed_build_is_one_tool_error_line(tmp_path: Path) -> None:
    (tmp_path / "Containerfile").write_text("FROM scratch\nCOPY missing.txt /missing.txt\n")

    with pytest.raises(ToolError) as caught:
        build(Buildah(tmp_path / "buildah"), "127.0.0.1:1", context=tmp_path, containerfile=tmp_path / "Containerfile")

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("building image 127.0.0.1:1/hello:abc1234 failed: ")
    assert "missing.txt" in message
    assert message.endswith("; fix the Containerfile or the build context (the same buildah bud run by hand shows the whole log)")


@pytest.mark.parametrize(
    ("repository", "tag", "containerfile", "expected"),
    [
        ("127.0.0.1:5000/Hello", "abc1234", "Containerfile", "not host/path in lowercase"),
        ("hello", "abc1234", "Containerfile", "not host/path in lowercase"),
        ("--authfile=/etc/passwd", "abc1234", "Containerfile", "not host/path in lowercase"),
        ("127.0.0.1:5000/hello", "-rm", "Containerfile", "image tag '-rm' is not valid"),
        ("127.0.0.1:5000/hello", "abc1234", "Missingfile", "Missingfile not found"),
    ],
)
def test_bad_requests_are_refused_before_any_tool_runs(repository, tag, containerfile, expected, monkeypatch) -> None:
    monkeypatch.setattr(images.subprocess, "run", pytest.fail)
    with pytest.raises(InputError, match=expected):
        Buildah().build_and_push(
            context=SAMPLE_APP, containerfile=SAMPLE_APP / containerfile, repository=repository, tag=tag,
            created=COMMIT_TIME, insecure=False, login=None,
        )  # fmt: skip


def test_docker_buildx_command() -> None:
    argv = DockerBuildx().argv(
        context=Path("/src"), containerfile=Path("/src/Containerfile"), reference="r.io/team/hello:abc1234",
        metadata_file=Path("/tmp/m.json"),
    )  # fmt: skip
    assert argv == [
        "docker", "buildx", "build", "--output", "type=registry,rewrite-timestamp=true", "--provenance=false",
        "--metadata-file", "/tmp/m.json", "-t", "r.io/team/hello:abc1234", "-f", "/src/Containerfile", "/src",
    ]  # fmt: skip


def test_docker_buildx_reads_the_digest_and_gets_credentials_in_a_private_config(fake_docker, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_DAEMON", "up")
    login = BasicCredentials("ci", "s3cret")

    image = build(DockerBuildx(), "r.io", login=login)

    assert image == BuiltImage(repository="r.io/hello", tag="abc1234", digest=DIGEST)
    record = json.loads(fake_docker.read_text())
    assert record["argv"][:3] == ["buildx", "build", "--output"]
    assert record["epoch"] == str(COMMIT_TIME)  # buildx stamps everything it creates with SOURCE_DATE_EPOCH
    assert record["mode"] == 0o600
    assert record["config"] == {"auths": {"r.io": {"auth": "Y2k6czNjcmV0"}}}  # base64("ci:s3cret")
    assert not any("s3cret" in arg for arg in record["argv"])


def test_docker_buildx_gets_the_commit_time_without_a_login_too(fake_docker, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_DAEMON", "up")
    build(DockerBuildx(), "r.io", created=1_234_567_890)
    assert json.loads(fake_docker.read_text())["epoch"] == "1234567890"


def test_docker_failure_is_a_tool_error(fake_docker) -> None:
    with pytest.raises(ToolError, match="Cannot connect to the Docker daemon"):
        build(DockerBuildx(), "r.io")


def test_auto_takes_docker_only_when_its_daemon_answers(fake_docker, monkeypatch, tmp_path) -> None:
    assert select_builder("auto", tmp_path) == Buildah(tmp_path)
    monkeypatch.setenv("FAKE_DOCKER_DAEMON", "up")
    assert select_builder("auto", tmp_path) == DockerBuildx()


def test_a_missing_tool_names_its_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError, match=r"buildah is not installed .*apt-get install buildah"):
        select_builder("auto")
    with pytest.raises(ToolError, match="docker-buildx-plugin"):
        select_builder("docker")
