"""Chart packaging: reproducible bytes, Helm's ignore rules, Chart.yaml edited in place, and create-only pushes."""

from __future__ import annotations

import difflib
import gzip
import io
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from promo.registry.charts import ChartPackage, package_chart, read_chart, read_chart_metadata, retag_chart
from promo.errors import ChartError, ConflictError, InputError
from promo.registry.helm import existing_chart, push_chart
from promo.registry.oci import Registry
from promo.local.registry import RegistryServer

CHART_YAML = """\
# The demo chart; comments survive packaging.
apiVersion: v2
name: {name}
description: A tiny chart for tests
type: application
version: 0.0.0-dev  # set by promo at package time
maintainers:
    - name: Ops
      email: ops@example.com
keywords: [demo, test]
"""


def write_chart(root: Path, name: str = "demo", chart_yaml: str | None = None) -> Path:
    """A tiny chart in ``root/name``: Chart.yaml, values, one template, and files .helmignore rules can drop."""
    chart = root / name
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML.format(name=name) if chart_yaml is None else chart_yaml)
    (chart / "values.yaml").write_text("image:\n  tag: latest\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
    )
    return chart


def members(package: ChartPackage) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(package.data), mode="r:gz") as tar:
        return tar.getmembers()


def changed_lines(before: bytes, after: bytes) -> list[str]:
    diff = difflib.ndiff(before.decode().splitlines(), after.decode().splitlines())
    return [line for line in diff if line[:1] in "+-"]


def test_same_inputs_give_identical_bytes(tmp_path: Path) -> None:
    chart = write_chart(tmp_path / "a")
    first = package_chart(chart, version="1.2.3", app_version="1.2.3")
    copy = tmp_path / "b" / "demo"
    shutil.copytree(chart, copy)
    for path in copy.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000))
    (copy / "values.yaml").chmod(0o600)

    assert package_chart(chart, version="1.2.3", app_version="1.2.3").data == first.data
    assert package_chart(copy, version="1.2.3", app_version="1.2.3").data == first.data
    assert first.filename == "demo-1.2.3.tgz"
    assert first.digest.startswith("sha256:") and len(first.digest) == 71


def test_archive_has_only_normalised_file_entries_chart_yaml_first(tmp_path: Path) -> None:
    package = package_chart(write_chart(tmp_path), version="1.0.0", app_version="abc123")

    entries = members(package)
    assert [m.name for m in entries] == ["demo/Chart.yaml", "demo/templates/configmap.yaml", "demo/values.yaml"]
    assert {(m.type, m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) for m in entries} == {
        (tarfile.REGTYPE, 0o644, 0, 0, 0, "", "")
    }
    header = package.data[:10]
    assert header[3] & 0x08 == 0, "no file name in the gzip header"
    assert header[4:8] == b"\0\0\0\0", "gzip mtime is 0"
    assert gzip.decompress(package.data)  # a well-formed gzip stream


def test_helmignore_rules_and_helm_defaults(tmp_path: Path) -> None:
    chart = write_chart(tmp_path)
    (chart / ".helmignore").write_text("# editor files\n*.bak\nci/\n/secret.txt\ntemplates/*.md\n\n")
    for path in ("values.bak", "ci/test-values.yaml", "secret.txt", "docs/secret.txt", "templates/NOTES.md",
                 "templates/.swp", "templates/sub/.keep", "templates/NOTES.txt"):  # fmt: skip
        (chart / path).parent.mkdir(parents=True, exist_ok=True)
        (chart / path).write_text("x\n")

    files = read_chart(package_chart(chart, version="1.0.0", app_version="1").data).files

    assert sorted(files) == [
        "demo/.helmignore",  # Helm packages the ignore file itself
        "demo/Chart.yaml",
        "demo/docs/secret.txt",  # a rooted rule matches only at the top
        "demo/templates/NOTES.txt",
        "demo/templates/configmap.yaml",
        "demo/templates/sub/.keep",  # Helm's default drops dotfiles directly in templates/ only
        "demo/values.yaml",
    ]


@pytest.mark.parametrize("rule", ["!values.yaml", "templates/**/*.md", "[z-a]"])
def test_helmignore_rules_helm_cannot_honour_are_refused(tmp_path: Path, rule: str) -> None:
    chart = write_chart(tmp_path)
    (chart / ".helmignore").write_text(f"{rule}\n")

    with pytest.raises(ChartError, match="helmignore"):
        package_chart(chart, version="1.0.0", app_version="1")


def test_only_version_and_app_version_change_in_chart_yaml(tmp_path: Path) -> None:
    chart = write_chart(tmp_path)
    original = (chart / "Chart.yaml").read_bytes()

    package = package_chart(chart, version="2.0.0-rc.1+build.7", app_version="1.0")
    packaged = read_chart(package.data)

    assert changed_lines(original, packaged.files["demo/Chart.yaml"]) == [
        "- version: 0.0.0-dev  # set by promo at package time",
        "+ version: 2.0.0-rc.1+build.7  # set by promo at package time",
        '+ appVersion: "1.0"',  # quoted: a bare 1.0 would read back as a float
    ]
    assert (packaged.name, packaged.version, packaged.app_version) == ("demo", "2.0.0-rc.1+build.7", "1.0")
    assert packaged.files["demo/values.yaml"] == (chart / "values.yaml").read_bytes()


