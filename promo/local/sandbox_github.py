"""The sandbox's GitHub, which ``promo sandbox DIR`` and ``promo demo`` start: the GitHub stand-in over the sandbox's
bare repositories, a token per sandbox user, and promo.yaml pointed at it.

    DIR/github-tokens.json      {"login": "token"} for demo, alice, bob, carol and mallory (mode 0600); the stand-in
                                accepts these tokens only, and the login a token belongs to is who acts
    DIR/standin-github/         the stand-in (promo.local.standin_github): config.json, its log, state.json (PID
                                and port), github-state.json (its pull requests, reviews, checks and releases)
    DIR/github-webhook-secret   the secret of the GitOps repository's webhook (mode 0600): the stand-in signs its
                                deliveries (reviews, closes) to http://127.0.0.1:8790/ with it, where
                                `promo relay-github-webhooks --secret-file DIR/github-webhook-secret` listens

The GitOps repository is ``sandbox/gitops`` and the app's ``sandbox/<app>``. Its ``main`` is protected: a direct push
that changes an environment with approvers (stage, prod) is refused, and a merge into it needs one approval by a
writer (demo, alice, bob, carol: mallory may review, without effect), with stale approvals dismissed; the repository
allows auto-merge (GitHub's default is off: see ``start_github``). So stage and
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
from promo.local.standin_github import GitHubStandinServer, GitHubStandinSettings, Protection, Webhook

OWNER = "sandbox"
TOKENS_FILE = "github-tokens.json"
WEBHOOK_SECRET_FILE = "github-webhook-secret"
RELAY_URL = "http://127.0.0.1:8790/"  # where `promo relay-github-webhooks` listens by default
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
        # GitHub's default is off; the sandbox allows auto-merge so that it walks the path promo takes on a
        # repository that allows it (docs/github.md), and `PATCH /repos/sandbox/gitops` switches it off to see the other
        allow_auto_merge=["gitops"],
        tokens_file=tokens,
        state_file=directory / "standin-github" / "github-state.json",
        webhooks=[Webhook(url=RELAY_URL, secret_file=webhook_secret(directory), repositories=["gitops"])],
    )
    root = directory / "standin-github"
    previous = urlsplit(config.forge.api_url).netloc if config.forge.api_url else None
    return running_server(
        GitHubStandinServer, root, previous,
        lambda port: GitHubStandinServer.start(root, settings.model_copy(update={"port": port or 0})),
    )  # fmt: skip


def github_tokens(directory: Path) -> Path:
    """DIR/github-tokens.json, made once with a fresh token per sandbox user (mode 0600, as it holds secrets)."""
    tokens = {login: f"ght_sandbox_{login}_{secrets.token_hex(12)}" for login in USERS}
    return _private_file(directory / TOKENS_FILE, json.dumps(tokens, indent=2))


def webhook_secret(directory: Path) -> Path:
    """DIR/github-webhook-secret, made once (mode 0600): the stand-in signs with it, the relay checks with it."""
    return _private_file(directory / WEBHOOK_SECRET_FILE, secrets.token_hex(20))


def _private_file(path: Path, text: str) -> Path:
    """``path`` holding ``text`` and readable by its owner only, unless it exists already (then kept as it is)."""
    if not path.exists():
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
            out.write(text + "\n")
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
