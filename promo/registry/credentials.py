"""Registry credentials: anonymous, basic (a username and password found for them), or ECR's token.

The client (promo.registry.oci) asks a ``Credentials`` for a Basic pair, or None, when a registry challenges it.
Passwords live in private attributes and never reach a message or a repr. ECR's password comes from
``ecr:GetAuthorizationToken`` and is renewed before it expires; boto3 is imported only by ECR users.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from promo.errors import AuthError, ConfigError, InputError, NotFound, PromoError, RegistryUnavailable

USERNAME_VARIABLE = "PROMO_REGISTRY_USERNAME"
PASSWORD_VARIABLE = "PROMO_REGISTRY_PASSWORD"
PASSWORD_BLOCK = "promo-registry-password"  # the Prefect Secret block read when $PROMO_REGISTRY_PASSWORD is unset
CREDENTIALS_FIX = (
    f"check the registry credentials ({USERNAME_VARIABLE}/{PASSWORD_VARIABLE} or the Secret block {PASSWORD_BLOCK},"
    " or AWS credentials for ECR)"
)

ECR_HOST_PATTERN = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?(?::\d+)?"
)
# Renew an ECR password this long before AWS says it expires (they last 12 hours).
ECR_TOKEN_MARGIN = timedelta(minutes=5)


class Credentials(Protocol):
    """What the client needs from credentials: a username and password for Basic auth, or None."""

    def basic_auth(self) -> tuple[str, str] | None: ...


@dataclass(frozen=True)
class Anonymous:
    def basic_auth(self) -> None:
        return None


class BasicCredentials:
    """A username and password; the password is private and hidden from repr."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password

    def basic_auth(self) -> tuple[str, str]:
        return self.username, self._password

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r}, password=<hidden>)"


class EcrCredentials:
    """Basic credentials ``AWS:<password>`` fetched from ECR with the ambient AWS credentials, renewed on expiry."""

    def __init__(self, region: str, *, registry_id: str | None = None, client: Any | None = None) -> None:
        self.region = region
        self.registry_id = registry_id  # the AWS account of the registry; None: the caller's own
        self._client = client
        self._password: str | None = None
        self._expires_at = datetime.min.replace(tzinfo=timezone.utc)

    def basic_auth(self) -> tuple[str, str]:
        if self._password is None or datetime.now(timezone.utc) >= self._expires_at - ECR_TOKEN_MARGIN:
            self._password, self._expires_at = self._fetch()
        return "AWS", self._password

    def __repr__(self) -> str:
        return f"EcrCredentials(region={self.region!r})"

    def require_repository(self, repository: str) -> None:
        """ECR creates no repository on push (a push to a missing one fails half-way), so its absence is named now."""
        missing = NotFound(
            f"ECR repository {repository} does not exist in {self.region}",
            f"create it: aws ecr create-repository --repository-name {repository} --region {self.region}",
        )
        account = {"registryId": self.registry_id} if self.registry_id else {}
        self._call(
            "DescribeRepositories",
            lambda ecr: ecr.describe_repositories(repositoryNames=[repository], **account),
            known={"RepositoryNotFoundException": missing},
        )

    def _fetch(self) -> tuple[str, datetime]:
        data = self._call("GetAuthorizationToken", lambda ecr: ecr.get_authorization_token())["authorizationData"][0]
        username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        if username != "AWS" or not password:
            raise AuthError(f"ECR in {self.region} returned an authorization token of an unknown form", CREDENTIALS_FIX)
        return password, data["expiresAt"]

    def _call(
        self, operation: str, call: Callable[[Any], Any], *, known: Mapping[str, PromoError] | None = None
    ) -> Any:
        """One ECR API call; every failure leaves as a promo error, the one ``known`` names for its error code."""
        import boto3  # only ECR users pay for importing boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

        try:
            self._client = self._client or boto3.client("ecr", region_name=self.region)
            return call(self._client)
        except (NoCredentialsError, PartialCredentialsError):
            raise AuthError(f"no AWS credentials to call ECR {operation} in {self.region}", CREDENTIALS_FIX) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "unknown")
            if known and code in known:
                raise known[code] from None
            if code in ("ServerException", "ThrottlingException"):
                failed = f"ECR in {self.region} failed {operation}: {code}"
                raise RegistryUnavailable(failed, "promo retries this") from None
            raise AuthError(f"ECR in {self.region} refused {operation}: {code}", CREDENTIALS_FIX) from None
        except BotoCoreError as exc:
            raise RegistryUnavailable(
                f"cannot reach ECR in {self.region}: {type(exc).__name__}", "check the network; promo retries this"
            ) from None


def ecr_credentials(host: str) -> EcrCredentials:
    """ECR credentials for a registry host ``<account>.dkr.ecr.<region>.amazonaws.com``."""
    match = ECR_HOST_PATTERN.fullmatch(host)
    if match is None:
        raise InputError(
            f"registry host {host!r} is not an ECR registry",
            "use <account-id>.dkr.ecr.<region>.amazonaws.com, or another credentials kind for this registry",
        )
    return EcrCredentials(match["region"], registry_id=match["account"])


def credentials_for(
    kind: Literal["anonymous", "basic", "ecr"],
    host: str,
    *,
    username: str | None = None,
    password: str | None = None,
) -> Credentials:
    """Credentials of ``kind`` for ``host``; basic ones need the username and password found for them
    (``promo.clients.registry_credentials`` says where from)."""
    if kind == "anonymous":
        return Anonymous()
    if kind == "ecr":
        return ecr_credentials(host)
    if kind == "basic":
        missing = [what for what, value in (("username", username), ("password", password)) if not value]
        if missing:
            raise ConfigError(
                f"basic credentials for registry {host} have no {' and no '.join(missing)}",
                f"set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, "
                f"or registry.username in promo.yaml and the Prefect Secret block {PASSWORD_BLOCK}",
            )
        return BasicCredentials(username, password)
    raise ConfigError(f"unknown registry credentials kind {kind!r}", "use anonymous, basic or ecr")
