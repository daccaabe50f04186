"""`promo sandbox DIR`: the GitHub stand-in over the sandbox's remotes, its tokens, and promo.yaml."""

from __future__ import annotations

import json
import stat
import subprocess

import httpx
import pytest

from promo.clients import gitops_pull_requests
from promo.config import load_config
from promo.errors import InputError
from promo.forges.github import GivenToken
from promo.local.sandbox import Sandbox, create_sandbox, stop_sandbox

pytestmark = pytest.mark.integration


def test_the_sandbox_serves_github_to_each_user_and_protects_stage_and_prod(github_sandbox: Sandbox) -> None:
    tokens_file = github_sandbox.directory / "github-tokens.json"
    tokens = json.loads(tokens_file.read_text())
    assert sorted(tokens) == ["alice", "bob", "carol", "demo", "mallory"]
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    config = load_config(github_sandbox.config_path)
    assert (config.forge.kind, config.forge.api_url, config.gitops.repository) == (
        "github",
        github_sandbox.github_url,
        "sandbox/gitops",
    )
    assert gitops_pull_requests(config, GivenToken(tokens["alice"])).whoami() == "alice"
    assert gitops_pull_requests(config, GivenToken(tokens["demo"])).auto_merge_allowed() is True
    writes = {env.name: (env.write, env.gate_kind, env.approvers) for env in config.environments}
    reviewed = ("pull-request", "pull-request", ["alice", "bob", "carol"])
    assert writes == {"dev": ("push", "prefect", []), "test": ("push", "prefect", []), "stage": reviewed,
                      "prod": reviewed}  # fmt: skip
    assert httpx.get(f"{github_sandbox.github_url}/user", headers={"Authorization": "Bearer nope"}).status_code == 401

    work = github_sandbox.directory / "work"
    subprocess.run(["git", "clone", "-q", str(github_sandbox.gitops_remote), str(work)], check=True)
    stage = next(work.glob(f"{config.gitops.root}/stage/*/hello.yaml"))
    stage.write_text(stage.read_text() + "# edited around the review\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "-C", str(work), *identity, "commit", "-qam", "stage by hand"], check=True)
    pushed = subprocess.run(["git", "-C", str(work), "push", "origin", "HEAD:main"], capture_output=True, text=True)
    assert pushed.returncode != 0 and "GH006: Protected branch update failed" in pushed.stderr


def test_creating_again_reuses_the_stand_in_and_its_tokens(github_sandbox: Sandbox) -> None:
    tokens = (github_sandbox.directory / "github-tokens.json").read_text()
    again = create_sandbox(github_sandbox.directory)  # promo.yaml says it has pull requests
    assert again.github_url == github_sandbox.github_url
    assert (github_sandbox.directory / "github-tokens.json").read_text() == tokens
    assert stop_sandbox(github_sandbox.directory) is True
    restarted = create_sandbox(github_sandbox.directory)
    assert restarted.github_url == github_sandbox.github_url  # its old port, still in promo.yaml


def test_pull_requests_are_not_added_to_a_sandbox_made_without_them(sandbox: Sandbox) -> None:
    with pytest.raises(InputError, match="made without a stand-in for GitHub"):
        create_sandbox(sandbox.directory, pull_requests=True)
