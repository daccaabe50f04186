"""The sandbox's GitHub, which ``promo sandbox DIR`` and ``promo demo`` start: the GitHub stand-in over the sandbox's
bare repositories, a token per sandbox user, and promo.yaml pointed at it.

    DIR/github-tokens.json      {"login": "token"} for demo, alice, bob, carol and mallory (mode 0600); the stand-in
                                accepts these tokens only, and the login a token belongs to is who acts
    DIR/standin-github/         the stand-in (promo.local.standin_github): config.json, its log, state.json (PID
                                and port), github-state.json (its pull requests, reviews, checks and releases)

The GitOps repository is ``sandbox/gitops`` and the app's ``sandbox/<app>``. Its ``main`` is protected: a direct push
that changes an environment with approvers (stage, prod) is refused, and a merge into it needs one approval by a
writer (demo, alice, bob, carol: mallory may review, without effect), with stale approvals dismissed. So stage and
prod are ``write: pull-request``, approved by a review of alice, bob or carol; promo acts as demo
(``export GITHUB_TOKEN=<demo's token>``), who opens the pull requests and so cannot approve them.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from promo.config import PromoConfig
from promo.local.processes import running_server
from promo.local.standin_github import GitHubStandinServer, GitHubStandinSettings, Protection

OWNER = "sandbox"
TOKENS_FILE = "github-tokens.json"
USERS = ("demo", "alice", "bob", "carol", "mallory")
WRITERS = ["demo", "alice", "bob", "carol"]
# Who may approve into stage and prod: not demo, whose token promo acts with (it opens the pull requests, and
# GitHub does not let an author approve their own).
REVIEWERS = ("alice", "bob", "carol")


def start_github(directory: Path, config: PromoConfig, app_remote: Path, gitops_remote: Path) -> GitHubStandinServer:
    """The running stand-in of the sandbox in ``directory`` (started when it is not), on promo.yaml's port if free."""
    tokens = github_tokens(directory)
    guarded = [f"{config.gitops.root}/{env.name}/" for env in config.environments if env.approvers]
    settings = GitHubStandinSettings(
        owner=OWNER,
        repositories={"gitops": gitops_remote, config.app: app_remote},
        protection={"gitops": Protection(branch=config.gitops.branch, writers=WRITERS, guarded_paths=guarded)},
        tokens_file=tokens,
        state_file=directory / "standin-github" / "github-state.json",
    )
    root = directory / "standin-github"
    previous = urlsplit(config.forge.api_url).netloc if config.forge.api_url else None
    return running_server(
        GitHubStandinServer, root, previous,
        lambda port: GitHubStandinServer.start(root, settings.model_copy(update={"port": port or 0})),
    )  # fmt: skip


def github_tokens(directory: Path) -> Path:
    """DIR/github-tokens.json, made once with a fresh token per sandbox user (mode 0600, as it holds secrets)."""
    path = directory / TOKENS_FILE
    if not path.exists():
        tokens = {login: f"ght_sandbox_{login}_{secrets.token_hex(12)}" for login in USERS}
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
            json.dump(tokens, out, indent=2)
            out.write("\n")
    return path


def with_github(config: PromoConfig, api_url: str) -> PromoConfig:
    """``config`` with its forge on the stand-in (tokens from $GITHUB_TOKEN) and its GitOps repository named there."""
    forge = config.forge.model_copy(
        update={"kind": "github", "repository": f"{OWNER}/{config.app}", "api_url": api_url}
    )
    gitops = config.gitops.model_copy(update={"repository": f"{OWNER}/gitops"})
    environments = [
        env.model_copy(update={"write": "pull-request", "approvers": list(REVIEWERS)}) if env.approvers else env
        for env in config.environments
    ]
    return config.model_copy(update={"forge": forge, "gitops": gitops, "environments": environments})
