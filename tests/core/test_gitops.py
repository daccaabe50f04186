"""The GitOps repository against real bare remotes: versions, commits, trailers, concurrency, the cache."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from promo.errors import ConflictError, InputError, ManifestError, NotFound, TransientError
from promo.gitops.mirror import Mirror, RetryBudget, Snapshot, redact_url
from promo.gitops.repo import GitOpsRepo, SetVersionResult, Trailers, WriteRequest
from promo.gitops.manifests import set_target_revision
from tests.fixtures.gitrepos import ROOT, GitRemote, application

TEST_HELLO = f"{ROOT}/test/preprod/hello.yaml"
TRAILERS = Trailers(
    promoted_from="dev", chart_version="0.2.0-rc.abc1234", image="ecr/hello@sha256:ab12", approved_by="alice"
)


def repo(remote: GitRemote, cache_dir: Path) -> GitOpsRepo:
    return GitOpsRepo(remote.url, "main", cache_dir)


def promote(
    gitops: GitOpsRepo, version: str, env: str = "test", clusters: tuple[str, ...] = ("preprod",), app: str = "hello"
) -> SetVersionResult:
    """Plan, then write what the plan showed (as a gate approved at once would)."""
    shown = gitops.plan(app, env, list(clusters), version).current
    subject = f"Promote {app} {version} to {env}"
    return gitops.set_version(
        WriteRequest(app, env, list(clusters), version, expected=shown, subject=subject, trailers=TRAILERS)
    )


def changed_lines(remote: GitRemote, commit: str) -> list[str]:
    diff = remote.git("diff", "--unified=0", f"{commit}^", commit)
    return [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_reads_the_version_of_each_environment(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops = repo(gitops_remote, cache_dir)
    assert gitops.environment_version("hello", "dev", ["preprod"]) == "0.2.0-rc.abc1234"
    assert gitops.environment_version("hello", "stage", ["preprod"]) == "0.1.0-rc.0a1b2c3"
    assert gitops.environment_version("hello", "prod", ["prod"]) == "0.1.0"
    assert gitops.clusters_on_disk("test") == ["preprod"]
    assert gitops.clusters_on_disk("nowhere") == []


def test_a_promotion_is_one_commit_changing_only_the_target_revision(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops = repo(gitops_remote, cache_dir)
    before = gitops_remote.read(TEST_HELLO)

    result = promote(gitops, "0.2.0-rc.abc1234")

    assert result.commit == gitops_remote.head() and result.attempts == 1 and not result.already_current
    assert result.changed_paths == (TEST_HELLO,)
    assert gitops_remote.git("show", "--name-only", "--format=", result.commit).split() == [TEST_HELLO]
    assert changed_lines(gitops_remote, result.commit) == [
        '-    targetRevision: "0.1.1-rc.def5678"   # the chart version',
        '+    targetRevision: "0.2.0-rc.abc1234"   # the chart version',
    ]
    assert gitops_remote.read(TEST_HELLO) == before.replace("0.1.1-rc.def5678", "0.2.0-rc.abc1234")
    assert "+    targetRevision: \"0.2.0-rc.abc1234\"" in result.diff
    assert gitops.environment_version("hello", "test", ["preprod"]) == "0.2.0-rc.abc1234"


def test_the_commit_carries_subject_body_author_and_trailers(gitops_remote: GitRemote, cache_dir: Path) -> None:
    commit = promote(repo(gitops_remote, cache_dir), "0.2.0-rc.abc1234").commit
    message = gitops_remote.git("log", "-1", "--format=%B", commit)
    assert message.splitlines()[:2] == ["Promote hello 0.2.0-rc.abc1234 to test", ""]
    assert f"{TEST_HELLO}: 0.1.1-rc.def5678 -> 0.2.0-rc.abc1234" in message
    assert gitops_remote.git("log", "-1", "--format=%an <%ae>|%cn <%ce>", commit).strip() == (
        "promo <promo@localhost>|promo <promo@localhost>"
    )
    trailers = gitops_remote.git("log", "-1", "--format=%(trailers:only,unfold)", commit).strip().splitlines()
    assert trailers == [
        "Promoted-From: dev",
        "Chart-Version: 0.2.0-rc.abc1234",
        "Image: ecr/hello@sha256:ab12",
        "Approved-By: alice",
    ]


def test_trailer_values_cannot_forge_other_trailers() -> None:
    rendered = Trailers(approved_by="mallory\nApproved-By: admin", flow_run="run 1").render()
    assert rendered == "Flow-Run: run 1\nApproved-By: mallory Approved-By: admin"


def test_setting_the_current_version_again_makes_no_commit(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops = repo(gitops_remote, cache_dir)
    promote(gitops, "0.2.0")
    head = gitops_remote.head()

    plan = gitops.plan("hello", "test", ["preprod"], "0.2.0")
    again = promote(gitops, "0.2.0")

    assert plan.already_current and plan.changes == () and plan.diff == ""
    assert again.commit is None and again.already_current and again.changed_paths == ()
    assert "already at 0.2.0" in again.summary
    assert gitops_remote.head() == head


def test_plan_shows_the_diff_without_writing(gitops_remote: GitRemote, cache_dir: Path) -> None:
    head = gitops_remote.head()
    plan = repo(gitops_remote, cache_dir).plan("hello", "stage", ["preprod"], "0.1.1-rc.def5678")
    assert not plan.already_current
    assert [change.path for change in plan.changes] == [f"{ROOT}/stage/preprod/hello.yaml"]
    assert '-    targetRevision: "0.1.0-rc.0a1b2c3"' in plan.diff
    assert '+    targetRevision: "0.1.1-rc.def5678"' in plan.diff
    assert gitops_remote.head() == head


def test_a_multi_cluster_environment_is_updated_in_one_commit(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops_remote.add_manifest("prod", "prod-eu", "hello", "0.1.0")
    gitops_remote.add_manifest("prod", "prod-us", "hello", "0.0.9")  # a lagging cluster is brought along
    gitops = repo(gitops_remote, cache_dir)
    clusters = ("prod", "prod-eu", "prod-us")

    result = promote(gitops, "0.2.0", env="prod", clusters=clusters)

    paths = sorted(f"{ROOT}/prod/{cluster}/hello.yaml" for cluster in clusters)
    assert sorted(result.changed_paths) == paths
    assert sorted(gitops_remote.git("show", "--name-only", "--format=", result.commit).split()) == paths
    assert all("targetRevision" in line for line in changed_lines(gitops_remote, result.commit))
    assert gitops.environment_version("hello", "prod", list(clusters)) == "0.2.0"
    assert gitops.clusters_on_disk("prod") == ["prod", "prod-eu", "prod-us"]


def test_clusters_that_disagree_are_a_conflict(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops_remote.add_manifest("prod", "prod-eu", "hello", "0.0.9")
    with pytest.raises(ConflictError, match="prod=0.1.0, prod-eu=0.0.9"):
        repo(gitops_remote, cache_dir).environment_version("hello", "prod", ["prod", "prod-eu"])


def test_an_environment_with_nothing_deployed_has_no_version(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops_remote.add_manifest("dev", "preprod", "fresh", "")
    gitops_remote.add_manifest("dev", "other", "fresh", "")
    gitops = repo(gitops_remote, cache_dir)
    with pytest.raises(NotFound, match="fresh has no version in dev yet"):
        gitops.environment_version("fresh", "dev", ["preprod", "other"])

    result = promote(gitops, "0.1.0-rc.abc1234", env="dev", clusters=("preprod",), app="fresh")

    assert f"{ROOT}/dev/preprod/fresh.yaml: <none> -> 0.1.0-rc.abc1234" in gitops_remote.git("log", "-1", "--format=%B")
    with pytest.raises(ConflictError, match="preprod=0.1.0-rc.abc1234, other=<none>"):
        gitops.environment_version("fresh", "dev", ["preprod", "other"])
    assert result.commit == gitops_remote.head()


def write(gitops: GitOpsRepo, version: str, shown: dict[str, str], env: str = "test", **options) -> SetVersionResult:
    """A write carrying what a gate showed earlier (``shown``), not a fresh plan."""
    subject = f"Promote hello {version} to {env}"
    return gitops.set_version(
        WriteRequest("hello", env, list(shown), version, expected=shown, subject=subject, trailers=TRAILERS, **options)
    )


def test_a_write_after_the_target_moved_is_refused_and_changes_nothing(
    gitops_remote: GitRemote, cache_dir: Path
) -> None:
    gitops = repo(gitops_remote, cache_dir)
    shown = gitops.plan("hello", "test", ["preprod"], "0.1.1-rc.aaa1111").current
    moved = gitops_remote.commit({TEST_HELLO: application("hello", "test", "0.1.1-rc.ccc3333")})  # lands meanwhile

    with pytest.raises(ConflictError) as refused:
        write(gitops, "0.1.1-rc.aaa1111", shown, rerun="promote-test")

    assert str(refused.value) == (
        "test of hello moved from 0.1.1-rc.def5678 to 0.1.1-rc.ccc3333 since this change was planned and shown; "
        "run promote-test again: it plans (and its gate shows) the change from what test runs now"
    )
    assert gitops_remote.head() == moved


def test_every_attempt_compares_so_a_move_racing_the_push_is_refused(
    gitops_remote: GitRemote, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gitops = repo(gitops_remote, cache_dir)
    shown = gitops.plan("hello", "test", ["preprod"], "0.2.0").current
    real_commit_files = gitops.mirror.commit_files
    raced: list[str] = []

    def commit_then_lose_the_race(*args, **kwargs):  # another promotion lands between our fetch and our push
        if not raced:
            raced.append(gitops_remote.commit({TEST_HELLO: application("hello", "test", "0.3.0")}))
        return real_commit_files(*args, **kwargs)

    monkeypatch.setattr(gitops.mirror, "commit_files", commit_then_lose_the_race)
    with pytest.raises(ConflictError, match="test of hello moved from 0.1.1-rc.def5678 to 0.3.0 since"):
        write(gitops, "0.2.0", shown)
    assert gitops_remote.head() == raced[0] and 'targetRevision: "0.3.0"' in gitops_remote.read(TEST_HELLO)


def test_a_target_already_moved_to_the_version_is_no_conflict(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops = repo(gitops_remote, cache_dir)
    shown = gitops.plan("hello", "test", ["preprod"], "0.2.0").current
    same = gitops_remote.commit({TEST_HELLO: application("hello", "test", "0.2.0")})  # someone promoted it too

    result = write(gitops, "0.2.0", shown)

    assert result.commit is None and result.already_current and gitops_remote.head() == same


def test_a_lower_version_is_refused_at_plan_and_at_write(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops = repo(gitops_remote, cache_dir)
    head = gitops_remote.head()
    refusal = r"test runs a newer version of hello than 0.1.0-rc.0a1b2c3 \(preprod=0.1.1-rc.def5678\)"
    with pytest.raises(ConflictError, match=refusal):
        gitops.plan("hello", "test", ["preprod"], "0.1.0-rc.0a1b2c3")
    with pytest.raises(ConflictError, match=refusal):
        write(gitops, "0.1.0-rc.0a1b2c3", {"preprod": "0.1.1-rc.def5678"})
    with pytest.raises(ConflictError, match="prod runs a newer version of hello than 0.0.9"):
        write(gitops, "0.0.9", {"prod": "0.1.0"}, env="prod")
    with pytest.raises(ConflictError, match="prod runs a newer version of hello than 0.1.0-rc.0a1b2c3"):
        write(gitops, "0.1.0-rc.0a1b2c3", {"prod": "0.1.0"}, env="prod")  # a release is above its own RCs
    assert gitops_remote.head() == head


def test_a_target_revision_that_is_no_version_is_named_not_overwritten(
    gitops_remote: GitRemote, cache_dir: Path
) -> None:
    gitops_remote.add_manifest("test", "preprod", "hello", "main")
    head = gitops_remote.head()
    with pytest.raises(InputError, match="the targetRevision of hello in test/preprod 'main' is not SemVer"):
        write(repo(gitops_remote, cache_dir), "0.2.0", {"preprod": "main"})
    assert gitops_remote.head() == head


def test_another_build_of_the_same_base_is_no_downgrade(gitops_remote: GitRemote, cache_dir: Path) -> None:
    result = write(repo(gitops_remote, cache_dir), "0.1.1-rc.abc0001", {"preprod": "0.1.1-rc.def5678"})
    assert result.commit == gitops_remote.head()  # "abc0001" sorts below "def5678", and still it is let in


def test_a_hotfix_passes_main_s_higher_rc_only_while_above_what_prod_runs(
    gitops_remote: GitRemote, cache_dir: Path
) -> None:
    gitops = repo(gitops_remote, cache_dir)
    prod = ("prod", ["prod"])  # runs 0.1.0
    shown = {"preprod": "0.2.0-rc.abc1234"}  # dev runs main's next minor

    with pytest.raises(ConflictError, match="does not move an environment back"):
        write(gitops, "0.1.0-rc.0a1b2c3", shown, env="dev", release_environment=prod)  # what prod runs already
    write(gitops, "0.1.1-rc.fee1234", shown, env="dev", release_environment=prod)

    assert gitops.environment_version("hello", "dev", ["preprod"]) == "0.1.1-rc.fee1234"


def test_clusters_that_disagree_are_all_aligned_each_compared(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops_remote.add_manifest("test", "preprod-b", "hello", "")  # a newly added cluster, nothing deployed yet
    gitops = repo(gitops_remote, cache_dir)
    clusters = ["preprod", "preprod-b"]
    shown = gitops.plan("hello", "test", clusters, "0.2.0").current
    assert shown == {"preprod": "0.1.1-rc.def5678", "preprod-b": ""}

    gitops_remote.add_manifest("test", "preprod-b", "hello", "0.1.9")  # one cluster moves after the gate opened
    with pytest.raises(ConflictError, match="test of hello moved from <none> to 0.1.9 in preprod-b since"):
        write(gitops, "0.2.0", shown)
    with pytest.raises(ConflictError, match="moved from <not shown> to 0.1.9 in preprod-b since"):
        gitops.set_version(
            WriteRequest(
                "hello", "test", clusters, "0.2.0",
                expected={"preprod": "0.1.1-rc.def5678"}, subject="s", trailers=TRAILERS,
            )  # fmt: skip
        )

    result = write(gitops, "0.2.0", gitops.plan("hello", "test", clusters, "0.2.0").current)
    assert sorted(result.changed_paths) == sorted([TEST_HELLO, f"{ROOT}/test/preprod-b/hello.yaml"])
    assert gitops.cluster_versions("hello", "test", clusters) == {"preprod": "0.2.0", "preprod-b": "0.2.0"}


def test_a_missing_manifest_is_not_found_with_a_fix(gitops_remote: GitRemote, cache_dir: Path) -> None:
    with pytest.raises(NotFound, match=r"registry/environments/test/eu/hello.yaml does not exist.*clusters of test"):
        repo(gitops_remote, cache_dir).environment_version("hello", "test", ["preprod", "eu"])


def test_nothing_changes_on_the_remote_when_an_error_is_raised(gitops_remote: GitRemote, cache_dir: Path) -> None:
    gitops_remote.add_manifest("stage", "broken", "hello", "", text="kind: Application\nspec: [oops\n")
    gitops = repo(gitops_remote, cache_dir)
    head = gitops_remote.head()
    refs = gitops_remote.git("show-ref")

    with pytest.raises(NotFound):  # the first cluster could be written, the second cannot: neither is
        promote(gitops, "0.2.0", env="test", clusters=("preprod", "missing"))
    with pytest.raises(ManifestError, match="broken/hello.yaml is not valid YAML"):
        promote(gitops, "0.2.0", env="stage", clusters=("preprod", "broken"))
    with pytest.raises(InputError):
        promote(gitops, "0.2.0; rm -rf /")
    with pytest.raises(InputError):
        promote(gitops, "0.2.0", env="../prod")
    with pytest.raises(InputError):
        gitops.set_version(
            WriteRequest("hello", "test", ["preprod"], "0.2.0", expected={}, subject="  ", trailers=TRAILERS)
        )

    assert gitops_remote.head() == head and gitops_remote.git("show-ref") == refs


@pytest.mark.parametrize("shared_cache", [False, True], ids=["separate-caches", "shared-cache"])
def test_promotions_of_different_apps_pushed_at_once_all_land(
    gitops_remote: GitRemote, tmp_path: Path, shared_cache: bool
) -> None:
    apps = ["hello", "world", "api", "web"]
    for app in apps[1:]:
        gitops_remote.add_manifest("test", "preprod", app, "0.1.0")
    head = gitops_remote.head()
    barrier = threading.Barrier(len(apps))
    results, errors = {}, []

    def run(app: str) -> None:
        try:
            gitops = repo(gitops_remote, tmp_path / ("shared" if shared_cache else app))
            barrier.wait(timeout=30)
            results[app] = promote(gitops, f"1.0.0-{app}", app=app)
        except Exception as exc:  # surfaced below: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    new_commits = gitops_remote.git("rev-list", f"{head}..main").split()
    assert sorted(new_commits) == sorted(result.commit for result in results.values())
    for app in apps:
        assert f'targetRevision: "1.0.0-{app}"' in gitops_remote.read(f"{ROOT}/test/preprod/{app}.yaml")
    if shared_cache:  # the cache lock serialises its users: nobody's push is rejected
        assert {result.attempts for result in results.values()} == {1}


PROMOTE_IN_A_PROCESS = """
import sys
from pathlib import Path
from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest
url, cache, app = sys.argv[1:]
gitops = GitOpsRepo(url, "main", Path(cache))
shown = gitops.plan(app, "test", ["preprod"], "2.0.0").current
result = gitops.set_version(
    WriteRequest(app, "test", ["preprod"], "2.0.0", expected=shown, subject=f"Promote {app}", trailers=Trailers())
)
print(result.attempts)
"""


def test_processes_sharing_a_cache_take_turns(gitops_remote: GitRemote, cache_dir: Path) -> None:
    apps = ["hello", "world", "api"]
    for app in apps[1:]:
        gitops_remote.add_manifest("test", "preprod", app, "0.1.0")
    command = [sys.executable, "-c", PROMOTE_IN_A_PROCESS, gitops_remote.url, str(cache_dir)]
    processes = [
        subprocess.Popen([*command, app], cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, text=True)
        for app in apps
    ]
    attempts = [process.communicate(timeout=60)[0].strip() for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0]
    assert attempts == ["1", "1", "1"]  # the lock file orders fetch-edit-push across processes: no push is rejected
    for app in apps:
        assert 'targetRevision: "2.0.0"' in gitops_remote.read(f"{ROOT}/test/preprod/{app}.yaml")


def test_a_rejected_push_reapplies_the_edit_on_the_competing_commit(gitops_remote: GitRemote, cache_dir: Path) -> None:
    mirror = Mirror.open(gitops_remote.url, cache_dir)
    head = gitops_remote.head()
    seen_heads = []

    def racing(snapshot: Snapshot) -> dict[str, str]:
        seen_heads.append(snapshot.commit)
        if len(seen_heads) == 1:  # someone else pushes between our fetch and our push, touching the same file
            gitops_remote.commit({"README.md": "# GitOps, edited\n", TEST_HELLO: application("hello", "test", "9.9.9")})
        return _set_test(snapshot, "0.4.0")

    result = mirror.update_branch("main", racing, lambda changes: f"set {', '.join(changes)}")

    assert result.attempts == 2 and seen_heads[0] == head and seen_heads[1] != head
    assert gitops_remote.read("README.md") == "# GitOps, edited\n"  # the competing commit is kept
    assert 'targetRevision: "0.4.0"' in gitops_remote.read(TEST_HELLO)  # and ours is applied on top of it
    assert gitops_remote.git("rev-parse", "main^").strip() == seen_heads[1]
    assert gitops_remote.git("log", "-1", "--format=%s").strip() == f"set {TEST_HELLO}"


def _set_test(head: Snapshot, version: str) -> dict[str, str]:
    return {TEST_HELLO: set_target_revision(head.read_file(TEST_HELLO), version)}


class FakeTime:
    """A clock that only moves when the code under test sleeps: the budget's arithmetic, without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.bounds: list[float] = []  # the upper bound of each jittered draw

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def uniform(self, low: float, high: float) -> float:
        assert low == 0
        self.bounds.append(high)
        return high * 0.75


