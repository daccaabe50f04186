"""Reading and setting the chart version of Argo CD Applications: only the value's bytes may ever change."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from promo.errors import InputError, ManifestError
from promo.gitops.manifests import (
    _locate,
    _simple_target_revision,
    diff_manifest,
    manifest_path,
    read_target_revision,
    set_target_revision,
    validate_name,
)
from tests.fixtures.gitrepos import application

MULTI_SOURCE = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: hello-test, namespace: argocd}
spec:
  sources:
    # values live in git, next to the manifests
    - repoURL: https://github.com/acme/gitops.git
      targetRevision: HEAD
      ref: values
    - repoURL: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/charts
      chart: hello
      targetRevision: '0.1.0'  # chart version
      helm:
        valueFiles: [$values/hello/values-test.yaml]
    - repoURL: https://github.com/acme/extras.git
      path: manifests/hello
      targetRevision: main
  destination: {server: https://kubernetes.default.svc, namespace: hello}
"""

WITH_STATUS = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: hello
status:
  sync:
    status: Synced
    comparedTo:
      source:
        chart: hello
        targetRevision: 0.1.0
spec:
  source:
    chart: hello
    repoURL: charts.example.com
    targetRevision: 0.1.0
"""


def test_valid_names_pass_through() -> None:
    assert validate_name("app", "hello-world-2") == "hello-world-2"
    assert validate_name("cluster", "a" * 63) == "a" * 63


@pytest.mark.parametrize("name", ["../x", "a/b", "prod;rm", "has space", "", "Hello", "-a", "a-", "a" * 64, "a.b"])
def test_path_like_and_shell_like_names_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="not a DNS label") as info:
        validate_name("environment", name)
    assert repr(name) in str(info.value)


def test_manifest_path_stays_inside_the_root() -> None:
    assert manifest_path("test", "preprod", "hello") == PurePosixPath("registry/environments/test/preprod/hello.yaml")
    assert manifest_path("prod", "eu-1", "hello", root="apps") == PurePosixPath("apps/prod/eu-1/hello.yaml")
    for env, cluster, app in [("..", "preprod", "hello"), ("test", "../etc", "hello"), ("test", "preprod", "x/../y")]:
        with pytest.raises(InputError):
            manifest_path(env, cluster, app)


@pytest.mark.parametrize("quote", ['"', "'", ""])
def test_set_changes_only_the_value_and_keeps_its_quote_style(quote: str) -> None:
    before = application("hello", "test", "0.1.0-rc.def5678", quote=quote)
    after = set_target_revision(before, "0.2.0-rc.abc1234", source="hello.yaml")
    old_line = f"targetRevision: {quote}0.1.0-rc.def5678{quote}   # the chart version"
    new_line = f"targetRevision: {quote}0.2.0-rc.abc1234{quote}   # the chart version"
    assert before.count(old_line) == 1
    assert after == before.replace(old_line, new_line)
    assert read_target_revision(after) == "0.2.0-rc.abc1234"


def test_crlf_document_markers_and_missing_final_newline_are_kept() -> None:
    lines = ["\ufeff---", "kind: Application", "spec:", "  source:", "    chart: hello", "    targetRevision: 1.0.0"]
    before = "\r\n".join([*lines, "...", "# end"])
    after = set_target_revision(before, "1.10.0")
    assert after == before.replace("targetRevision: 1.0.0", "targetRevision: 1.10.0")
    assert read_target_revision(after) == "1.10.0"  # read as text: never the float 1.1


def test_multi_source_application_updates_the_chart_source_only() -> None:
    assert read_target_revision(MULTI_SOURCE) == "0.1.0"
    after = set_target_revision(MULTI_SOURCE, "0.2.0")
    assert after == MULTI_SOURCE.replace("targetRevision: '0.1.0'", "targetRevision: '0.2.0'")
    assert "targetRevision: HEAD" in after and "targetRevision: main" in after


NATIVE_OCI = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: hello-test
spec:
  project: default
  sources:
    - repoURL: https://git.example.com/hello-values.git
      targetRevision: main
      ref: values
    - repoURL: oci://registry.example.com/charts/hello  # Argo CD 3.1+ OCI source: no chart key
      targetRevision: "0.1.0-rc.abc1234"
      path: .
      helm:
        valueFiles: [$values/test.yaml]
  destination: {name: preprod, namespace: hello-test}
"""


