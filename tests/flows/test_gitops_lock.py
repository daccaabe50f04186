"""The GitOps repository's write lock: a Prefect global concurrency limit named after the repository, held around
each write's fetch-edit-push, so writers with caches of their own (other workers, other hosts) queue, not race."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from promo.errors import NotFound
from promo.tasks.limits import ensure_limits, gitops_limit_name, gitops_lock
from tests.fixtures.gitrepos import ROOT, application, make_remote

WRITERS = 4
PROCESS_SECONDS = 180  # each writer imports Prefect (seconds of CPU) on a shared, loaded machine: generous, bounded
SHOWN = "0.1.0"


def test_the_lock_name_is_stable_valid_and_free_of_credentials() -> None:
    token_url = "https://x-access-token:s3cr3t@github.com/Acme/GitOps.git"
    name = gitops_limit_name(token_url)

    assert "s3cr3t" not in name and "x-access-token" not in name
    assert re.fullmatch(r"promo-gitops-[a-z0-9]+(-[a-z0-9]+)*-[0-9a-f]{10}", name) and len(name) <= 64
    assert name.startswith("promo-gitops-github-com-acme-gitops-")
    # Every spelling of one repository meets at one limit: credentials, a trailing slash, .git.
    spellings = ["https://github.com/Acme/GitOps", "https://github.com/Acme/GitOps/"]
    spellings.append("https://u:p@github.com/Acme/GitOps")
    assert {gitops_limit_name(same) for same in spellings} == {name}
    # Another repository, even one with the same slug, gets another limit.
    assert gitops_limit_name("https://github.com/Acme/GitOps-2.git") != name
    assert gitops_limit_name("https://github.com/acme/gitops.git") != name  # paths are case-sensitive on most forges
    deep = gitops_limit_name("file:///srv/" + "a-long-directory-name/" * 10 + "gitops.git")
    assert re.fullmatch(r"promo-gitops-[a-z0-9-]+-[0-9a-f]{10}", deep) and len(deep) <= 64  # the slug keeps its end


def test_a_missing_repository_limit_is_an_error_under_a_deployment(tmp_path: Path) -> None:
    url = (tmp_path / "nowhere.git").as_uri()
    with pytest.raises(NotFound, match=f"no concurrency limit {gitops_limit_name(url)}; run `promo setup`"):
        with gitops_lock(url, create_missing=False):
            pass


# One writer: its own process and its own cache, like a worker on another host. It reports "ready" once Prefect and
# promo are imported, waits for "go" on stdin, writes its app's version holding the repository's lock, and prints
# the outcome as JSON.
WRITER = """
import json, sys
from pathlib import Path
from promo.tasks.limits import gitops_lock
from promo.gitops.repo import GitOpsRepo, Trailers, WriteRequest

url, cache, app, version, shown = sys.argv[1:6]
print("ready", flush=True)
sys.stdin.readline()
try:
    repo = GitOpsRepo(url, "main", Path(cache), write_lock=lambda: gitops_lock(url, create_missing=False))
    result = repo.set_version(
        WriteRequest(
            app, "test", ["preprod"], version, expected={"preprod": shown}, subject=f"promote {app} to {version}",
            trailers=Trailers(approved_by="test"),
        )
    )
    print(json.dumps({"commit": result.commit, "attempts": result.attempts}), flush=True)
except Exception as error:
    print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
"""


def test_writers_with_caches_of_their_own_queue_for_the_repository_and_none_fails_or_is_lost(tmp_path: Path) -> None:
    apps = [f"app-{index}" for index in range(WRITERS)]
    remote = make_remote(
        tmp_path / "gitops", {f"{ROOT}/test/preprod/{app}.yaml": application(app, "test", SHOWN) for app in apps}
    )
    assert ensure_limits([gitops_limit_name(remote.url)]) == [(gitops_limit_name(remote.url), True)]  # promo setup
    before = remote.head()
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, remote.url, str(tmp_path / f"cache-{app}"), app, "0.2.0", SHOWN],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        for app in apps
    ]
    try:
        for writer in writers:  # every writer is up before any starts: they contend for real
            assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
        for writer in writers:
            writer.stdin.write("go\n")
            writer.stdin.flush()
        outcomes = []
        for writer in writers:
            out, err = writer.communicate(timeout=PROCESS_SECONDS)
            assert writer.returncode == 0, err
            outcomes.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()

    assert all("error" not in outcome for outcome in outcomes), outcomes
    # Held around fetch-edit-push, the lock leaves nobody a moved branch: every write lands on its first push.
    assert [outcome["attempts"] for outcome in outcomes] == [1] * WRITERS, outcomes
    for app in apps:  # nothing lost: every app's version is on the remote, one commit each
        assert 'targetRevision: "0.2.0"' in remote.read(f"{ROOT}/test/preprod/{app}.yaml"), app
    subjects = remote.git("log", "--format=%s", f"{before}..main").splitlines()
    assert sorted(subjects) == sorted(f"promote {app} to 0.2.0" for app in apps)
    with get_client(sync_client=True) as client:  # and every slot was given back
        assert client.read_global_concurrency_limit_by_name(gitops_limit_name(remote.url)).active_slots == 0
