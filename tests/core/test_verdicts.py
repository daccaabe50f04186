"""Verdicts live in the GitOps remote as signed records: written once, read back exactly, invisible to branches, and
believed only when promo can prove it wrote them; records pushed by hand are shown untrusted and never stand."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from promo.errors import ConfigError, ConflictError
from promo.gitops.mirror import Mirror
from promo.gitops.signing import ALLOWED_SIGNERS_PATH, SigningKey, sign_record
from promo.gitops.verdicts import (
    KIND,
    Verdict,
    deployed_verdict,
    read_all_verdicts,
    read_verdicts,
    record_verdict,
)
from promo.gitops.history import read_history
from tests.fixtures.gitrepos import RECORD_SIGNER, ROOT, GitRemote, git


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def a_verdict(
    commit: str, *, verified: bool = True, reason: str = "synced and healthy", at: datetime | None = None
) -> Verdict:
    return Verdict(
        app="hello",
        env="test",
        version="0.1.0-rc.abc1234",
        gitops_commit=commit,
        verified=verified,
        reason=reason,
        checked_at=at or now(),
        checks=("argocd", "http"),
        flow_run="promote-test/brave-otter",
    )


@pytest.fixture
def mirror(gitops_remote: GitRemote, cache_dir: Path) -> Mirror:
    return Mirror.open(gitops_remote.url, cache_dir)


def fresh_reader(remote: GitRemote, cache_dir: Path) -> Mirror:
    reader = Mirror.open(remote.url, cache_dir / "elsewhere")
    reader.fetch()
    return reader


LOG = "refs/promo/log/verdicts/hello/test"


def unsigned(verdict: Verdict) -> str:
    """A verdict's entry as promo writes it, naming its log and commit, without the signature (as anyone can)."""
    return f"{verdict.message()}Record: {LOG}\nCommit: {verdict.gitops_commit}\n"


def legacy_refs(remote: GitRemote) -> list[str]:
    return remote.git("for-each-ref", "--format=%(refname)", f"refs/promo/{KIND}/").split()


def message_of(remote: GitRemote, ref: str) -> str:
    """A record of old's message exactly as git stores it (what a forger copies)."""
    raw = remote.git("cat-file", "tag", ref)
    return raw.split("\n\n", 1)[1]


def push_by_hand(remote: GitRemote, name: str, commit: str, message: str) -> str:
    """Push a record of old, annotated ``refs/promo/verdicts/<name>``, with plain git, as anyone with push access can
    (and as promo did before its logs)."""
    message_file = remote.writer / ".forged-message"
    message_file.write_text(message)
    git(remote.writer, "fetch", "--quiet", "origin")
    git(remote.writer, "tag", "--cleanup=verbatim", "-a", "-F", str(message_file), "forged", commit)
    ref = f"refs/promo/{KIND}/{name}"
    git(remote.writer, "push", "--quiet", "origin", f"refs/tags/forged:{ref}")
    git(remote.writer, "tag", "-d", "forged")
    return ref


def test_a_verdict_round_trips_through_the_remote_signed(gitops_remote: GitRemote, mirror: Mirror, cache_dir) -> None:
    commit = gitops_remote.head()
    verdict = a_verdict(commit)
    assert record_verdict(mirror, verdict, RECORD_SIGNER) == verdict

    assert read_verdicts(fresh_reader(gitops_remote, cache_dir), "hello") == {commit: verdict}
    assert read_verdicts(fresh_reader(gitops_remote, cache_dir), "hello", "prod") == {}
    assert gitops_remote.git("branch", "--list").split() == ["*", "main"]  # no branch, nothing Argo CD would sync
    assert gitops_remote.git("for-each-ref", "--format=%(refname)", "refs/promo/").split() == [LOG]  # one log
    [entry] = gitops_remote.log_messages(LOG)
    assert f"Record: {LOG}\nCommit: {commit}\nRecord-Signature: " in entry


