"""`promo status --all`: every app x environment from one read of the GitOps repository, verdicts matched by version,
disagreeing clusters shown, an app absent from a cluster its environment has flagged, unreadable manifests reported
in their cell and by the exit code; the command imports nothing of Prefect."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from promo.cli import main as cli
from promo.errors import ManifestError
from promo.gitops.mirror import Mirror
from promo.gitops.signing import ALLOWED_SIGNERS_PATH
from promo.gitops.verdicts import KIND as VERDICTS, Verdict, record_verdict
from promo.reports.estate import Estate, Placement, estate_at
from tests.fixtures.gitrepos import RECORD_SIGNER, ROOT, GitRemote, application, make_remote, signers_file
from tests.fixtures.history_script import cli_in_fresh_process

ENVIRONMENTS = ["dev", "test", "stage", "prod"]  # promo.yaml's order; stage has no manifest, qa is not configured
SEVERAL_DOCUMENTS = "kind: Application\n---\nkind: Application\n"


@dataclass
class World:
    remote: GitRemote
    config_path: Path
    cache: Path


def _verdict(app: str, env: str, version: str, commit: str, verified: bool, hour: int) -> Verdict:
    checked_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=hour)  # never before its commit
    return Verdict(app, env, version, commit, verified, "synced and healthy" if verified else "Degraded", checked_at)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("estate")
    manifests = {
        ("hello", "dev", "preprod"): "0.2.0",
        ("hello", "test", "preprod"): "0.1.1",
        ("hello", "prod", "prod-a"): "0.1.0",
        ("hello", "prod", "prod-b"): "0.1.0",
        ("hello", "qa", "qa-1"): "0.2.0",
        ("web", "dev", "preprod"): "1.0.0",
        ("web", "prod", "prod-a"): "0.9.0",
        ("web", "prod", "prod-b"): "0.8.0",
        ("fresh", "dev", "preprod"): "",
        ("broken", "dev", "preprod"): "3.0.0",
        ("solo", "prod", "prod-a"): "0.1.0",  # prod-b runs other apps, not this one
    }
    files = {
        f"{ROOT}/{env}/{cluster}/{app}.yaml": application(app, env, version)
        for (app, env, cluster), version in manifests.items()
    }
    files[f"{ROOT}/test/preprod/broken.yaml"] = SEVERAL_DOCUMENTS
    files[f"{ROOT}/dev/notes.txt"] = "not an Application\n"
    files[f"{ROOT}/dev/preprod/values/web.yaml"] = "replicas: 2\n"  # deeper than the layout: not an app
    files[f"{ROOT}/qa/qa-2/README.md"] = "# a new qa cluster, nothing deployed yet\n"  # a cluster all the same
    files["README.md"] = "# GitOps\n"
    remote = make_remote(base / "gitops", {**files, **signers_file()})
    first = remote.head()
    second = remote.commit({"README.md": "# GitOps, again\n"})
    third = remote.commit({"README.md": "# GitOps, once more\n"})
    mirror = Mirror.open(remote.url, base / "verdicts-cache")
    for verdict in (
        _verdict("hello", "dev", "0.2.0", first, True, 10),
        _verdict("hello", "test", "0.1.1", first, False, 10),
        _verdict("hello", "prod", "0.0.9", first, True, 10),  # a version no longer running
        _verdict("web", "dev", "1.0.0", second, True, 11),  # newer than the failure below
        _verdict("web", "dev", "1.0.0", third, False, 9),
    ):
        record_verdict(mirror, verdict, RECORD_SIGNER)
    # Pushed by someone else, unsigned, and newer than promo's failure: it must not turn hello's test cell green.
    forged = _verdict("hello", "test", "0.1.1", third, True, 12)
    mirror.create_record(VERDICTS, f"hello/test/{third}", third, forged.message())
    settings = {
        "app": "hello",
        "app_repo": {"url": (base / "no-app-repo.git").as_uri()},
        "gitops": {"url": remote.url, "root": ROOT},
        "chart": {"path": "charts/hello", "repository": "127.0.0.1:9/charts"},  # never asked: nothing listens
        "image": {"repository": "127.0.0.1:9/hello"},
        "environments": [{"name": env, "clusters": ["preprod"]} for env in ENVIRONMENTS],
        "cache_dir": str(base / "cache"),
    }
    config_path = base / "promo.yaml"
    config_path.write_text(json.dumps(settings))
    return World(remote, config_path, base / "cache")


def read(world: World) -> Estate:
    mirror = Mirror.open(world.remote.url, world.cache / "direct")
    mirror.fetch()
    return estate_at(mirror, mirror.resolve("main"), ROOT, ENVIRONMENTS)


def test_every_app_and_environment_is_read_in_promo_yaml_order_then_the_others(world: World) -> None:
    estate = read(world)
    assert estate.commit == world.remote.head()
    assert estate.environments == ("dev", "test", "prod", "qa")
    assert list(estate.apps) == ["broken", "fresh", "hello", "solo", "web"]
    assert {env: p.version for env, p in estate.apps["hello"].items()} == {
        "dev": "0.2.0",
        "test": "0.1.1",
        "prod": "0.1.0",
        "qa": "0.2.0",
    }
    assert set(estate.apps["web"]) == {"dev", "prod"}  # no manifest in test: no placement


def test_verdicts_are_matched_by_the_version_running_and_the_newest_decides(world: World) -> None:
    apps = read(world).apps
    assert apps["hello"]["dev"].verdict == "verified"
    assert apps["hello"]["test"].verdict == "failed"
    assert apps["hello"]["prod"].verdict is None  # its verdict names 0.0.9, not what runs
    assert apps["hello"]["qa"].verdict is None  # verdicts are per environment
    assert apps["web"]["dev"].verdict == "verified"
    assert apps["hello"]["dev"].text() == "0.2.0 ✓" and apps["hello"]["test"].text() == "0.1.1 ✗"
    assert apps["fresh"]["dev"].text() == "<none>"


def test_a_verdict_promo_cannot_prove_it_wrote_shows_untrusted_and_never_as_verified(tmp_path: Path) -> None:
    manifests = {f"{ROOT}/dev/preprod/{app}.yaml": application(app, "dev", "1.0.0") for app in ("alone", "beside")}
    remote = make_remote(tmp_path / "gitops", {**manifests, **signers_file()})
    mirror = Mirror.open(remote.url, tmp_path / "cache")
    commit = remote.head()
    record_verdict(mirror, _verdict("beside", "dev", "1.0.0", commit, False, 1), RECORD_SIGNER)
    for app in ("alone", "beside"):  # unsigned "verified" records, newer than anything promo wrote
        claim = _verdict(app, "dev", "1.0.0", commit, True, 2).message()
        mirror.create_record(VERDICTS, f"{app}/dev/{commit}", commit, claim)
    mirror.fetch()
    apps = estate_at(mirror, commit, ROOT, ["dev"]).apps
    assert apps["alone"]["dev"].verdict == "untrusted" and apps["alone"]["dev"].text() == "1.0.0 (untrusted verdict)"
    assert apps["beside"]["dev"].verdict == "failed"  # promo's own stands


def test_clusters_that_disagree_are_each_shown(world: World) -> None:
    web = read(world).apps["web"]["prod"]
    assert web.clusters_disagree and web.version is None and web.verdict is None
    assert web.clusters == {"prod-a": "0.9.0", "prod-b": "0.8.0"}
    assert web.text() == "prod-a=0.9.0, prod-b=0.8.0 (clusters disagree)"
    assert not read(world).apps["hello"]["prod"].clusters_disagree


def test_an_unreadable_manifest_is_reported_in_its_cell_and_the_rest_is_read(world: World) -> None:
    estate = read(world)
    broken = estate.apps["broken"]
    assert broken["dev"].version == "3.0.0"
    assert broken["test"].text() == "error" and broken["test"].clusters == {}
    [(app, env, cluster, why)] = estate.errors()
    assert (app, env, cluster) == ("broken", "test", "preprod")
    assert f"{ROOT}/test/preprod/broken.yaml holds 2 YAML documents" in why
    assert broken["test"].missing_clusters == ()  # its manifest is there, only unreadable
    with pytest.raises(ManifestError, match=r"^1 manifest of the GitOps repository at \w{12} could not be read"):
        estate.require_readable()


def test_an_app_without_a_manifest_in_a_cluster_its_environment_has_is_flagged(world: World) -> None:
    estate = read(world)
    # Every directory under an environment is one of its clusters, app manifests or not; files beside them and
    # directories deeper in a cluster are not.
    assert estate.clusters == {
        "dev": ("preprod",),
        "test": ("preprod",),
        "prod": ("prod-a", "prod-b"),
        "qa": ("qa-1", "qa-2"),
    }
    solo, hello = estate.apps["solo"]["prod"], estate.apps["hello"]
    assert solo.missing_clusters == ("prod-b",) and solo.version == "0.1.0"
    assert solo.text() == "0.1.0 (missing in prod-b)"
    assert hello["qa"].text() == "0.2.0 (missing in qa-2)"
    assert hello["prod"].missing_clusters == () and estate.apps["web"]["prod"].missing_clusters == ()
    assert estate.missing() == [("hello", "qa", "qa-2"), ("solo", "prod", "prod-b")]
    disagreeing = Placement({"a": "1.0.0", "b": "0.9.0"}, missing_clusters=("c", "d"))
    assert disagreeing.text() == "a=1.0.0, b=0.9.0 (clusters disagree) (missing in c, d)"
    assert Placement({}, errors={"a": "broken"}, missing_clusters=("b",)).text() == "error (missing in b)"


def test_read_files_under_reads_every_file_below_a_directory_and_nothing_else(world: World) -> None:
    mirror = Mirror.open(world.remote.url, world.cache / "direct")
    mirror.fetch()
    files = mirror.read_files_under("main", f"{ROOT}/prod/")
    clusters_and_apps = ["prod-a/hello", "prod-a/solo", "prod-a/web", "prod-b/hello", "prod-b/web"]
    assert sorted(files) == [f"{ROOT}/prod/{cluster_and_app}.yaml" for cluster_and_app in clusters_and_apps]
    assert files[f"{ROOT}/prod/prod-b/web.yaml"] == world.remote.read(f"{ROOT}/prod/prod-b/web.yaml")
    assert mirror.read_files_under("main", "no/such/dir") == {}
    assert mirror.read_files_under("main", "registry/*/prod") == {}  # a prefix is a path, never a pattern
    everything = set(mirror.read_files_under("main", ROOT)) | {"README.md", ALLOWED_SIGNERS_PATH}
    assert set(mirror.read_files_under("main", "")) == everything


def test_status_all_prints_the_table_without_prefect_or_the_registry(world: World) -> None:
    code, output, prefect_imported = cli_in_fresh_process("status", "--all", "--config", str(world.config_path))
    assert code == ManifestError.exit_code, output  # a manifest is unreadable: the whole table, then the exit code
    assert not prefect_imported
    lines = output.splitlines()
    assert lines[0].split() == ["app", "dev", "test", "prod", "qa"]
    rows = {line.split()[0]: line for line in lines[1:6]}
    assert rows["hello"].split() == ["hello", "0.2.0", "✓", "0.1.1", "✗", "0.1.0", "0.2.0", "(missing", "in", "qa-2)"]
    assert "prod-a=0.9.0, prod-b=0.8.0 (clusters disagree)" in rows["web"]
    assert rows["solo"].split() == ["solo", "-", "-", "0.1.0", "(missing", "in", "prod-b)", "-"]
    assert rows["broken"].split()[:3] == ["broken", "3.0.0", "error"]
    assert "\nmissing manifests: 2 (cells marked 'missing in C': " in output
    assert "error: broken in test/preprod: " in output and "holds 2 YAML documents" in output


def test_status_all_json_has_every_app_and_every_environment(world: World) -> None:
    code, output, prefect_imported = cli_in_fresh_process("status", "--all", "--json", "-c", str(world.config_path))
    assert code == ManifestError.exit_code, output
    assert not prefect_imported
    printed = json.loads(output)
    assert printed["commit"] == world.remote.head()
    assert printed["environments"] == ["dev", "test", "prod", "qa"]
    by_app = {entry["app"]: entry["environments"] for entry in printed["apps"]}
    assert list(by_app) == ["broken", "fresh", "hello", "solo", "web"]
    assert printed["clusters"] == {
        "dev": ["preprod"],
        "test": ["preprod"],
        "prod": ["prod-a", "prod-b"],
        "qa": ["qa-1", "qa-2"],
    }
    assert printed["summary"] == {"apps": 5, "unreadable_manifests": 1, "missing_manifests": 2}
    assert by_app["hello"]["dev"] == {
        "version": "0.2.0",
        "verdict": "verified",
        "clusters": {"preprod": "0.2.0"},
        "clusters_disagree": False,
        "errors": {},
        "missing_clusters": [],
    }
    assert by_app["solo"]["prod"]["missing_clusters"] == ["prod-b"] and by_app["solo"]["prod"]["version"] == "0.1.0"
    assert by_app["web"]["test"] is None  # every environment listed, null where the app has no manifest
    assert by_app["web"]["prod"]["clusters_disagree"] is True and by_app["web"]["prod"]["version"] is None
    assert list(by_app["broken"]["test"]["errors"]) == ["preprod"]


def promo(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``promo ARGS`` through its entry point, in process: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["promo", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    captured = capsys.readouterr()
    return exited.value.code or 0, captured.out, captured.err


@pytest.mark.parametrize("output", [[], ["--json"]], ids=["table", "json"])
def test_status_all_exits_non_zero_after_the_whole_estate_when_a_manifest_is_unreadable(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], output: list[str]
) -> None:
    code, out, err = promo(monkeypatch, capsys, "status", "--all", *output, "-c", str(world.config_path))
    assert code == ManifestError.exit_code == 3
    assert err.splitlines() == [
        f"promo: error: 1 manifest of the GitOps repository at {world.remote.head()[:12]} could not be read (each "
        "error is shown above); fix it in the GitOps repository and run promo status --all again; every other cell "
        "is current"
    ]
    if output:
        assert len(json.loads(out)["apps"]) == 5  # the JSON is printed whole before the exit
    else:
        assert out.splitlines()[-1].startswith("error: broken in test/preprod: ")


def test_status_all_exits_zero_when_every_manifest_reads_even_with_an_app_missing_from_a_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        f"{ROOT}/prod/prod-a/hello.yaml": application("hello", "prod", "0.1.0"),
        f"{ROOT}/prod/prod-a/web.yaml": application("web", "prod", "1.0.0"),
        f"{ROOT}/prod/prod-b/web.yaml": application("web", "prod", "1.0.0"),
    }
    remote = make_remote(tmp_path / "gitops", files)
    settings = {
        "app": "hello",
        "app_repo": {"url": (tmp_path / "no-app-repo.git").as_uri()},
        "gitops": {"url": remote.url, "root": ROOT},
        "chart": {"path": "charts/hello", "repository": "127.0.0.1:9/charts"},
        "image": {"repository": "127.0.0.1:9/hello"},
        "environments": [{"name": "dev", "clusters": ["preprod"]}, {"name": "prod", "clusters": ["prod-a", "prod-b"]}],
        "cache_dir": str(tmp_path / "cache"),
    }
    (tmp_path / "promo.yaml").write_text(json.dumps(settings))
    code, out, err = promo(monkeypatch, capsys, "status", "--all", "-c", str(tmp_path / "promo.yaml"))
    assert (code, err) == (0, ""), err
    assert out.splitlines()[1].split() == ["hello", "0.1.0", "(missing", "in", "prod-b)"]
    assert out.splitlines()[-1].startswith("missing manifests: 1 (cells marked 'missing in C': ")
