"""Release decisions and the app repository's chart version, on real bare remotes."""

import re
from pathlib import Path
from threading import Barrier, Thread

import pytest

from promo.gitops.app_repo import change_chart_version, read_chart_yaml
from promo.registry.charts import package_chart, retag_chart, retag_differences
from promo.errors import ChartError, InputError
from promo.gitops.mirror import Mirror
from promo.release.candidate import ReleaseCandidate, next_main_version
from promo.versions import bump
from tests.core.test_charts import write_chart
from tests.fixtures.gitrepos import make_remote

CHART_YAML = "# the sample chart\napiVersion: v2\nname: hello\nversion: 1.2.3  # bumped by promo\nappVersion: \"0.0.0\"\n"


def test_the_release_comes_from_the_rc_itself():
    candidate = ReleaseCandidate.of("1.2.3-rc.abc1234", "stage")
    assert (candidate.version, candidate.tag, candidate.short_sha) == ("1.2.3", "v1.2.3", "abc1234")


@pytest.mark.parametrize("version", ["1.2.3", "1.2.3-beta.1", "1.2.3-rc.abc1234+build"])
def test_stage_holding_a_non_rc_is_refused(version):
    with pytest.raises(InputError, match=re.escape(f"stage runs {version}, which is not a release candidate")):
        ReleaseCandidate.of(version, "stage")


@pytest.mark.parametrize(
    ("main", "released", "expected"),
    [("1.2.3", "1.2.3", "1.2.4"), ("1.2.4", "1.2.3", None), ("1.3.0", "1.2.4", None), ("1.2.2", "1.2.3", "1.2.4")],
)
def test_main_is_bumped_only_while_not_past_the_release(main, released, expected):
    assert next_main_version(main, released) == expected


def test_a_faithful_retag_has_no_differences_and_a_tampered_one_is_caught(tmp_path: Path):
    rc = package_chart(write_chart(tmp_path / "c", "hello"), version="1.2.3-rc.abc1234", app_version="abc1234").data
    assert retag_differences(rc, retag_chart(rc, "1.2.3").data, "1.2.3") == []
    other = package_chart(write_chart(tmp_path / "d", "hello"), version="1.2.3", app_version="fff9999").data
    assert retag_differences(rc, other, "1.2.3") == ["hello/Chart.yaml differs"]


@pytest.fixture()
def app_remote(tmp_path: Path):
    return make_remote(tmp_path / "app", {"charts/hello/Chart.yaml": CHART_YAML})


def test_change_chart_version_changes_one_value_and_is_computed_on_the_head(app_remote, tmp_path: Path):
    mirror = Mirror.open(app_remote.url, tmp_path / "cache")
    change = change_chart_version(mirror, "main", "charts/hello", lambda v: bump(v, "minor"), "chore: bump chart version (minor)")
    assert (change.before, change.after) == ("1.2.3", "1.3.0")
    assert app_remote.read("charts/hello/Chart.yaml") == CHART_YAML.replace("1.2.3", "1.3.0")
    assert app_remote.git("log", "-1", "--format=%s").strip() == "chore: bump chart version (minor)"
    again = change_chart_version(mirror, "main", "charts/hello", lambda v: next_main_version(v, "1.2.3"), "x")
    assert not again.changed and again.before == "1.3.0"
    assert read_chart_yaml(mirror, "main", "charts/hello")["version"] == "1.3.0"


def test_two_bumps_at_once_both_apply(app_remote, tmp_path: Path):
    barrier = Barrier(2)

    def bump_patch(cache: str) -> None:
        mirror = Mirror.open(app_remote.url, tmp_path / cache)
        barrier.wait()
        change_chart_version(mirror, "main", "charts/hello", lambda v: bump(v, "patch"), "chore: bump chart version (patch)")

    threads = [Thread(target=bump_patch, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "version: 1.2.5" in app_remote.read("charts/hello/Chart.yaml")


def test_a_missing_chart_yaml_is_a_chart_error(app_remote, tmp_path: Path):
    mirror = Mirror.open(app_remote.url, tmp_path / "cache")
    mirror.fetch()
    with pytest.raises(ChartError, match="charts/other/Chart.yaml does not exist"):
        read_chart_yaml(mirror, "main", "charts/other")