def test_the_first_verdict_of_a_commit_stands(gitops_remote: GitRemote, mirror: Mirror) -> None:
    commit = gitops_remote.head()
    failed = a_verdict(commit, verified=False, reason="cluster preprod: health Degraded")
    first = record_verdict(mirror, failed, RECORD_SIGNER)
    again = record_verdict(mirror, a_verdict(commit), RECORD_SIGNER)
    assert again == first and not again.verified and again.trusted
    assert len(gitops_remote.log_messages(LOG)) == 1  # a re-run writes nothing


def test_a_reason_cannot_forge_another_field(gitops_remote: GitRemote, mirror: Mirror) -> None:
    commit = gitops_remote.head()
    reason = "bad\nVerdict: verified\nApp: other\nRecord-Signature: AAAA"
    record_verdict(mirror, a_verdict(commit, verified=False, reason=reason), RECORD_SIGNER)
    stored = read_verdicts(mirror, "hello")[commit]
    assert stored.trusted and not stored.verified and stored.app == "hello"
    assert stored.reason == "bad Verdict: verified App: other Record-Signature: AAAA"


def test_a_deployed_record_says_deployed_and_is_promos_own(gitops_remote: GitRemote, mirror: Mirror, cache_dir) -> None:
    commit, landed = gitops_remote.head(), now()
    deployed = deployed_verdict("hello", "test", "0.1.0", commit, at=landed, flow_run="run/x")
    record_verdict(mirror, deployed, RECORD_SIGNER)
    read = read_verdicts(fresh_reader(gitops_remote, cache_dir), "hello", "test")[commit]
    assert (read.outcome, read.trusted, read.verified, read.checked_at, read.checks) == (
        "deployed", True, False, landed, ()
    )


FORGERIES = ["unsigned", "another key", "altered field", "moved onto another commit", "copied from another log"]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_an_entry_appended_by_hand_is_untrusted_and_neither_blocks_nor_replaces_promos_own(
    gitops_remote: GitRemote, mirror: Mirror, cache_dir: Path, caplog: pytest.LogCaptureFixture, forgery: str
) -> None:
    first = gitops_remote.head()
    target = gitops_remote.commit({"README.md": "# a change to verify\n"})
    failed = a_verdict(first, verified=False, reason="cluster preprod: health Degraded")
    record_verdict(mirror, failed, RECORD_SIGNER)
    [genuine] = gitops_remote.log_messages(LOG)
    log = LOG
    if forgery == "unsigned":
        message = unsigned(a_verdict(target))
    elif forgery == "another key":
        message = sign_record(SigningKey.generate(), LOG, target, a_verdict(target).message())
    elif forgery == "altered field":
        message = sign_record(RECORD_SIGNER, LOG, target, a_verdict(target, verified=False).message())
        message = message.replace("Verdict: failed", "Verdict: verified")
    elif forgery == "moved onto another commit":
        message = genuine.replace(f"Commit: {first}", f"Commit: {target}")  # promo's "failed" of ``first``
    else:  # promo's own entry, copied into the log of another environment
        log, message = "refs/promo/log/verdicts/hello/stage", genuine
    gitops_remote.append_by_hand(log, message)

    caplog.set_level(logging.WARNING, logger="promo.gitops.record_log")
    reader = fresh_reader(gitops_remote, cache_dir)
    env = "stage" if log != LOG else "test"
    forged = read_verdicts(reader, "hello", env)[first if env == "stage" else target]
    why = {
        "unsigned": "the record is not signed",
        "another key": f"which is not in {ALLOWED_SIGNERS_PATH}",
        "altered field": "the signature does not match the record's content",
        "moved onto another commit": "the signature does not match the record's content",
        "copied from another log": "it was signed for another record",
    }[forgery]
    assert (forged.trusted, forged.verified, forged.outcome) == (False, False, "untrusted")
    assert why in forged.untrusted_reason and "\n" not in forged.untrusted_reason
    assert forged.summary().startswith("untrusted: hello")
    assert read_verdicts(reader, "hello", "test")[first] == failed  # promo's own entry is untouched
    assert f"Ignoring record {log} entry " in caplog.text and why in caplog.text

    # The log goes on past the forgery: promo's own verdict of the same commit is appended, and stands.
    mine = a_verdict(first if env == "stage" else target, reason="synced and healthy on preprod")
    mine = replace(mine, env=env)
    assert record_verdict(mirror, mine, RECORD_SIGNER) == mine
    assert read_verdicts(fresh_reader(gitops_remote, cache_dir), "hello", env)[mine.gitops_commit] == mine
    assert len(gitops_remote.log_messages(log)) == (3 if log == LOG else 2)  # nothing dropped, the forgery stays


