"""Signed verdict record logs written into a bench remote cheaply: signed in-process, imported with one
``git fast-import`` (each log a chain of empty-tree commits, exactly what ``Mirror.append_log`` pushes), not pushed
one by one. Shared by the benches that need verdicts (``status-all``, ``verdict-refs``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

from common import git, run

LOG_TIME = 1_700_000_000  # the entries' commit time: any; readers go by the signed time in the text


def commit_signers(remote: Path, text: str) -> str:
    """One commit on ``remote``'s main adding the allowed-signers file (``text``, a new directory at the root); its
    SHA."""
    from promo.gitops.signing import ALLOWED_SIGNERS_PATH

    directory, name = ALLOWED_SIGNERS_PATH.split("/")
    blob = run("git", "-C", remote, "hash-object", "-w", "--stdin", input=text.encode()).strip()
    subtree = run("git", "-C", remote, "mktree", input=f"100644 blob {blob}\t{name}\n".encode()).strip()
    entries = run("git", "-C", remote, "ls-tree", "main") + f"040000 tree {subtree}\t{directory}\n"
    tree = run("git", "-C", remote, "mktree", input=entries.encode()).strip()
    commit = git(remote, "commit-tree", tree, "-p", "main", "-m", "allow the bench's record signing key").strip()
    run("git", "-C", remote, "update-ref", "refs/heads/main", commit)
    return commit


def verdict_entries(key: object, verdicts: Iterable[object]) -> dict[str, list[str]]:
    """Log ref -> its entries' messages, oldest first: each verdict signed as ``record_verdict`` signs it."""
    from promo.gitops.mirror import log_ref
    from promo.gitops.signing import sign_record
    from promo.gitops.verdicts import KIND, Verdict

    logs: dict[str, list[str]] = {}
    for verdict in verdicts:
        assert isinstance(verdict, Verdict)
        ref = log_ref(KIND, f"{verdict.app}/{verdict.env}")
        message = sign_record(key, ref, verdict.gitops_commit, verdict.message())  # type: ignore[arg-type]
        logs.setdefault(ref, []).append(message)
    return logs


def import_logs(remote: Path, logs: Mapping[str, list[str]]) -> None:
    """Write ``logs`` (log ref -> messages, oldest first) into ``remote`` with one ``git fast-import``."""
    stream = []
    for ref, messages in logs.items():
        for message in messages:
            data = message.strip().encode() + b"\n"
            stream.append(b"commit %s\ncommitter bench <bench@localhost> %d +0000\n" % (ref.encode(), LOG_TIME))
            stream.append(b"data %d\n%s\n" % (len(data), data))
    stream.append(b"done\n")
    subprocess.run(["git", "-C", str(remote), "fast-import", "--quiet", "--done"], input=b"".join(stream), check=True)

