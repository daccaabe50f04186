"""Container image builds: build a Containerfile and push the image, with buildah or docker buildx.

Both builders push as part of the build and return the digest the registry stored, so later steps can pin
``repo@digest`` instead of trusting a mutable tag. Credentials are promo.registry.oci's (so ECR tokens work here too) and
reach the tool through a 0600 ``config.json`` in a private temporary directory: never through its arguments, its
environment values or our messages. No retries here: a TransientError is retried by the task layer.

A build is stamped with its commit's time (buildah ``--timestamp``, buildx ``SOURCE_DATE_EPOCH`` with
``rewrite-timestamp``), so building one commit twice gives one digest. publish-dev still builds a tag only once
(``existing_image``): not every Containerfile is reproducible (a RUN that downloads, a base image by tag).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from promo.errors import AuthError, InputError, PromoError, ToolError, TransientError
from promo.registry.credentials import CREDENTIALS_FIX, Credentials
from promo.registry.names import DIGEST_PATTERN, REPOSITORY_PATTERN, TAG_PATTERN
from promo.registry.oci import Registry

BuilderKind = Literal["auto", "buildah", "docker"]

DOCKER_PROBE_SECONDS = 2.0
STDERR_TAIL_LINES = 3

_INSTALL = {
    "buildah": "install it with `apt-get install buildah`, or set image.builder: docker in promo.yaml",
    "docker": "install docker-ce-cli and docker-buildx-plugin from Docker's apt repository "
    "(https://docs.docker.com/engine/install/debian/), or set image.builder: buildah in promo.yaml",
}

_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]+)?")
_AUTH_FAILURE = re.compile(
    r"unauthori[sz]ed|authentication required|(?<!permission )denied|no basic auth credentials|\b40[13]\b", re.I
)
_TRANSIENT_FAILURE = re.compile(
    r"connection refused|connection reset|broken pipe|i/o timeout|timed? ?out|temporary failure|unexpected EOF"
    r"|too ?many ?requests|\b429\b|\b50[0234]\b|internal server error|bad gateway|service unavailable",
    re.I,
)


@dataclass(frozen=True)
class BuiltImage:
    repository: str
    tag: str
    digest: str
    reused: bool = False  # the registry held the tag already: nothing was built or pushed

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        return f"{self.repository}@{self.digest}"


class ImageBuilder(Protocol):
    def build_and_push(
        self,
        *,
        context: Path,
        containerfile: Path,
        repository: str,
        tag: str,
        created: int,
        insecure: bool,
        login: Credentials | None,
    ) -> BuiltImage:
        """Build ``containerfile`` in ``context`` with every timestamp set to ``created`` (epoch seconds), push it
        as ``repository:tag`` and return the digest the registry stored."""
        ...


@dataclass(frozen=True)
class Buildah:
    """Daemonless builds: vfs storage and chroot isolation work as root inside a container, with no daemon.

    ``storage_root`` keeps images out of the host's /var/lib/containers (a sandbox passes its own directory).
    """

    storage_root: Path | None = None

    def build_and_push(
        self,
        *,
        context: Path,
        containerfile: Path,
        repository: str,
        tag: str,
        created: int,
        insecure: bool,
        login: Credentials | None,
    ) -> BuiltImage:
        reference = _checked_reference(context, containerfile, repository, tag)
        tool = ["buildah", "--storage-driver", "vfs"]
        if self.storage_root is not None:
            tool += ["--root", str(self.storage_root / "storage"), "--runroot", str(self.storage_root / "run")]
        with tempfile.TemporaryDirectory(prefix="promo-buildah-") as scratch:
            auth = _Auth.write(Path(scratch), repository, login)
            authfile = ["--authfile", str(auth.file)] if auth.file else []
            # --timestamp sets the image's and its files' times: one context then always gives one digest.
            bud = ["bud", "--isolation", "chroot", "--timestamp", str(created), *authfile, "-f", str(containerfile)]
            _run(
                [*tool, *bud, "-t", reference, str(context)],
                what=f"building image {reference}",
                fix="fix the Containerfile or the build context (the same buildah bud run by hand shows the whole log)",
                auth=auth,
            )
            # buildah 1.28 ignores --retry 0 and always tries 3 times: a 1 ms delay makes that cost nothing.
            digestfile = Path(scratch) / "digest"
            tls = ["--tls-verify=false"] if insecure else []
            push = ["push", "--quiet", "--retry", "0", "--retry-delay", "1ms", "--digestfile", str(digestfile)]
            _run(
                [*tool, *push, *tls, *authfile, reference, f"docker://{reference}"],
                what=f"pushing image {reference}",
                fix=f"check that {repository} is a registry this machine can push to "
                "(a plain-HTTP registry needs registry.insecure: true in promo.yaml)",
                auth=auth,
            )
            digest = _checked_digest(digestfile.read_text(encoding="utf-8"), reference)
        return BuiltImage(repository=repository, tag=tag, digest=digest)


@dataclass(frozen=True)
class DockerBuildx:
    """Builds on a Docker daemon with buildx, pushing in the same command.

    Whether a registry may be plain HTTP is the daemon's setting (loopback registries are by default; others
    need ``insecure-registries`` in daemon.json), so ``insecure`` changes nothing here.
    """

    def argv(self, *, context: Path, containerfile: Path, reference: str, metadata_file: Path) -> list[str]:
        # type=registry is `--push`; rewrite-timestamp clamps the layers' file times to SOURCE_DATE_EPOCH (set in
        # the environment) too. A provenance attestation records when the build ran: it would change the digest.
        return [
            "docker", "buildx", "build", "--output", "type=registry,rewrite-timestamp=true", "--provenance=false",
            "--metadata-file", str(metadata_file), "-t", reference, "-f", str(containerfile), str(context),
        ]  # fmt: skip

    def build_and_push(
        self,
        *,
        context: Path,
        containerfile: Path,
        repository: str,
        tag: str,
        created: int,
        insecure: bool,
        login: Credentials | None,
    ) -> BuiltImage:
        reference = _checked_reference(context, containerfile, repository, tag)
        with tempfile.TemporaryDirectory(prefix="promo-buildx-") as scratch:
            auth = _Auth.write(Path(scratch), repository, login)
            metadata_file = Path(scratch) / "metadata.json"
            _run(
                self.argv(context=context, containerfile=containerfile, reference=reference, metadata_file=metadata_file),
                what=f"building and pushing image {reference}",
                fix=f"fix the Containerfile or the build context, and check that {repository} accepts our pushes",
                auth=auth,
                env=_docker_env(auth, created),
            )
            metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
            digest = _checked_digest(str(metadata.get("containerimage.digest", "")), reference)
        return BuiltImage(repository=repository, tag=tag, digest=digest)


def select_builder(kind: BuilderKind, storage_root: Path | None = None) -> ImageBuilder:
    """``auto`` takes docker buildx when a daemon answers within DOCKER_PROBE_SECONDS, else buildah."""
    if kind == "auto":
        kind = "docker" if _docker_answers() else "buildah"
    if shutil.which(kind) is None:
        raise _missing(kind)
    return DockerBuildx() if kind == "docker" else Buildah(storage_root)


def existing_image(registry: Registry, repository: str, tag: str) -> BuiltImage | None:
    """The image ``repository:tag`` (``host/path``) as ``registry`` holds it already, or None.

    A pushed tag is never pushed again: whoever runs that tag keeps the bytes that were tested, and a repository
    with immutable tags (ECR) accepts a re-run.
    """
    digest = registry.manifest_digest(repository.partition("/")[2], tag)
    return BuiltImage(repository, tag, digest, reused=True) if digest is not None else None


def registry_host(repository: str) -> str:
    """``host[:port]`` of a ``host[:port]/path`` repository."""
    return repository.partition("/")[0]


@dataclass(frozen=True)
class _Auth:
    """A login written as ``config.json`` (the format docker and containers-auth.json share), and what to mask."""

    file: Path | None
    secrets: tuple[str, ...] = ()

    @classmethod
    def write(cls, directory: Path, repository: str, login: Credentials | None) -> _Auth:
        basic = login.basic_auth() if login is not None else None
        if basic is None:
            return cls(file=None)
        token = base64.b64encode(":".join(basic).encode()).decode()
        path = directory / "config.json"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            json.dump({"auths": {registry_host(repository): {"auth": token}}}, file)
        return cls(file=path, secrets=(basic[1], token))

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def _docker_env(auth: _Auth, created: int) -> dict[str, str]:
    """``SOURCE_DATE_EPOCH`` (buildx passes it to the build as the time of everything it creates) and, with a login,
    a private DOCKER_CONFIG that still sees the user's CLI plugins (buildx may live there)."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(created)}
    if auth.file is None:
        return env
    plugins = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "cli-plugins"
    if plugins.is_dir():
        (auth.file.parent / "cli-plugins").symlink_to(plugins)
    return {**env, "DOCKER_CONFIG": str(auth.file.parent)}


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    for probe in (["docker", "info", "--format", "{{.ServerVersion}}"], ["docker", "buildx", "version"]):
        try:
            result = subprocess.run(probe, capture_output=True, stdin=subprocess.DEVNULL, timeout=DOCKER_PROBE_SECONDS)
        except subprocess.TimeoutExpired:
            return False
        if result.returncode != 0:
            return False
    return True


