"""No shell, no escape: flow parameters never reach a shell, and manifest paths never leave the environments root.

1. Every process promo starts (git through GitPython, buildah, skopeo...) is recorded at ``subprocess.Popen`` itself
   (the class GitPython imported by name too); ``os.system``/``os.popen`` fail the test if called. publish-dev runs on a
   branch whose (valid) name is full of shell syntax that would create a canary file if any shell saw it, from a
   promo.yaml whose path is just as hostile; promote-test is approved by a name made of shell syntax.
2. ``promo.gitops.manifests.manifest_path`` over thousands of hostile names (seeded): it refuses them, or returns a path that
   stays inside ``registry/environments/`` and whose parts are DNS labels.
"""

from __future__ import annotations

import inspect
import os
import random
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from promo.flows.gate import approving_as
from promo.flows.promote import promote_test
from promo.flows.publish_dev import publish_dev
from promo.errors import InputError
from promo.gitops.manifests import DEFAULT_ROOT, manifest_path

SEED = 7
SAMPLES = 5000
FIGURES: dict[str, object] = {}


@pytest.fixture()
def popen_calls(monkeypatch):
    calls: list[tuple[object, bool]] = []
    original = subprocess.Popen.__init__
    signature = inspect.signature(original)

    def recording(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        calls.append((bound.arguments["args"], bool(bound.arguments.get("shell", False))))
        return original(self, *args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError(f"a shell was asked for: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", recording)
    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(os, "popen", forbidden)
    return calls


def test_hostile_parameters_never_reach_a_shell(sandbox, tmp_path, popen_calls, monkeypatch):
    canary = tmp_path / "canary"
    monkeypatch.setenv("CANARY", str(canary))  # any shell that sees a payload creates this file
    payloads = ["$(touch${IFS}$CANARY)", "`touch${IFS}$CANARY`", ";touch${IFS}$CANARY&&true|cat>$CANARY'\"<x"]
    branch = "feat/" + "/".join(payloads)
    ok = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, f"the hostile branch must be a valid git branch: {ok.stderr}"
    subprocess.run(["git", "-C", str(sandbox.app_remote), "branch", branch, "main"], check=True)
    config = tmp_path / "promo $(touch $CANARY);`touch $CANARY`|touch $CANARY.yaml"
    shutil.copy(sandbox.config_path, config)

    published = publish_dev(branch=branch, config_path=str(config))
    approver = "carol $(touch $CANARY); `touch $CANARY` | touch $CANARY"
    with approving_as(approver):
        promoted = promote_test(config_path=str(config))

    assert not canary.exists(), "a shell ran one of the payloads"
    assert published.branch == branch and published.gitops_commit and promoted.gitops_commit
    built_on = subprocess.run(
        ["git", "-C", str(sandbox.app_remote), "branch", "--contains", published.commit, "--format=%(refname:short)"],
        check=True, capture_output=True, text=True,
    ).stdout.split("\n")  # fmt: skip
    assert branch in built_on, "the build commit is on the hostile branch, taken literally"
    message = subprocess.run(
        ["git", "-C", str(sandbox.gitops_remote), "log", "-1", "--format=%B", "main"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert f"Approved-By: {approver}" in message, "the approver's name lands in the trailer literally"

    assert popen_calls, "no process was recorded: the recorder is broken"
    shells = [argv for argv, shell in popen_calls if shell]
    strings = [argv for argv, _ in popen_calls if not isinstance(argv, (list, tuple))]
    assert not shells, f"processes started with shell=True: {shells}"
    assert not strings, f"processes started from a command string: {strings}"
    with_branch = [argv for argv, _ in popen_calls if any(branch in str(arg) for arg in argv)]
    assert with_branch, "the branch reached git as an argument"
    FIGURES.update(processes=len(popen_calls), with_branch=len(with_branch))
    print(f"\nno-shell figures: {FIGURES}")


# -- manifest paths ------------------------------------------------------------------------------------------------

FRAGMENTS = [
    "..",
    ".",
    "/",
    "\\",
    "~",
    "$(x)",
    "`x`",
    ";",
    "|",
    "&",
    "\x00",
    "\n",
    "\r",
    "\t",
    " ",
    "%2e%2e",
    "..%2f",
    "a/../..",
    "/etc/passwd",
    "C:\\",
    "\uff45\uff54\uff43",
    "\u202e",
    "-rf",
    "--upload-pack=x",
    "a" * 64,
    "ABC",
    "",
    "prod ",
    " prod",
    "dev\n",
    "dev\r\n",
    "*",
    "?",
    "[a]",
    "{a,b}",
    "'",
    '"',
    "#",
    ":",
    "@",
    "$HOME",
    "\x7f",
    "é",
]
ALPHABET = "abcz09-./\\~$`;|&\n\r\t \x00%:*?'\"#@{}é\u0130"
DNS_LABEL = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def is_dns_label(name: str) -> bool:
    """An oracle written apart from promo's regex: 1-63 of [a-z0-9-], no dash at either end."""
    return 1 <= len(name) <= 63 and set(name) <= DNS_LABEL and not name.startswith("-") and not name.endswith("-")


def hostile_names(rng: random.Random, count: int) -> list[str]:
    names = list(FRAGMENTS) + [a + b for a in ("dev", "..", "") for b in FRAGMENTS]
    while len(names) < count:
        pieces = [
            rng.choice(FRAGMENTS) if rng.random() < 0.3 else rng.choice(ALPHABET) for _ in range(rng.randint(1, 8))
        ]
        names.append("".join(pieces))
    return names


def test_manifest_paths_never_leave_the_environments_root():
    rng = random.Random(SEED)
    names = hostile_names(rng, SAMPLES)
    refused = accepted = 0
    wrong: list[str] = []
    for i, name in enumerate(names):
        # The hostile name in each position, the others valid; plus some fully random triples.
        triples = [(name, "preprod", "hello"), ("dev", name, "hello"), ("dev", "preprod", name)]
        if i % 10 == 0:
            triples.append((rng.choice(names), rng.choice(names), rng.choice(names)))
        for env, cluster, app in triples:
            try:
                path = manifest_path(env, cluster, app)
            except InputError as error:
                refused += 1
                assert "; " in str(error) and "is not a DNS label" in str(error)
                continue
            accepted += 1
            parts = PurePosixPath(path).parts
            resolved = (Path("/checkout") / path).resolve()
            inside = resolved.is_relative_to(Path("/checkout") / DEFAULT_ROOT)
            if not (inside and parts[:2] == ("registry", "environments") and len(parts) == 5):
                wrong.append(f"escapes: {env!r}, {cluster!r}, {app!r} -> {str(path)!r}")
            elif not all(is_dns_label(part) for part in (env, cluster, app)):
                wrong.append(f"accepted a name that is no DNS label: {env!r}, {cluster!r}, {app!r} -> {str(path)!r}")
    FIGURES.update(names=len(names), refused=refused, accepted=accepted)
    print(f"\nmanifest path figures: {FIGURES}")
    assert accepted and refused > accepted
    assert not wrong, (
        f"PROMO BUG (promo/gitops/manifests.py validate_name): {len(wrong)} hostile names accepted. _DNS_LABEL ends with '$', "
        "which also matches before a trailing newline, so 'dev\\n' passes as a DNS label and becomes a path segment "
        "(registry/environments/dev\\n/...); use _DNS_LABEL.fullmatch (or \\Z). First ones:\n" + "\n".join(wrong[:8])
    )


def test_valid_names_give_exactly_root_env_cluster_app():
    rng = random.Random(SEED + 1)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    for _ in range(2000):
        names = []
        for _ in range(3):
            name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 63))).strip("-") or "a"
            names.append(name)
        env, cluster, app = names
        assert str(manifest_path(env, cluster, app)) == f"{DEFAULT_ROOT}/{env}/{cluster}/{app}.yaml"
        assert str(manifest_path(env, cluster, app, root="gitops/apps")) == f"gitops/apps/{env}/{cluster}/{app}.yaml"
    assert re.fullmatch(r"[a-z0-9-]+", "a")  # keep re imported for readers adapting the oracle
