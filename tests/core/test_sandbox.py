"""The sandbox: real bare remotes read back with git, a real registry and stand-in process, a promo.yaml that loads."""

from __future__ import annotations

import os
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from promo.cli import main as cli
from promo.registry.charts import package_chart, read_chart
from promo.config import ArgoCDCheck, HttpCheck, VerifySettings, load_config
from promo.errors import InputError
from promo.gitops.mirror import Mirror
from promo.gitops.signing import ALLOWED_SIGNERS_PATH, parse_allowed_signers
from promo.gitops.verdicts import deployed_verdict, record_verdict
from promo.local.sandbox import Sandbox, create_sandbox, degrade_version, stop_sandbox
from promo.local.standin_apps import PACE_VARIABLE, PACES, sandbox_pace
from promo.signing_key import record_signing_key

pytestmark = pytest.mark.integration

APP_FILES = {
    "Containerfile",
    "index.html",
    "promo.yaml",
    "charts/hello/.helmignore",
    "charts/hello/Chart.yaml",
    "charts/hello/values.yaml",
    "charts/hello/templates/deployment.yaml",
    "charts/hello/templates/service.yaml",
}
GITOPS_FILES = {
    "registry/environments/dev/preprod/hello.yaml",
    "registry/environments/test/preprod/hello.yaml",
    "registry/environments/stage/preprod/hello.yaml",
    "registry/environments/prod/prod/hello.yaml",
    "values/hello/prod.yaml",
    ".promo/record-signers",
}


def git(remote: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(remote), *args], check=True, capture_output=True, text=True).stdout


def show(remote: Path, path: str) -> str:
    return git(remote, "show", f"main:{path}")


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True



def test_remotes_hold_the_sample_app_and_one_application_per_environment(sandbox: Sandbox) -> None:
    assert set(git(sandbox.app_remote, "ls-tree", "-r", "--name-only", "main").split()) == APP_FILES
    assert set(git(sandbox.gitops_remote, "ls-tree", "-r", "--name-only", "main").split()) == GITOPS_FILES
    for remote in (sandbox.app_remote, sandbox.gitops_remote):
        assert git(remote, "rev-parse", "--is-bare-repository").strip() == "true"
        assert git(remote, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
        assert git(remote, "log", "--format=%an <%ae>").strip() == "promo sandbox <sandbox@promo.local>"

    dev = YAML(typ="safe").load(show(sandbox.gitops_remote, "registry/environments/dev/preprod/hello.yaml"))
    assert dev["spec"]["source"] == {
        "repoURL": f"{sandbox.registry_host}/charts",
        "chart": "hello",
        "targetRevision": "",
        "helm": {"releaseName": "hello"},
    }
    assert dev["spec"]["destination"] == {"name": "preprod", "namespace": "hello-dev"}
    prod = YAML(typ="safe").load(show(sandbox.gitops_remote, "registry/environments/prod/prod/hello.yaml"))
    chart_source, values_source = prod["spec"]["sources"]
    assert (chart_source["chart"], chart_source["targetRevision"]) == ("hello", "")
    assert values_source == {"repoURL": sandbox.gitops_remote.as_uri(), "targetRevision": "main", "ref": "values"}
    assert chart_source["helm"]["valueFiles"] == ["$values/values/hello/prod.yaml"]


def test_sample_chart_injects_chart_version_and_image(sandbox: Sandbox, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(sandbox.app_remote), str(checkout)], check=True)
    (checkout / "charts/hello/scratch.tmp").write_text("ignored by .helmignore")
    deployment = (checkout / "charts/hello/templates/deployment.yaml").read_text()
    assert "value: {{ .Chart.Version | quote }}" in deployment
    assert 'value: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"' in deployment
    values = YAML(typ="safe").load((checkout / "charts/hello/values.yaml").read_text())
    assert values["image"] == {"repository": f"{sandbox.registry_host}/hello", "tag": "", "pullPolicy": "IfNotPresent"}

    package = package_chart(checkout / "charts/hello", version="0.1.0-rc.abc1234", app_version="abc1234")

    contents = read_chart(package.data)
    assert (contents.name, contents.version, contents.app_version) == ("hello", "0.1.0-rc.abc1234", "abc1234")
    assert not any(path.endswith("scratch.tmp") for path in contents.files)


def test_promo_yaml_loads_and_points_at_the_sandbox(sandbox: Sandbox) -> None:
    config = load_config(sandbox.config_path)

    assert config.app == "hello"
    assert config.app_repo.url == sandbox.app_remote.as_uri()
    assert config.gitops.url == sandbox.gitops_remote.as_uri()
    assert config.chart.path == "charts/hello"
    assert config.chart.repository == f"{sandbox.registry_host}/charts"
    assert config.image.repository == f"{sandbox.registry_host}/hello"
    assert config.image.storage_root == sandbox.builder_storage == sandbox.directory / "buildah"
    assert config.cache_dir == sandbox.directory / "cache"
    assert [(env.name, env.clusters, env.approvers) for env in config.environments] == [
        ("dev", ["preprod"], []),
        ("test", ["preprod"], []),
        ("stage", ["preprod"], ["demo", "alice"]),
        ("prod", ["prod"], ["demo", "alice"]),
    ]
    assert show(sandbox.app_remote, "promo.yaml") == sandbox.config_path.read_text()


