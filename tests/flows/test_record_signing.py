"""promo setup makes the record signing key once, in a Prefect Secret block, and lists it where readers look; a run
into an environment without verify: records a signed 'deployed'. A real Prefect server and real git remotes."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest

from promo.config import PromoConfig
from promo.deployments.deploy import ensure_signing
from promo.flows.publish_dev import publish_dev
from promo.gitops.signing import ALLOWED_SIGNERS_PATH, SigningKey, parse_allowed_signers
from promo.local.sandbox import Sandbox
from promo.secrets import secret_block_value
from promo.signing_key import SIGNING_KEY_BLOCK, record_signing_key
from tests.fixtures.gitrepos import ROOT, GitRemote, make_remote
from tests.flows.test_cli import write_config
from tests.flows.test_release import git
from tests.flows.test_verification import gitops_head, verdicts_in


def config_for(remote: GitRemote, cache: Path) -> PromoConfig:
    return PromoConfig.model_validate(
        {
            "app": "hello",
            "app_repo": {"url": "file:///nowhere/app.git"},
            "gitops": {"url": remote.url, "root": ROOT},
            "chart": {"path": "charts/hello", "repository": "127.0.0.1:9/charts"},
            "image": {"repository": "127.0.0.1:9/hello"},
            "cache_dir": str(cache),
        }
    )


def test_setup_makes_the_key_once_and_lists_it_on_the_gitops_branch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    remote = make_remote(tmp_path / "gitops", {"README.md": "# GitOps\n"})
    config = config_for(remote, tmp_path / "cache")

    first = [outcome.line() for outcome in ensure_signing(config)]
    key = record_signing_key()  # from the block, as a worker reads it
    fingerprint = key.public.fingerprint()
    assert first[0].split()[:3] in (["created", "secret", SIGNING_KEY_BLOCK], ["exists", "secret", SIGNING_KEY_BLOCK])
    assert first[1].split()[:3] == ["created", "signer", ALLOWED_SIGNERS_PATH] and fingerprint in first[1]
    assert parse_allowed_signers(remote.read(ALLOWED_SIGNERS_PATH)) == {key.public}

    head = remote.head()
    again = [outcome.line() for outcome in ensure_signing(config)]
    assert [line.split()[0] for line in again] == ["exists", "exists"] and remote.head() == head  # reused, no commit
    assert record_signing_key().public == key.public

    # Another GitOps repository, the same server: the same key is listed there, never a second one made.
    other = make_remote(tmp_path / "other", {"README.md": "# GitOps\n"})
    ensure_signing(config_for(other, tmp_path / "cache"))
    assert parse_allowed_signers(other.read(ALLOWED_SIGNERS_PATH)) == {key.public}

    secret = secret_block_value(SIGNING_KEY_BLOCK)
    assert secret is not None and SigningKey.from_openssh(secret).public == key.public
    body = "".join(secret.splitlines()[1:-1])
    assert body[:40] not in caplog.text and body[:40] not in "".join(first + again)
    assert body[:40] not in remote.git("log", "-p", "--all") and "PRIVATE" not in remote.git("config", "--list")


def test_setup_says_which_line_to_add_when_the_branch_refuses_its_push(tmp_path: Path) -> None:
    remote = make_remote(tmp_path / "gitops", {"README.md": "# GitOps\n"})
    hook = remote.path / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected: open a pull request' >&2\nexit 1\n")
    hook.chmod(0o755)

    key_line, signer_line = (outcome.line() for outcome in ensure_signing(config_for(remote, tmp_path / "cache")))

    public = record_signing_key().public
    assert signer_line.startswith(f"skipped  signer {ALLOWED_SIGNERS_PATH}")
    assert f"add this line to it by hand: {public.allowed_signers_line()}" in signer_line
    assert key_line.split()[1] == "secret"


def test_a_write_into_an_environment_without_verify_is_recorded_as_deployed(sandbox: Sandbox) -> None:
    def without_verify_in_dev(data) -> None:
        next(env for env in data["environments"] if env["name"] == "dev").pop("verify")

    config = write_config(sandbox, without_verify_in_dev)
    before = datetime.now(timezone.utc).replace(microsecond=0)
    published = publish_dev(config_path=config)

    assert published.verification is None  # nothing was checked
    recorded = verdicts_in(sandbox, "dev")[gitops_head(sandbox)]
    assert (recorded.outcome, recorded.trusted, recorded.version) == ("deployed", True, published.chart_version)
    assert recorded.checked_at >= before and recorded.flow_run
    refs = git(sandbox.gitops_remote, "for-each-ref", "--format=%(refname)", "refs/promo/").split()
    assert refs == ["refs/promo/log/verdicts/hello/dev"]  # the log of hello in dev, no ref of its own
    [entry] = git(sandbox.gitops_remote, "log", "--format=%B%x00", refs[0]).split("\x00")[:-1]
    assert f"Commit: {gitops_head(sandbox)}\nRecord-Signature: " in entry
