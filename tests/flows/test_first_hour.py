"""Defects a first hour with promo runs into: an app repository whose branch is not main, and a Prefect API that
fails once while an environment lock is taken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.orchestration._concurrency_limits.client import ConcurrencyLimitClient
from ruamel.yaml import YAML

from promo.tasks import limits
from promo.tasks.limits import ensure_environment_limits, environment_lock, limit_name
from promo.cli import main as cli
from promo.errors import NotFound, ToolError, TransientError
from promo.local.sandbox import Sandbox
from promo.versions import short_sha

ACQUIRE = "increment_concurrency_slots_with_lease"  # the one API call behind taking a slot


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_publish_dev_builds_the_branch_promo_yaml_names(sandbox: Sandbox, monkeypatch, capsys):
    git(sandbox.app_remote, "branch", "-m", "main", "trunk")
    yaml = YAML()
    data = yaml.load(sandbox.config_path.read_text())
    data["app_repo"]["branch"] = "trunk"
    with sandbox.config_path.open("w") as out:
        yaml.dump(data, out)

    monkeypatch.setattr(sys, "argv", ["promo", "publish-dev", "--config", str(sandbox.config_path)])  # no --branch
    with pytest.raises(SystemExit) as exited:
        cli.main()

    captured = capsys.readouterr()
    assert (exited.value.code or 0) == 0, captured.err
    trunk = git(sandbox.app_remote, "rev-parse", "trunk").strip()
    assert git(sandbox.app_remote, "log", "-1", "--format=%s", "trunk") == "build: publish-dev on trunk (manual run)\n"
    assert f"0.1.0-rc.{short_sha(trunk)}" in captured.out
    assert git(sandbox.app_remote, "branch", "--list").split() == ["*", "trunk"]  # no main appeared


def http_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://prefect.invalid/api/v2/concurrency_limits/increment-with-lease")
    return httpx.HTTPStatusError(f"{status}", request=request, response=httpx.Response(status, request=request))


def fail_acquires(monkeypatch, fault: Exception, times: int) -> list[int]:
    """Make the first ``times`` acquire calls raise ``fault``; the returned list counts every call."""
    original = getattr(ConcurrencyLimitClient, ACQUIRE)
    calls: list[int] = []

    def acquire(self, *args, **kwargs):
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise fault
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ConcurrencyLimitClient, ACQUIRE, acquire)
    return calls


def active_slots(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


@pytest.mark.parametrize(
    ("app", "fault"),
    [("unreachable", httpx.ConnectError("connection refused")), ("crashed", http_error(500)), ("busy", http_error(503))],
)
def test_a_transient_api_failure_while_taking_the_lock_is_retried(monkeypatch, app, fault):
    ensure_environment_limits(app, ["dev"])
    calls = fail_acquires(monkeypatch, fault, times=1)

    with environment_lock(app, "dev", timeout_seconds=30, create_missing=False):
        assert active_slots(limit_name(app, "dev")) == 1  # held for real after the retry

    assert len(calls) == 2
    assert active_slots(limit_name(app, "dev")) == 0


def test_an_api_that_keeps_failing_is_a_transient_error_after_bounded_retries(monkeypatch):
    ensure_environment_limits("down", ["dev"])
    monkeypatch.setattr(limits, "BACKOFF_SECONDS", 0.01)
    calls = fail_acquires(monkeypatch, http_error(503), times=100)

    with pytest.raises(TransientError, match=r"Prefect API failed while taking a slot of promo-down-dev \(HTTP 503\)"):
        with environment_lock("down", "dev", timeout_seconds=30, create_missing=False):
            pytest.fail("the body ran without the lock")

    assert len(calls) == limits.RETRIES + 1


def test_a_refusal_that_is_not_transient_is_not_called_a_missing_limit(monkeypatch):
    ensure_environment_limits("refused", ["dev"])
    calls = fail_acquires(monkeypatch, http_error(422), times=100)

    with pytest.raises(ToolError, match="refused a slot of promo-refused-dev"):
        with environment_lock("refused", "dev", timeout_seconds=30, create_missing=False):
            pytest.fail("the body ran without the lock")

    assert len(calls) == 1  # a refusal is not retried


def test_a_missing_limit_still_says_run_promo_setup(monkeypatch):
    calls = fail_acquires(monkeypatch, http_error(503), times=0)  # counts only

    with pytest.raises(NotFound, match=r"no concurrency limit promo-unset-dev; run `promo setup`"):
        with environment_lock("unset", "dev", timeout_seconds=30, create_missing=False):
            pytest.fail("the body ran without the lock")

    assert len(calls) == 1  # a missing limit is not retried