def test_every_environment_is_verified_against_the_stand_in_quickly(sandbox: Sandbox) -> None:
    expected = VerifySettings(
        argocd=ArgoCDCheck(url=sandbox.standin_url, token="none"),
        http=HttpCheck(url=f"{sandbox.standin_url}/clusters/{{env}}/{{cluster}}/{{app}}/version"),
        **PACES["test"]["verify"],  # tests/conftest.py sets $PROMO_STANDIN_PACE=test
    )
    for env in load_config(sandbox.config_path).environments:
        assert (env.verify, env.soak) == (expected, 0), env.name
        application = httpx.get(f"{sandbox.standin_url}/api/v1/applications/hello-{env.name}-{env.clusters[0]}")
        assert application.status_code == 200
        assert application.json()["status"]["health"]["status"] == "Missing", "nothing is deployed yet"


def test_the_stand_in_moves_at_the_demo_pace_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PACE_VARIABLE)
    assert sandbox_pace() == PACES["demo"] and PACES["demo"]["verify"]["healthy_for"] >= 1
    assert PACES["demo"]["standin"]["sync_delay"] > 0 and PACES["demo"]["standin"]["progressing_seconds"] > 0
    monkeypatch.setenv(PACE_VARIABLE, "fast")
    with pytest.raises(InputError, match="PROMO_STANDIN_PACE is 'fast'"):
        sandbox_pace()


def test_registry_answers_and_creating_again_reuses_everything(sandbox: Sandbox) -> None:
    assert httpx.get(f"http://{sandbox.registry_host}/v2/").status_code == 200
    assert httpx.get(f"{sandbox.standin_url}/healthz").status_code == 200
    heads = [git(remote, "rev-parse", "main") for remote in (sandbox.app_remote, sandbox.gitops_remote)]
    config_text = sandbox.config_path.read_text()

    again = create_sandbox(sandbox.directory)

    assert again == sandbox
    assert [git(remote, "rev-parse", "main") for remote in (sandbox.app_remote, sandbox.gitops_remote)] == heads
    assert sandbox.config_path.read_text() == config_text


def test_the_sandbox_makes_its_record_signing_key_once_and_lists_it_for_readers(sandbox: Sandbox) -> None:
    config = load_config(sandbox.config_path)
    key_file = sandbox.directory / "record-signing-key"
    assert config.records.signing_key_file == key_file and key_file.stat().st_mode & 0o777 == 0o600
    key = record_signing_key(config.records.signing_key_file)
    assert sandbox.record_signer == key.public.fingerprint()
    assert parse_allowed_signers(show(sandbox.gitops_remote, ALLOWED_SIGNERS_PATH)) == {key.public}
    assert key.to_openssh() not in sandbox.config_path.read_text() and "PRIVATE KEY" not in str(sandbox)

    # An existing GitOps repository that does not list the sandbox's key (its key file was lost, or the sandbox
    # predates signed records) is given the line, once; the key is made once and reused.
    before = git(sandbox.gitops_remote, "rev-parse", "main").strip()
    key_file.unlink()
    again = create_sandbox(sandbox.directory)
    made = record_signing_key(key_file)
    assert again.record_signer == made.public.fingerprint() != key.public.fingerprint()
    assert parse_allowed_signers(show(sandbox.gitops_remote, ALLOWED_SIGNERS_PATH)) == {key.public, made.public}
    assert git(sandbox.gitops_remote, "rev-list", "--count", f"{before}..main").strip() == "1"
    assert create_sandbox(sandbox.directory) == again and record_signing_key(key_file).public == made.public
    assert git(sandbox.gitops_remote, "rev-list", "--count", f"{before}..main").strip() == "1"

    # What its runs sign, readers believe.
    mirror = Mirror.open(sandbox.gitops_remote.as_uri(), sandbox.directory / "cache", branch="main")
    commit = git(sandbox.gitops_remote, "rev-parse", "main").strip()
    at = datetime.now(timezone.utc).replace(microsecond=0)
    assert record_verdict(mirror, deployed_verdict("hello", "dev", "0.1.0", commit, at=at), made).trusted


def test_stop_kills_the_registry_and_stand_in_and_create_restarts_them_on_their_ports(sandbox: Sandbox) -> None:
    assert stop_sandbox(sandbox.directory) is True
    assert not is_alive(sandbox.registry_pid)
    assert not is_alive(sandbox.standin_pid)
    assert stop_sandbox(sandbox.directory) is False

    restarted = create_sandbox(sandbox.directory)

    assert restarted.registry_pid != sandbox.registry_pid
    assert restarted.registry_host == sandbox.registry_host
    assert httpx.get(f"http://{restarted.registry_host}/v2/").status_code == 200
    assert restarted.standin_pid != sandbox.standin_pid
    assert restarted.standin_url == sandbox.standin_url
    assert httpx.get(f"{restarted.standin_url}/healthz").status_code == 200