def test_a_native_oci_source_is_the_chart_source() -> None:
    assert read_target_revision(NATIVE_OCI) == "0.1.0-rc.abc1234"
    after = set_target_revision(NATIVE_OCI, "0.2.0-rc.def5678")
    assert after == NATIVE_OCI.replace('"0.1.0-rc.abc1234"', '"0.2.0-rc.def5678"')
    single = APP + "spec:\n  source:\n    repoURL: oci://registry.example.com/charts/hello\n    targetRevision: 1.0.0\n"
    assert read_target_revision(set_target_revision(single, "1.0.1")) == "1.0.1"


def test_status_block_is_never_read_or_touched() -> None:
    after = set_target_revision(WITH_STATUS, "0.2.0")
    spec_at = WITH_STATUS.index("spec:")
    assert after[:spec_at] == WITH_STATUS[:spec_at]
    assert after[spec_at:] == WITH_STATUS[spec_at:].replace("0.1.0", "0.2.0")
    assert read_target_revision(after) == "0.2.0"


def test_an_empty_string_means_nothing_deployed_yet_and_can_be_set() -> None:
    before = application("hello", "dev", "")
    assert read_target_revision(before) == ""
    after = set_target_revision(before, "0.1.0-rc.abc1234")
    assert after == before.replace('targetRevision: ""', 'targetRevision: "0.1.0-rc.abc1234"')


def test_setting_the_same_version_returns_identical_text() -> None:
    before = application("hello", "test", "0.1.0")
    assert set_target_revision(before, "0.1.0") == before


@pytest.mark.parametrize("version", ["", "1.0 # x", "1.0\nkind: x", '1"', "-1.0", "a b"])
def test_versions_that_could_break_the_yaml_are_refused(version: str) -> None:
    with pytest.raises(InputError, match="cannot be written to hello.yaml"):
        set_target_revision(application("hello", "test", "0.1.0"), version, source="hello.yaml")