def test_existing_app_version_is_replaced_in_place_keeping_its_quotes(tmp_path: Path) -> None:
    chart = write_chart(tmp_path, chart_yaml="apiVersion: v2\nname: demo\nappVersion: 'old'\nversion: \"0.1.0\"\n")

    packaged = read_chart(package_chart(chart, version="0.2.0", app_version="sha-1f2e").data)

    expected = b"apiVersion: v2\nname: demo\nappVersion: 'sha-1f2e'\nversion: \"0.2.0\"\n"
    assert packaged.files["demo/Chart.yaml"] == expected


def test_retag_changes_only_the_version_line(tmp_path: Path) -> None:
    chart = write_chart(tmp_path)
    original = package_chart(chart, version="1.4.0-rc.2", app_version="9f8e7d")

    retagged = retag_chart(original.data, "1.4.0")

    before, after = read_chart(original.data), read_chart(retagged.data)
    assert changed_lines(before.files["demo/Chart.yaml"], after.files["demo/Chart.yaml"]) == [
        "- version: 1.4.0-rc.2  # set by promo at package time",
        "+ version: 1.4.0  # set by promo at package time",
    ]
    assert {p: d for p, d in after.files.items() if p != "demo/Chart.yaml"} == {
        p: d for p, d in before.files.items() if p != "demo/Chart.yaml"
    }
    assert (retagged.name, retagged.version, retagged.app_version) == ("demo", "1.4.0", "9f8e7d")
    # Retagging reproduces exactly what packaging at that version gives.
    assert retagged.data == package_chart(chart, version="1.4.0", app_version="9f8e7d").data


@pytest.mark.parametrize(
    ("chart_yaml", "expected"),
    [
        (None, "cannot read"),
        ("name: demo\nversion: [1\n", "not valid YAML"),
        ("- name: demo\n", "not a YAML mapping"),
        ("apiVersion: v2\nversion: 1.0.0\n", "has no name"),
        ("apiVersion: v2\nname: demo\n", "has no version"),
        ("apiVersion: v2\nname: demo\nversion: 1.0\n", "version that is not a string"),
    ],
)
def test_bad_chart_yaml_is_a_one_line_chart_error(tmp_path: Path, chart_yaml: str | None, expected: str) -> None:
    chart = tmp_path / "demo"
    chart.mkdir()
    if chart_yaml is not None:
        (chart / "Chart.yaml").write_text(chart_yaml)

    with pytest.raises(ChartError, match=expected) as caught:
        read_chart_metadata(chart)
    with pytest.raises(ChartError):
        package_chart(chart, version="1.0.0", app_version="1")

    message = str(caught.value)
    assert "\n" not in message and caught.value.fix and message.endswith(caught.value.fix)


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0.0", "latest", "01.0.0"])
def test_non_semver_version_is_an_input_error(tmp_path: Path, version: str) -> None:
    chart = write_chart(tmp_path)
    package = package_chart(chart, version="1.0.0", app_version="1")

    with pytest.raises(InputError, match="SemVer"):
        package_chart(chart, version=version, app_version="1")
    with pytest.raises(InputError, match="SemVer"):
        retag_chart(package.data, version)


def test_read_chart_refuses_what_is_not_a_chart(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("demo/values.yaml")
        tar.addfile(info, io.BytesIO(b""))

    with pytest.raises(ChartError, match="not a gzipped tar"):
        read_chart(b"definitely not a tarball")
    with pytest.raises(ChartError, match="has no demo/Chart.yaml"):
        read_chart(buffer.getvalue())
    with pytest.raises(ChartError, match="not a gzipped tar"):
        read_chart(package_chart(write_chart(tmp_path), version="1.0.0", app_version="1").data[:200])


class RecordingTransport(httpx.HTTPTransport):
    """Every request the client sends to the real registry, as (method, path)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        return super().handle_request(request)

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.requests if method not in ("GET", "HEAD")]


@pytest.fixture
def recorded(registry_server: RegistryServer) -> Iterator[tuple[Registry, RecordingTransport]]:
    transport = RecordingTransport()
    with Registry(registry_server.host, transport=transport) as client:
        yield client, transport


def test_pushing_a_chart_again_writes_nothing(recorded, tmp_path: Path) -> None:
    """A tag already holding this manifest is not PUT again: ECR repositories with immutable tags refuse that."""
    registry, transport = recorded
    repository = f"immutable-{uuid.uuid4().hex[:8]}/demo"
    package = package_chart(write_chart(tmp_path), version="1.0.0", app_version="abc")
    pushed = push_chart(registry, repository, package)
    assert ("PUT", f"/v2/{repository}/manifests/1.0.0") in transport.writes() and not pushed.reused
    transport.requests.clear()

    again = push_chart(registry, repository, package)

    assert transport.writes() == []
    assert (again.digest, again.reused) == (pushed.digest, True)
    assert existing_chart(registry, repository, "1.0.0") == again


def test_a_pushed_chart_is_never_replaced(recorded, tmp_path: Path) -> None:
    registry, transport = recorded
    repository = f"immutable-{uuid.uuid4().hex[:8]}/demo"
    first, other = (package_chart(write_chart(tmp_path / v), version="1.0.0", app_version=v) for v in "ab")
    pushed = push_chart(registry, repository, first)
    transport.requests.clear()

    with pytest.raises(ConflictError) as refused:
        push_chart(registry, repository, other)

    where = f"{registry.host}/{repository}"
    assert str(refused.value).startswith(f"chart demo 1.0.0 is already in {where} as {pushed.digest}")
    assert "never replaced" in str(refused.value) and "\n" not in str(refused.value)
    assert transport.writes() == []
    assert registry.manifest_digest(repository, "1.0.0") == pushed.digest