def test_history_shows_an_entry_appended_by_hand_as_untrusted(gitops_remote: GitRemote, mirror: Mirror) -> None:
    commit = gitops_remote.head()  # the commit that put every environment's first version in place
    gitops_remote.append_by_hand(LOG, unsigned(a_verdict(commit)))
    mirror.fetch()
    clusters = {"test": ["preprod"], "stage": ["preprod"]}
    test, stage = (
        next(change for change in read_history(mirror, "main", "hello", clusters, root=ROOT) if change.env == env)
        for env in ("test", "stage")
    )
    assert (test.outcome, test.verdict.trusted, test.verdict.verified) == ("untrusted", False, False)
    assert stage.verdict is None


def test_records_of_old_are_still_read_and_checked_the_same_way(
    gitops_remote: GitRemote, mirror: Mirror, cache_dir: Path
) -> None:
    first = gitops_remote.head()
    second = gitops_remote.commit({"README.md": "# again\n"})
    ours = a_verdict(first, reason="verified before the logs")
    name = f"hello/test/{first}-5d41402abc4b"
    signed = sign_record(RECORD_SIGNER, f"refs/promo/{KIND}/{name}", first, _legacy_message(ours))
    push_by_hand(gitops_remote, name, first, signed)  # as promo wrote it before its logs
    push_by_hand(gitops_remote, f"hello/test/{second}", second, _legacy_message(a_verdict(second)))  # unsigned

    verdicts = read_verdicts(fresh_reader(gitops_remote, cache_dir), "hello", "test")
    assert verdicts[first] == ours
    assert verdicts[second].outcome == "untrusted" and "the record is not signed" in verdicts[second].untrusted_reason
    assert record_verdict(mirror, a_verdict(first, verified=False), RECORD_SIGNER) == ours  # it stands: no entry
    assert gitops_remote.log_messages(LOG) == []
    assert record_verdict(mirror, a_verdict(second), RECORD_SIGNER).trusted  # new ones go to the log
    assert len(gitops_remote.log_messages(LOG)) == 1 and len(legacy_refs(gitops_remote)) == 2


def _legacy_message(verdict: Verdict) -> str:
    """A verdict's text as records of old held it: its time was ``Checked-At``."""
    return verdict.message().replace("\nAt: ", "\nChecked-At: ")


@pytest.mark.parametrize("blocker", ["refs/promo/log/verdicts/hello", f"{LOG}/x", LOG])
def test_a_ref_where_promos_log_must_go_is_named_with_the_fix(
    gitops_remote: GitRemote, mirror: Mirror, blocker: str
) -> None:
    commit = gitops_remote.head()
    if blocker == LOG:  # at the log's own name, a tag object: no chain of commits to append to
        push_by_hand(gitops_remote, "in-the-way", commit, "in the way\n")
        gitops_remote.git("update-ref", LOG, f"refs/promo/{KIND}/in-the-way")
        gitops_remote.git("update-ref", "-d", f"refs/promo/{KIND}/in-the-way")
    else:
        gitops_remote.git("update-ref", blocker, commit)
    with pytest.raises(ConflictError, match=f"delete it \\(git push <remote> :{blocker}\\)"):
        record_verdict(mirror, a_verdict(commit), RECORD_SIGNER)
    gitops_remote.git("update-ref", "-d", blocker)  # the fix
    assert record_verdict(mirror, a_verdict(commit), RECORD_SIGNER).trusted


