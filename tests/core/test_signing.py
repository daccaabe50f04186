"""promo's signatures are OpenSSH's: ssh-keygen makes and checks the same ones, and the private key never shows."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from promo.errors import ConfigError
from promo.gitops.signing import (
    BadSignature,
    SigningKey,
    armor,
    parse_allowed_signers,
    sign_record,
    signed_commit,
    signed_content,
    verify,
)

PAYLOAD = b"Verdict: verified\nRecord: refs/promo/verdicts/hello/test/abc-123\n"


def ssh_keygen(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh-keygen", *args], cwd=cwd, input=stdin, capture_output=True)


def test_a_key_ssh_keygen_made_signs_what_promo_verifies(tmp_path: Path) -> None:
    ssh_keygen("-q", "-t", "ed25519", "-N", "", "-C", "", "-f", "key", cwd=tmp_path)
    key = SigningKey.from_openssh((tmp_path / "key").read_text())
    assert key.public.openssh() == " ".join((tmp_path / "key.pub").read_text().split()[:2])
    (tmp_path / "payload").write_bytes(PAYLOAD)
    assert ssh_keygen("-Y", "sign", "-f", "key", "-n", "promo-record", "payload", cwd=tmp_path).returncode == 0
    blob = base64.b64decode("".join((tmp_path / "payload.sig").read_text().splitlines()[1:-1]))
    assert verify(blob, PAYLOAD, frozenset({key.public})) == key.public
    with pytest.raises(BadSignature, match="does not match"):
        verify(blob, PAYLOAD + b"x", frozenset({key.public}))


def test_what_promo_signs_ssh_keygen_verifies_for_its_namespace_only(tmp_path: Path) -> None:
    key = SigningKey.generate()
    (tmp_path / "signers").write_text(key.public.allowed_signers_line() + "\n")
    (tmp_path / "record.sig").write_text(armor(key.sign(PAYLOAD)))

    def check(namespace: str) -> int:
        args = ("-Y", "verify", "-f", "signers", "-I", "promo", "-n", namespace, "-s", "record.sig")
        return ssh_keygen(*args, cwd=tmp_path, stdin=PAYLOAD).returncode

    assert check("promo-record") == 0
    assert check("git") != 0  # not a git commit or tag signature, and the signers line allows only promo-record


def test_signatures_from_elsewhere_are_refused_with_a_reason() -> None:
    key, stranger = SigningKey.generate(), SigningKey.generate()
    signers = frozenset({key.public})
    with pytest.raises(BadSignature, match="not in .promo/record-signers"):
        verify(stranger.sign(PAYLOAD), PAYLOAD, signers)
    with pytest.raises(BadSignature, match="not an SSH signature"):
        verify(b"garbage!" * 8, PAYLOAD, signers)
    with pytest.raises(BadSignature, match="malformed"):
        verify(key.sign(PAYLOAD)[:40], PAYLOAD, signers)
    other_namespace = key.sign(PAYLOAD).replace(b"promo-record", b"promo-reCord")
    with pytest.raises(BadSignature, match="namespace"):
        verify(other_namespace, PAYLOAD, signers)


def test_the_allowed_signers_file_is_ssh_keygens() -> None:
    promo, git_only, plain = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    text = "\n".join(
        [
            "# comments and blank lines are fine",
            "",
            promo.public.allowed_signers_line(),
            f'someone namespaces="git" {git_only.public.openssh()}',  # a key for git commits, not for records
            f"auditor {plain.public.openssh()} a comment",  # no namespaces: any
            "rsa ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ",  # other key types are not promo's
        ]
    )
    assert parse_allowed_signers(text) == {promo.public, plain.public}
    assert parse_allowed_signers(None) == frozenset()


def test_the_private_key_never_shows() -> None:
    key = SigningKey.generate()
    secret = key.to_openssh()
    body = "".join(secret.splitlines()[1:-1])
    assert body not in repr(key) and body not in str(key) and key.public.fingerprint() in str(key)
    broken = secret.replace(body[20:60], "A" * 40)
    with pytest.raises(ConfigError) as refused:
        SigningKey.from_openssh(broken)
    assert body[:20] not in str(refused.value) and "A" * 40 not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__context__ is None
    assert SigningKey.from_openssh(secret).public == key.public


def test_a_signed_record_holds_only_in_its_own_log_and_about_its_own_commit() -> None:
    key = SigningKey.generate()
    log, commit = "refs/promo/log/verdicts/hello/test", "9f" * 20
    message = sign_record(key, log, commit, "verified: hello 1.0.0 in test\n\nVerdict: verified\n")
    signers = frozenset({key.public})
    assert signed_commit(message) == commit  # readable before any check, to look its commit up
    assert signed_content(log, commit, message, signers) == "verified: hello 1.0.0 in test\n\nVerdict: verified\n"
    with pytest.raises(BadSignature, match="signed for another record"):
        signed_content("refs/promo/log/verdicts/hello/prod", commit, message, signers)
    with pytest.raises(BadSignature, match="signed for another commit"):
        signed_content(log, "ab" * 20, message, signers)
    with pytest.raises(BadSignature, match="does not match"):
        signed_content(log, commit, message.replace("Verdict: verified", "Verdict: failed"), signers)
