"""Signatures on promo's records: Ed25519 keys, signatures in OpenSSH's SSHSIG format, an allowed-signers list.

Why this scheme, and not an HMAC or git's own tag signing:

- Public-key, so readers hold no secret: ``promo status`` and ``promo history`` on anyone's laptop verify with the
  public keys alone; only the writer (a worker, with the private key from a Prefect Secret block) can sign. An HMAC
  would put the signing secret on every reader, and anyone who can read could forge.
- In-process: a signature is checked with ``cryptography`` in tens of microseconds, so reading thousands of records
  starts no ``ssh-keygen`` or ``gpg`` process per record.
- Auditable by hand: the signature is a standard SSHSIG blob (namespace ``promo-record``), so
  ``ssh-keygen -Y verify`` checks a record with the same allowed-signers file promo reads (docs/records.md).
- Git's own tag signing would sign the tag object, whose header (tagger time) is built inside the mirror; signing
  the record's message instead keeps ``Mirror`` unchanged and lets the payload name the very ref it belongs in.

The allowed-signers list is ``ALLOWED_SIGNERS_PATH`` on the GitOps repository's branch, in ssh-keygen's format: it
is where every reader of records already looks (no config needed, so ``status --all`` checks every app's records),
and it changes only as the branch does, under that branch's protection (which ``refs/promo/*`` does not get).

The private key never leaves ``SigningKey``: it is not in its repr, in exceptions or in logs.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from promo.errors import ConfigError

NAMESPACE = "promo-record"
ALLOWED_SIGNERS_PATH = ".promo/record-signers"
PRINCIPAL = "promo"
_MAGIC = b"SSHSIG"
_VERSION = 1
_HASH = "sha512"
_KEY_TYPE = "ssh-ed25519"
_RECORD, _COMMIT, _SIGNATURE = "Record", "Commit", "Record-Signature"
_ARMOR_BEGIN, _ARMOR_END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"
_SIGNER_LINE = re.compile(rf"(?:^|\s){_KEY_TYPE}\s+(?P<key>[A-Za-z0-9+/]+=*)")
_NAMESPACES = re.compile(r'namespaces="(?P<names>[^"]*)"')


class BadSignature(Exception):
    """Why a signature does not prove a record: one line, for ``Verdict.untrusted_reason``."""


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key as OpenSSH writes it (``ssh-ed25519 AAAA...``)."""

    blob: bytes  # the SSH wire form: string "ssh-ed25519", string 32 key bytes

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        found = _SIGNER_LINE.search(text)
        if found is None:
            raise ValueError(f"not an {_KEY_TYPE} public key: {text[:40]!r}")
        blob = base64.b64decode(found["key"], validate=True)
        _key_bytes(blob)
        return cls(blob)

    def openssh(self) -> str:
        return f"{_KEY_TYPE} {base64.b64encode(self.blob).decode()}"

    def fingerprint(self) -> str:
        """As ``ssh-keygen -l`` shows it: ``SHA256:`` and unpadded base64."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    def allowed_signers_line(self) -> str:
        """This key's line in an allowed-signers file, for ``NAMESPACE`` only."""
        return f'{PRINCIPAL} namespaces="{NAMESPACE}" {self.openssh()}'


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key; ``repr`` and ``str`` show only its public half."""

    _key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_openssh(cls, text: str) -> SigningKey:
        """A key in OpenSSH's private key format, as ``to_openssh`` (or ``ssh-keygen -t ed25519``) writes it."""
        try:
            key = serialization.load_ssh_private_key(text.encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None  # the library's message may quote the key material: say nothing of it
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(
                "the record signing key is not an unencrypted OpenSSH Ed25519 private key",
                "delete the Secret block and run `promo setup` to make a new key (then drop the old public key "
                f"from {ALLOWED_SIGNERS_PATH} once its records no longer matter)",
            )
        return cls(key)

    def to_openssh(self) -> str:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode()

    @property
    def public(self) -> PublicKey:
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(_string(_KEY_TYPE.encode()) + _string(raw))

    def sign(self, payload: bytes) -> bytes:
        """The SSHSIG blob signing ``payload`` in ``NAMESPACE`` (``ssh-keygen -Y sign -n promo-record``)."""
        signature = self._key.sign(_signed_data(payload))
        return (
            _MAGIC
            + struct.pack(">I", _VERSION)
            + _string(self.public.blob)
            + _string(NAMESPACE.encode())
            + _string(b"")
            + _string(_HASH.encode())
            + _string(_string(_KEY_TYPE.encode()) + _string(signature))
        )

    def __str__(self) -> str:
        return f"SigningKey({self.public.fingerprint()})"


def verify(blob: bytes, payload: bytes, signers: frozenset[PublicKey]) -> PublicKey:
    """The signer of ``blob`` over ``payload`` when it is one of ``signers``; else BadSignature saying why."""
    try:
        fields = _Reader(blob)
        if fields.take(len(_MAGIC)) != _MAGIC or fields.uint32() != _VERSION:
            raise BadSignature("not an SSH signature")
        signer = PublicKey(fields.string())
        namespace, _reserved, hash_name, signature = (fields.string() for _ in range(4))
        inner = _Reader(signature)
        algorithm, raw_signature = inner.string(), inner.string()
    except (ValueError, struct.error):
        raise BadSignature("the signature is malformed") from None
    if namespace != NAMESPACE.encode():
        raise BadSignature(f"the signature is for namespace {namespace[:40]!r}, not {NAMESPACE}")
    if hash_name != _HASH.encode() or algorithm != _KEY_TYPE.encode():
        raise BadSignature("the signature is not an Ed25519/SHA-512 signature")
    if signer not in signers:
        raise BadSignature(f"signed by {signer.fingerprint()}, which is not in {ALLOWED_SIGNERS_PATH}")
    try:
        Ed25519PublicKey.from_public_bytes(_key_bytes(signer.blob)).verify(raw_signature, _signed_data(payload))
    except (InvalidSignature, ValueError):
        raise BadSignature("the signature does not match the record's content") from None
    return signer


def parse_allowed_signers(text: str | None) -> frozenset[PublicKey]:
    """The Ed25519 keys an allowed-signers file lets sign promo's records (lines limited to other namespaces and
    other key types are not)."""
    keys = set()
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        namespaces = _NAMESPACES.search(line)
        if namespaces is not None and NAMESPACE not in namespaces["names"].split(","):
            continue
        try:
            keys.add(PublicKey.parse(line))
        except ValueError:
            continue
    return frozenset(keys)


def sign_record(key: SigningKey, ref: str, commit: str, message: str) -> str:
    """``message`` as the record at ``ref`` (a record log, or a record ref of old) about GitOps ``commit`` holds it:
    with trailers naming that ref and commit, then a ``Record-Signature`` trailer signing everything above it. A
    signature thus cannot be moved to another log, kind, subject or commit, and ``ssh-keygen -Y verify`` checks it over
    the message minus its last line."""
    payload = f"{message.strip()}\n{_RECORD}: {ref}\n{_COMMIT}: {commit}\n"
    return payload + f"{_SIGNATURE}: {base64.b64encode(key.sign(payload.encode())).decode()}\n"


def signed_commit(message: str | None) -> str:
    """The commit a record's text says it is about (its ``Commit:`` line above the signature), whether or not the
    record is signed; "" when it names none."""
    for line in reversed((message or "").strip().split("\n")):
        label, _, value = line.partition(": ")
        if label == _COMMIT:
            return value.strip()
    return ""


def signed_content(ref: str, commit: str, message: str | None, signers: frozenset[PublicKey]) -> str:
    """The text ``sign_record`` was given, when ``message`` (the record at ``ref``, about ``commit``) is signed by one
    of ``signers`` for this very ref and commit; else BadSignature saying why."""
    *lines, last = (message or "").strip().split("\n")
    label, _, signature = last.partition(": ")
    if label != _SIGNATURE or len(lines) < 2:
        raise BadSignature("the record is not signed")
    if not signers:
        raise BadSignature(f"no key may sign records: {ALLOWED_SIGNERS_PATH} on the GitOps branch lists none")
    payload = "\n".join(lines) + "\n"
    try:
        blob = base64.b64decode(signature, validate=True)
    except ValueError:
        raise BadSignature("the signature is not base64") from None
    verify(blob, payload.encode(), signers)
    *content, record, named_commit = lines
    if record != f"{_RECORD}: {ref}":
        raise BadSignature(f"it was signed for another record ({record.partition(': ')[2][:120]})")
    if named_commit != f"{_COMMIT}: {commit}":
        raise BadSignature(f"it was signed for another commit ({named_commit.partition(': ')[2][:40]})")
    return "\n".join(content) + "\n"


def armor(blob: bytes) -> str:
    """``blob`` as ``ssh-keygen -Y sign`` writes a signature file."""
    text = base64.b64encode(blob).decode()
    lines = [text[start : start + 70] for start in range(0, len(text), 70)]
    return "\n".join([_ARMOR_BEGIN, *lines, _ARMOR_END]) + "\n"


def _signed_data(payload: bytes) -> bytes:
    digest = hashlib.sha512(payload).digest()
    return _MAGIC + _string(NAMESPACE.encode()) + _string(b"") + _string(_HASH.encode()) + _string(digest)


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _key_bytes(blob: bytes) -> bytes:
    fields = _Reader(blob)
    if fields.string() != _KEY_TYPE.encode():
        raise ValueError(f"not an {_KEY_TYPE} key")
    raw = fields.string()
    if len(raw) != 32:
        raise ValueError("an Ed25519 key is 32 bytes")
    return raw


class _Reader:
    """Reads SSH wire fields (RFC 4251: uint32, length-prefixed string) from a buffer, refusing to read past it."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def take(self, size: int) -> bytes:
        if self._at + size > len(self._data):
            raise ValueError("truncated")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk

    def uint32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def string(self) -> bytes:
        return self.take(self.uint32())