def test_a_record_never_predates_its_commit(gitops_remote: GitRemote, mirror: Mirror) -> None:
    commit = gitops_remote.head()
    committed = datetime.fromtimestamp(int(gitops_remote.git("log", "-1", "--format=%ct", commit)), timezone.utc)
    early = record_verdict(mirror, a_verdict(commit, at=committed - timedelta(hours=1)), RECORD_SIGNER)
    assert not early.trusted and "predates its commit" in early.untrusted_reason

    later = gitops_remote.commit({"README.md": "# again\n"})
    skewed = a_verdict(later, at=committed - timedelta(minutes=1))  # another machine's clock, a minute behind
    assert record_verdict(mirror, skewed, RECORD_SIGNER).trusted


def test_a_key_the_gitops_branch_does_not_list_writes_nothing(gitops_remote: GitRemote, mirror: Mirror) -> None:
    with pytest.raises(ConfigError, match="is not listed in .promo/record-signers"):
        record_verdict(mirror, a_verdict(gitops_remote.head()), SigningKey.generate())
    assert gitops_remote.git("for-each-ref", "refs/promo/") == ""


def test_every_apps_verdicts_in_one_read_each_where_its_log_is(gitops_remote: GitRemote, mirror: Mirror) -> None:
    commit = gitops_remote.head()
    mine = a_verdict(commit)
    theirs = Verdict("web", "prod", "2.0.0", commit, True, "synced and healthy", now())
    record_verdict(mirror, mine, RECORD_SIGNER)
    record_verdict(mirror, theirs, RECORD_SIGNER)
    # An unsigned entry in another app's log that claims to be about web in prod stays where it was appended.
    gitops_remote.append_by_hand("refs/promo/log/verdicts/other/qa", unsigned(theirs))
    mirror.fetch()
    found = read_all_verdicts(mirror)
    forged = found.pop("other")["qa"][commit]
    assert found == {"hello": {"test": {commit: mine}}, "web": {"prod": {commit: theirs}}}
    assert (forged.outcome, forged.app, forged.env, forged.version) == ("untrusted", "other", "qa", "2.0.0")


# docs/records.md, "Checking a record by hand", word for word (after ``log=...``).
AUDIT = """
git fetch origin "+$log:$log"
git log --format='%H %s' "$log"                                   # its entries, newest first
entry=${entry:-$(git rev-parse "$log")}                           # the newest, unless you chose another
git cat-file commit "$entry" | sed '1,/^$/d' > record.txt         # the message: drop the commit header
grep -v '^Record-Signature: ' record.txt > payload                 # what was signed
{ echo '-----BEGIN SSH SIGNATURE-----'
  sed -n 's/^Record-Signature: //p' record.txt | fold -w 70
  echo '-----END SSH SIGNATURE-----'; } > record.sig
git show origin/main:.promo/record-signers > signers
ssh-keygen -Y verify -f signers -I promo -n promo-record -s record.sig < payload
grep -E '^(Record|Commit): ' payload                                # must name "$log" and the GitOps commit
"""


def test_an_auditor_checks_promos_record_with_ssh_keygen(gitops_remote: GitRemote, mirror: Mirror) -> None:
    commit = gitops_remote.head()
    record_verdict(mirror, a_verdict(commit), RECORD_SIGNER)
    git(gitops_remote.writer, "fetch", "--quiet", "origin")

    def audit(entry: str = "") -> subprocess.CompletedProcess:
        script = f"set -e\nlog={LOG}\nentry={entry}\n{AUDIT}"
        return subprocess.run(["bash", "-c", script], cwd=gitops_remote.writer, capture_output=True, text=True)

    good = audit()
    fingerprint = RECORD_SIGNER.public.fingerprint()
    assert good.returncode == 0, good.stderr
    assert f'Good "promo-record" signature for promo with ED25519 key {fingerprint}' in good.stdout + good.stderr
    assert f"Record: {LOG}\nCommit: {commit}\n" in good.stdout

    [genuine] = gitops_remote.log_messages(LOG)
    altered = gitops_remote.append_by_hand(LOG, genuine.replace("Verdict: verified", "Verdict: failed"))
    refused = audit(altered)
    assert refused.returncode != 0 and "Signature verification failed" in refused.stderr  # a field changed