def test_writers_that_never_stop_winning_end_in_a_transient_error_once_the_time_budget_is_spent(
    gitops_remote: GitRemote, cache_dir: Path
) -> None:
    mirror = Mirror.open(gitops_remote.url, cache_dir)
    competing = []
    fake = FakeTime()

    def always_raced(head: Snapshot) -> dict[str, str]:
        competing.append(gitops_remote.commit({"README.md": f"# edit {len(competing)}\n"}))
        return _set_test(head, "0.5.0")

    budget = RetryBudget(seconds=5.0, clock=fake.clock, sleep=fake.sleep, uniform=fake.uniform)
    with pytest.raises(TransientError) as raised:
        mirror.update_branch("main", always_raced, lambda changes: "never lands", budget=budget)

    attempts = len(competing)
    message = str(raised.value)
    assert message == (
        f"pushing to main of {gitops_remote.url} was rejected {attempts} times in 5 s: other writers kept moving it; "
        "run it again (each attempt re-applies the change on the newest commit)"
    )
    assert "\n" not in message
    # Retried for the whole budget and not past it: the last sleep is cut to what was left.
    assert fake.now == pytest.approx(1005.0) and sum(fake.sleeps) == pytest.approx(5.0)
    assert attempts == len(fake.sleeps) + 1 and attempts > 8  # more than the old count of 8 would have allowed
    assert gitops_remote.head() == competing[-1]
    assert "0.5.0" not in gitops_remote.read(TEST_HELLO)


