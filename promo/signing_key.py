"""The key promo signs its records with: kept in a Prefect Secret block, made once, its public half published.

The private key lives in the Secret block ``SIGNING_KEY_BLOCK`` (or, for a worker that takes its credentials from
its environment, ``$PROMO_RECORD_SIGNING_KEY``; or, in a local world, the file promo.yaml's
``records.signing_key_file`` names), in OpenSSH's format. `promo setup` makes the block when there is none and never
replaces it (`promo sandbox`, which runs without Prefect, makes its file); both list the public half in the GitOps
branch's allowed-signers file, where every reader of records finds it without Prefect. Like promo/secrets.py, Prefect is imported inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from promo.errors import ConfigError
from promo.gitops.mirror import Mirror, Snapshot
from promo.gitops.signing import ALLOWED_SIGNERS_PATH, PublicKey, SigningKey, parse_allowed_signers
from promo.secrets import secret_block_value

SIGNING_KEY_BLOCK = "promo-record-signing-key"
SIGNING_KEY_VARIABLE = "PROMO_RECORD_SIGNING_KEY"


def record_signing_key(key_file: Path | None = None) -> SigningKey:
    """The key a run signs records with: ``$PROMO_RECORD_SIGNING_KEY``, else ``key_file`` (promo.yaml's
    ``records.signing_key_file``) when given, else the Secret block (the Prefect API is asked only then)."""
    text = os.environ.get(SIGNING_KEY_VARIABLE)
    if not text and key_file is not None:
        try:
            text = key_file.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"cannot read the record signing key file {key_file}: {error.strerror}",
                "fix records.signing_key_file in promo.yaml, or remove it to use the Secret block",
            ) from None
    text = text or secret_block_value(SIGNING_KEY_BLOCK)
    if not text:
        raise ConfigError(
            f"no key to sign promo's records with (the Secret block {SIGNING_KEY_BLOCK} does not exist)",
            "run `promo setup` once: it makes the key and lists it in the GitOps repository",
        )
    return SigningKey.from_openssh(text)


def ensure_signing_key() -> tuple[SigningKey, bool]:
    """The Secret block's key, made and saved when there is none (True); an existing key is never replaced, so two
    setups racing both end with the key saved first."""
    from prefect.blocks.system import Secret

    for _ in range(2):
        existing = secret_block_value(SIGNING_KEY_BLOCK)
        if existing:
            return SigningKey.from_openssh(existing), False
        key = SigningKey.generate()
        try:
            Secret(value=key.to_openssh()).save(SIGNING_KEY_BLOCK, overwrite=False)
            return key, True
        except ValueError:  # saved meanwhile by another setup (look again), or a block holding no key
            continue
    raise ConfigError(
        f"the Secret block {SIGNING_KEY_BLOCK} exists but holds no key",
        f"delete it (prefect block delete secret/{SIGNING_KEY_BLOCK}) and run `promo setup` again",
    )


def list_signer(mirror: Mirror, branch: str, public: PublicKey) -> bool:
    """Add ``public`` to the allowed-signers file on ``branch`` of the GitOps repository unless it is there already
    (False). One small commit; a protected branch that refuses it fails here, with the line to add by hand."""
    line = public.allowed_signers_line()

    def edit(head: Snapshot) -> dict[str, str] | None:
        text = head.read_file(ALLOWED_SIGNERS_PATH) or (
            "# Keys whose signatures promo believes on its records (refs/promo/*): ssh-keygen's allowed-signers\n"
            "# format. Remove a key to stop believing every record it signed. See docs/records.md.\n"
        )
        if public in parse_allowed_signers(text):
            return None
        return {ALLOWED_SIGNERS_PATH: text.rstrip("\n") + "\n" + line + "\n"}

    result = mirror.update_branch(branch, edit, lambda _: "promo: allow the record signing key\n\n" + line + "\n")
    return result.commit is not None