def _missing(tool: str) -> ToolError:
    return ToolError(f"{tool} is not installed (not found on PATH)", _INSTALL[tool])


def _checked_reference(context: Path, containerfile: Path, repository: str, tag: str) -> str:
    host, _, path = repository.partition("/")
    if not (_HOST.fullmatch(host) and REPOSITORY_PATTERN.fullmatch(path)):
        raise InputError(
            f"image repository {repository!r} is not host/path in lowercase",
            "set image.repository in promo.yaml to e.g. registry.example.com/team/hello (OCI and ECR need lowercase)",
        )
    if not TAG_PATTERN.fullmatch(tag):
        raise InputError(
            f"image tag {tag!r} is not valid",
            "use at most 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
        )
    if not context.is_dir():
        raise InputError(f"build context {context} is not a directory", "set image.context in promo.yaml to a directory")
    if not containerfile.is_file():
        raise InputError(f"Containerfile {containerfile} not found", "set image.containerfile in promo.yaml to a file")
    return f"{repository}:{tag}"


def _checked_digest(text: str, reference: str) -> str:
    digest = text.strip()
    if not DIGEST_PATTERN.fullmatch(digest):
        raise ToolError(f"pushing {reference} reported no valid digest ({digest[:80]!r})", "check the builder's version")
    return digest


def _run(argv: list[str], *, what: str, fix: str, auth: _Auth, env: dict[str, str] | None = None) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        raise _missing(argv[0]) from None
    if result.returncode != 0:
        raise _failure(what, fix, _tail(auth.mask(result.stderr or result.stdout)))


def _failure(what: str, fix: str, tail: str) -> PromoError:
    cause = f"{what} failed: {tail}"
    if _AUTH_FAILURE.search(tail):
        return AuthError(cause, CREDENTIALS_FIX)
    if _TRANSIENT_FAILURE.search(tail):
        return TransientError(cause, "the registry or the network failed for now; retry")
    return ToolError(cause, fix)


def _tail(output: str) -> str:
    """The last lines of a tool's output, its retry warnings left out."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and "level=warning" not in line]
    return " | ".join(lines[-STDERR_TAIL_LINES:])[-600:] or "no error output"
