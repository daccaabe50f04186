"""The one exception hierarchy of promo.

    PromoError                 anything promo refuses or fails to do
    ├── ConfigError            promo.yaml missing, unreadable or invalid
    ├── InputError             a bad value from the user: version, tag, environment, app name, part
    ├── ManifestError          a GitOps manifest that cannot be read or edited safely
    ├── ChartError             a chart directory or package that is not a valid Helm chart
    ├── NotFound               something that must exist does not (chart in registry, environment version, tag)
    ├── AuthError              a registry or forge refused our credentials (never retried)
    ├── ConflictError          the world holds something that contradicts the request (a tag with other content)
    │   ├── NotMergeable           a pull request GitHub will not merge: conflicts, reviews or checks missing
    │   └── HeadMoved              a pull request's head is no longer the commit that was reviewed
    ├── ApprovalRejected       a gate was rejected or timed out
    ├── VerificationFailed     a deployed version did not come up synced and healthy (or was not verified in time)
    ├── ToolError              an external tool (buildah, docker, git) failed for a non-transient reason
    └── TransientError         network errors, 5xx, 429, rejected pushes: the only errors tasks retry
        ├── RegistryUnavailable    a registry fault, with the Retry-After it asked for
        └── BaseMoved              a pull request's base branch moved during the merge: merge again

Every error carries a cause and a fix, and renders as one line: ``<cause>; <fix>``. Messages never carry
secrets: callers build them from names and values the user already sees, never from credentials.
"""

from __future__ import annotations


class PromoError(Exception):
    """Base class: a one-line message that names what was wrong and what to do."""

    exit_code = 1

    def __init__(self, cause: str, fix: str | None = None) -> None:
        self.cause = " ".join(cause.split())
        self.fix = " ".join(fix.split()) if fix else None
        super().__init__(self.cause if not self.fix else f"{self.cause}; {self.fix}")


class ConfigError(PromoError):
    exit_code = 2


class InputError(PromoError):
    exit_code = 2


class ManifestError(PromoError):
    exit_code = 3


class ChartError(PromoError):
    exit_code = 3


class NotFound(PromoError):
    exit_code = 4


class AuthError(PromoError):
    exit_code = 5


class ConflictError(PromoError):
    exit_code = 6


class NotMergeable(ConflictError):
    """GitHub refused to merge a pull request (405): its reason is in the message (a rule, a check, conflicts)."""


class HeadMoved(ConflictError):
    """A merge named the head commit that was reviewed, and the pull request's head is another one now (409)."""


class StaleBranch(ConflictError):
    """A write's pull-request branch holds another change: an earlier attempt's, on a target that moved since."""


class ApprovalRejected(PromoError):
    exit_code = 7


class VerificationFailed(PromoError):
    exit_code = 10


class ToolError(PromoError):
    exit_code = 8


class TransientError(PromoError):
    """A fault worth retrying: the same call may succeed a moment later."""

    exit_code = 9


class RegistryUnavailable(TransientError):
    """A registry fault worth retrying; ``retry_after`` holds the seconds the registry asked us to wait, if any."""

    def __init__(self, cause: str, fix: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(cause, fix)
        self.retry_after = retry_after


class BaseMoved(TransientError):
    """The base branch moved while GitHub merged a pull request (405 "Base branch was modified"): merge again."""