def test_the_retry_budget_backs_off_with_doubling_capped_jitter_and_never_sleeps_past_its_deadline() -> None:
    fake = FakeTime()
    budget = RetryBudget(seconds=3.0, clock=fake.clock, sleep=fake.sleep, uniform=fake.uniform)

    attempts = list(budget.attempts())

    assert attempts == list(range(1, len(attempts) + 1))
    # Each wait is drawn from [0, min(1 s, 50 ms * 2^attempt)]: 0.1, 0.2, 0.4, 0.8, then capped at 1 s.
    assert fake.bounds[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert fake.sleeps[:-1] == pytest.approx([bound * 0.75 for bound in fake.bounds[: len(fake.sleeps) - 1]])
    assert sum(fake.sleeps) == pytest.approx(3.0) and fake.sleeps[-1] <= fake.bounds[-1] * 0.75


def test_the_retry_budget_stops_after_a_success_and_draws_real_jitter() -> None:
    sleeps: list[float] = []
    budget = RetryBudget(seconds=60.0, sleep=sleeps.append)
    for attempt in budget.attempts():
        if attempt == 40:
            break
    assert len(sleeps) == 39 and all(0 <= seconds <= 1.0 for seconds in sleeps)
    assert len(set(sleeps)) > 30, "the waits are random, so racing writers do not retry in lock-step"


def test_the_cache_is_fetched_not_cloned_again(gitops_remote: GitRemote, cache_dir: Path) -> None:
    first = repo(gitops_remote, cache_dir)
    assert first.environment_version("hello", "test", ["preprod"]) == "0.1.1-rc.def5678"
    marker = first.mirror.path / "promo-test-marker"
    marker.write_text("kept")

    gitops_remote.commit({TEST_HELLO: application("hello", "test", "0.3.0")})
    second = repo(gitops_remote, cache_dir)

    assert second.mirror.path == first.mirror.path and marker.read_text() == "kept"
    cached = sorted(path.name for path in cache_dir.iterdir())
    assert cached == [first.mirror.path.name, f"{first.mirror.path.stem}.lock"]
    assert second.environment_version("hello", "test", ["preprod"]) == "0.3.0"
    assert first.environment_version("hello", "test", ["preprod"]) == "0.3.0"  # every read starts with a fetch


def test_credentials_never_reach_messages_or_the_cache(tmp_path: Path, cache_dir: Path) -> None:
    url = "https://x-access-token:s3cr3t@127.0.0.1:9/acme/gitops.git"
    assert redact_url(url) == "https://127.0.0.1:9/acme/gitops.git"
    gitops = GitOpsRepo(url, "main", cache_dir)
    with pytest.raises(TransientError) as info:
        gitops.environment_version("hello", "test", ["preprod"])
    assert "s3cr3t" not in str(info.value) and "127.0.0.1:9/acme/gitops.git" in str(info.value)
    assert gitops.mirror.path.name.startswith("gitops-")
    assert not any("s3cr3t" in path.read_text(errors="ignore") for path in cache_dir.rglob("*") if path.is_file())


def test_a_missing_remote_or_branch_is_not_found(gitops_remote: GitRemote, tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(NotFound, match="does not appear to be a git repository"):
        GitOpsRepo((tmp_path / "nope.git").as_uri(), "main", cache_dir).plan("hello", "test", ["preprod"], "1.0.0")
    with pytest.raises(NotFound, match="branch 'release' does not exist"):
        GitOpsRepo(gitops_remote.url, "release", cache_dir).plan("hello", "test", ["preprod"], "1.0.0")


def test_mirror_empty_commit_export_and_log(gitops_remote: GitRemote, cache_dir: Path, tmp_path: Path) -> None:
    mirror = Mirror.open(gitops_remote.url, cache_dir)
    before = gitops_remote.head()

    sha = mirror.commit_empty("main", "Build hello")

    assert gitops_remote.head() == sha
    assert gitops_remote.git("rev-parse", f"{sha}^{{tree}}") == gitops_remote.git("rev-parse", f"{before}^{{tree}}")
    assert [(entry.sha, entry.subject) for entry in mirror.log(before, "main")] == [(sha, "Build hello")]
    assert mirror.is_ancestor(before, "refs/remotes/origin/main") and mirror.is_ancestor(before[:9], "main")
    assert not mirror.is_ancestor(sha, before) and not mirror.is_ancestor("0" * 40, "main")
    assert mirror.resolve("main~1") == before
    mirror.export_tree(sha, tmp_path / "export")
    assert (tmp_path / "export" / TEST_HELLO).read_bytes() == gitops_remote.read(TEST_HELLO).encode()
    assert (tmp_path / "export" / "README.md").exists()
    assert [entry.name for entry in mirror.list_dir("main", ROOT)] == ["dev", "prod", "stage", "test"]
    assert mirror.read_file("main", f"{ROOT}/test/preprod/missing.yaml") is None