def test_taken_ports_move_the_registry_and_stand_in_and_promo_yaml_follows(sandbox: Sandbox) -> None:
    stop_sandbox(sandbox.directory)
    standin_host = sandbox.standin_url.removeprefix("http://")
    with socket.socket() as registry_squatter, socket.socket() as standin_squatter:
        for squatter, taken in ((registry_squatter, sandbox.registry_host), (standin_squatter, standin_host)):
            host, port = taken.split(":")
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the stopped server's TIME_WAITs
            squatter.bind((host, int(port)))
            squatter.listen()
        moved = create_sandbox(sandbox.directory)

    assert moved.registry_host != sandbox.registry_host
    assert moved.standin_url != sandbox.standin_url
    config = load_config(moved.config_path)
    assert config.image.repository == f"{moved.registry_host}/hello"
    assert config.chart.repository == f"{moved.registry_host}/charts"
    for env in config.environments:
        assert env.verify.argocd.url == moved.standin_url
        assert env.verify.http.url == f"{moved.standin_url}/clusters/{{env}}/{{cluster}}/{{app}}/version"
    assert sandbox.registry_host not in moved.config_path.read_text()
    assert standin_host not in moved.config_path.read_text()
    assert httpx.get(f"{moved.standin_url}/healthz").status_code == 200


def test_degrade_names_a_version_the_stand_in_brings_up_degraded(sandbox: Sandbox) -> None:
    degrade_version(sandbox.directory, "0.1.0-rc.abc1234")
    result = CliRunner().invoke(cli.app, ["sandbox", str(sandbox.directory), "--degrade", "0.2.0"])

    assert result.exit_code == 0, result.output
    lines = (sandbox.directory / "degraded-versions").read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == ["0.1.0-rc.abc1234", "0.2.0"]
    with pytest.raises(InputError, match="is not one word"):
        degrade_version(sandbox.directory, "0.1.0 0.2.0")
    with pytest.raises(InputError, match="holds no sandbox"):
        degrade_version(sandbox.directory / "remotes", "0.1.0")


def test_a_sandbox_holds_one_app(sandbox: Sandbox) -> None:
    with pytest.raises(InputError, match="already holds a sandbox for app 'hello'"):
        create_sandbox(sandbox.directory, app="other")
    with pytest.raises(InputError, match="is not a DNS label"):
        create_sandbox(sandbox.directory.parent / "elsewhere", app="../hello")


def test_moving_ports_rewrites_each_host_once_and_whole(tmp_path: Path) -> None:
    from promo.local.sandbox import _move_hosts

    config = tmp_path / "promo.yaml"
    config.write_text("a: 127.0.0.1:80/charts\nb: http://127.0.0.1:8080\nc: http://127.0.0.1:8080/clusters/x\n")

    # The registry moves onto the stand-in's old port while the stand-in moves on: neither is rewritten twice.
    _move_hosts(config, {"127.0.0.1:80": "127.0.0.1:8080", "127.0.0.1:8080": "127.0.0.1:9090"})

    assert config.read_text() == "a: 127.0.0.1:8080/charts\nb: http://127.0.0.1:9090\nc: http://127.0.0.1:9090/clusters/x\n"


def test_more_apps_share_the_gitops_remote_registry_and_stand_in(sandbox: Sandbox) -> None:
    from promo.local.sandbox import add_apps

    def commits() -> int:
        git = ["git", "-C", str(sandbox.gitops_remote), "rev-list", "--count", "main"]
        return int(subprocess.run(git, capture_output=True, text=True, check=True).stdout)

    before = commits()
    paths = add_apps(sandbox, ["app-a", "app-b"])

    assert commits() == before + 1  # one commit for all of them
    for app, path in paths.items():
        config = load_config(path)
        assert config.app == app and config.cache_dir is None  # each host's own cache
        assert config.gitops.url == sandbox.gitops_remote.as_uri()
        assert config.image.repository == f"{sandbox.registry_host}/{app}"
        assert config.environments[0].verify.argocd.url == sandbox.standin_url
        assert (sandbox.directory / "remotes" / f"{app}.git").is_dir()
        manifest = subprocess.run(
            ["git", "-C", str(sandbox.gitops_remote), "show", f"main:registry/environments/test/preprod/{app}.yaml"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"name: {app}-test\n" in manifest and f"chart: {app}\n" in manifest
    assert add_apps(sandbox, ["app-a", "app-b"]) == paths and commits() == before + 1  # nothing new the second time
    with pytest.raises(InputError, match="is not a DNS label"):
        add_apps(sandbox, ["../x"])