APP = "kind: Application\n"
BROKEN = {
    "broken YAML": ("kind: Application\nspec: [unclosed\n", "not valid YAML"),
    "a list document": ("- kind: Application\n", "the document is a list"),
    "an empty file": ("", "the document is empty"),
    "several documents": (APP + "---\n" + APP, "holds 2 YAML documents .*; keep one Application per file"),
    "a merged targetRevision": (
        "x-version: &v {targetRevision: 0.1.0}\n" + APP + "spec:\n  source: {<<: *v, chart: hello, repoURL: r}\n",
        r"targetRevision comes from a YAML merge key \(<<:\) in the mapping at line 4.*; write targetRevision: in",
    ),
    "a merged chart": (
        "x-chart: &chart {chart: hello}\n" + APP + "spec:\n  sources:\n  - {<<: *chart, targetRevision: 1}\n",
        r"chart comes from a YAML merge key \(<<:\)",
    ),
    "a merged source, nested": (
        "x-a: &a {source: {chart: a, targetRevision: 1}}\nx-b: &b {<<: *a}\n" + APP + "spec: {<<: [*b]}\n",
        r"source comes from a YAML merge key \(<<:\)",
    ),
    "another kind": ("kind: Deployment\nspec: {}\n", r"kind: Deployment"),
    "no spec": (APP + "metadata: {name: hello}\n", "no spec mapping"),
    "git source only": (APP + "spec:\n  source: {repoURL: x, path: charts/hello, targetRevision: HEAD}\n", "no chart"),
    "git sources only": (APP + "spec:\n  sources:\n  - {repoURL: x, ref: values, targetRevision: HEAD}\n", "no chart"),
    "no targetRevision": (APP + "spec:\n  source: {repoURL: x, chart: hello}\n", "no targetRevision"),
    "empty targetRevision": (APP + "spec:\n  source: {chart: hello, targetRevision: }\n", "no targetRevision"),
    "several chart sources": (
        APP + "spec:\n  sources:\n  - {chart: a, targetRevision: 1}\n  - {chart: b, targetRevision: 2}\n",
        "several chart sources",
    ),
    "a chart and a native OCI source": (
        APP + "spec:\n  sources:\n  - {chart: a, targetRevision: 1}\n  - {repoURL: 'oci://r/b', targetRevision: 2}\n",
        "several chart sources \\('a', 'oci://r/b'\\)",
    ),
    "source and sources": (APP + "spec:\n  source: {chart: a, targetRevision: 1}\n  sources: []\n", "both"),
    "a repeated key": (APP + "spec:\n  source: {chart: a, targetRevision: 1, targetRevision: 2}\n", "repeats"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_manifests_that_cannot_be_read_safely_name_the_file_and_the_fix(case: str) -> None:
    text, cause = BROKEN[case]
    operations = [
        lambda: read_target_revision(text, "env/hello.yaml"),
        lambda: set_target_revision(text, "1.0.0", "env/hello.yaml"),
    ]
    for operation in operations:
        with pytest.raises(ManifestError, match=cause) as info:
            operation()
        assert "env/hello.yaml" in str(info.value)
        assert info.value.fix


SHARED = {
    "an alias": (
        "x-version: &ver 0.1.0\n" + APP + "spec:\n  source:\n    chart: hello\n    targetRevision: *ver\n",
        r"targetRevision is the alias \*ver of the value at line 1, .*; write the chart version on targetRevision",
    ),
    "an anchor used again": (
        APP + "spec:\n  source:\n    chart: hello\n    targetRevision: &ver 0.1.0\n    helm: {parameters: "
        "[{name: tag, value: *ver}]}\n",
        r"anchored \(&ver\) and used again through \*ver, so changing it would change those uses too",
    ),
    "a shared chart source": (
        "x-source: &src {chart: hello, targetRevision: 0.1.0}\n" + APP + "spec:\n  source: *src\n",
        r"shared through a YAML anchor and alias \(&src, line 1\)",
    ),
    "a shared sources item": (
        "x-source: &src {chart: hello, targetRevision: 0.1.0}\n" + APP + "spec:\n  sources: [{ref: v}, *src]\n",
        r"shared through a YAML anchor and alias \(&src, line 1\)",
    ),
}


@pytest.mark.parametrize("case", SHARED)
def test_a_target_revision_shared_through_an_alias_is_read_but_never_edited(case: str) -> None:
    text, cause = SHARED[case]
    assert read_target_revision(text) == "0.1.0"  # reading follows the alias, as Argo CD does
    with pytest.raises(ManifestError, match=cause) as info:
        set_target_revision(text, "0.2.0", "env/hello.yaml")
    assert str(info.value).startswith("env/hello.yaml: ")


@pytest.mark.parametrize("properties", ["&ver ", "!!str ", "!!str &ver "])
def test_an_anchor_or_tag_nobody_refers_to_is_kept_and_only_the_value_changes(properties: str) -> None:
    before = APP + f'spec:\n  source:\n    chart: hello\n    targetRevision: {properties}"0.1.0"  # version\n'
    after = set_target_revision(before, "0.2.0")
    assert after == before.replace(f'{properties}"0.1.0"', f'{properties}"0.2.0"')
    assert read_target_revision(after) == "0.2.0"


def test_keys_written_beside_a_merge_key_are_the_ones_read_and_edited() -> None:
    before = (
        "x-defaults: &defaults {repoURL: charts.example.com, chart: other, targetRevision: 9.9.9}\n"
        + APP
        + "spec:\n  source:\n    <<: *defaults\n    chart: hello\n    targetRevision: 0.1.0\n"
    )
    assert read_target_revision(before) == "0.1.0"
    assert set_target_revision(before, "0.2.0") == before.replace("targetRevision: 0.1.0", "targetRevision: 0.2.0")


def test_a_document_marker_with_nothing_after_it_is_not_a_second_document() -> None:
    before = application("hello", "test", "0.1.0") + "---\n"
    assert set_target_revision(before, "0.2.0") == before.replace('"0.1.0"', '"0.2.0"')


def test_diff_shows_the_one_changed_line() -> None:
    before = application("hello", "test", "0.1.0")
    diff = diff_manifest("test/preprod/hello.yaml", before, set_target_revision(before, "0.2.0"))
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert diff.startswith("--- a/test/preprod/hello.yaml\n+++ b/test/preprod/hello.yaml\n")
    assert changed == [
        '-    targetRevision: "0.1.0"   # the chart version',
        '+    targetRevision: "0.2.0"   # the chart version',
    ]
    assert diff_manifest("x.yaml", before, before) == ""


# The fast reader: generated manifests in the plain subset of YAML are read without ruamel, and everything else goes
# to the full parser, so the answer is the full parser's in every case.
PLAIN = """\
# generated
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: hello-test   # a comment
  labels:
    app.kubernetes.io/name: hello
  finalizers:
  - resources-finalizer.argocd.argoproj.io
spec:
  project: 'default'

  source:
    repoURL: https://charts.example.com/x:y
    chart: hello
    targetRevision: {value}
    helm:
      releaseName: hello
  syncPolicy:
    syncOptions:
      - CreateNamespace=true
"""
FAST_CASES = {
    "plain": (PLAIN.format(value="1.2.3"), "1.2.3"),
    "double quoted": (PLAIN.format(value='"1.2.3"  # version'), "1.2.3"),
    "single quoted": (PLAIN.format(value="'1.2.3'"), "1.2.3"),
    "nothing deployed": (PLAIN.format(value='""'), ""),
    "a float-looking version": (PLAIN.format(value="1.10"), "1.10"),
    "targetRevision elsewhere first": (
        PLAIN.format(value="2.0.0").replace("metadata:\n", "metadata:\n  x:\n    targetRevision: 9.9.9\n"),
        "2.0.0",
    ),
}
FULL_PARSER_CASES = {
    "a flow mapping": application("hello", "test", "1.2.3"),
    "an anchor": PLAIN.format(value="&v 1.2.3"),
    "a tag": PLAIN.format(value="!!str 1.2.3"),
    "escapes": PLAIN.format(value='"1.2\\x33"'),
    "a doubled single quote": PLAIN.format(value="'1.2''3'"),
    "a multi-line plain value": PLAIN.format(value="1.2.3\n      continued"),
    "a document marker": "---\n" + PLAIN.format(value="1.2.3"),
    "several documents": PLAIN.format(value="1.2.3") + "---\n" + PLAIN.format(value="1.2.4"),
    "a repeated key": PLAIN.format(value="1.2.3\n    targetRevision: 1.2.4"),
    "null": PLAIN.format(value="null"),
    "no value": PLAIN.format(value=""),
    "a bad dedent": PLAIN.format(value="1.2.3").replace("    helm:\n", "   helm:\n"),
    "a deeper line after a value": PLAIN.format(value="1.2.3").replace("hello-test   # a comment", "x\n    y: z"),
    "CRLF": PLAIN.format(value="1.2.3").replace("\n", "\r\n"),
    "a tab": PLAIN.format(value="1.2.3").replace("  project", "\tproject"),
    "sources": PLAIN.format(value="1.2.3").replace("  source:\n", "  sources:\n"),
    "another kind": PLAIN.format(value="1.2.3").replace("kind: Application", "kind: Deployment"),
    "a merge key": PLAIN.format(value="1.2.3").replace("    chart: hello\n", "    <<: *x\n"),
    "a trailing colon": PLAIN.format(value="1.2.3:"),
} | {name: text for name, (text, _) in BROKEN.items()}


@pytest.mark.parametrize("case", FAST_CASES)
def test_plain_manifests_are_read_without_the_full_parser(case: str) -> None:
    text, version = FAST_CASES[case]
    assert _simple_target_revision(text) == version
    assert _locate(text, "x").revision.value == version  # the full parser agrees


@pytest.mark.parametrize("case", FULL_PARSER_CASES)
def test_anything_beyond_the_plain_subset_goes_to_the_full_parser(case: str) -> None:
    text = FULL_PARSER_CASES[case]
    assert _simple_target_revision(text) is None
    try:
        expected: object = _locate(text, "x").revision.value
    except ManifestError as error:
        expected = type(error)
    try:
        read: object = read_target_revision(text, "x")
    except ManifestError as error:
        read = type(error)
    assert read == expected
