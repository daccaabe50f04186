"""Helm charts in an OCI registry, stored exactly the way ``helm push`` stores them.

A chart is an OCI image manifest with the chart's metadata as config blob (Helm's ``json.Marshal(chart.Metadata)``)
and the ``.tgz`` as its only layer, tagged with the chart version (``+`` becomes ``_``, which tags forbid). Helm
also adds an ``org.opencontainers.image.created`` annotation with the current time; it is left out here so the
same chart always gives the same manifest digest, which is what lets a promotion prove it moved the tested chart.

Pushes are create-only: a tag that holds the same manifest is not written again (ECR repositories with immutable
tags refuse even that), and one that holds another manifest is never replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from promo.registry.charts import ChartPackage, read_chart
from promo.errors import ChartError, ConflictError, InputError, NotFound
from promo.registry.names import DIGEST_PATTERN, digest_of
from promo.registry.oci import OCI_MANIFEST, Registry

CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
CHART_LAYER_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
LEGACY_CHART_LAYER_MEDIA_TYPE = "application/tar+gzip"  # charts pushed by Helm < 3.7

# The JSON field order of Helm's chart.Metadata, Maintainer and Dependency structs: Go marshals struct fields
# in declaration order and omits empty ones (all are omitempty except a dependency's name and repository).
_METADATA_FIELDS = (
    "name", "home", "sources", "version", "description", "keywords", "maintainers", "icon", "apiVersion",
    "condition", "tags", "appVersion", "deprecated", "annotations", "kubeVersion", "dependencies", "type",
)  # fmt: skip
_MAINTAINER_FIELDS = ("name", "email", "url")
_DEPENDENCY_FIELDS = ("name", "version", "repository", "condition", "tags", "enabled", "import-values", "alias")
_DEPENDENCY_REQUIRED = ("name", "repository")


@dataclass(frozen=True)
class PushedChart:
    repository: str
    tag: str
    digest: str
    reused: bool = False  # the registry held the tag already: nothing was pushed


def chart_repository(namespace: str, chart_name: str) -> str:
    """The repository ``helm push chart.tgz oci://host/<namespace>`` writes to: ``<namespace>/<chart name>``."""
    namespace = namespace.strip("/")
    return f"{namespace}/{chart_name}" if namespace else chart_name


def chart_tag(version: str) -> str:
    """Helm's tag for a chart version: SemVer build metadata ``+`` is not allowed in tags, so it becomes ``_``."""
    return version.replace("+", "_")


def existing_chart(registry: Registry, repository: str, version: str) -> PushedChart | None:
    """Chart ``version`` as the registry holds it already, or None."""
    tag = chart_tag(version)
    digest = registry.manifest_digest(repository, tag)
    return PushedChart(repository, tag, digest, reused=True) if digest is not None else None


def push_chart(registry: Registry, repository: str, chart: ChartPackage) -> PushedChart:
    """Push a chart package as Helm does; the digest depends only on the package bytes.

    Create-only: when the tag holds this very manifest already nothing is written (``reused``); when it holds
    another one, ConflictError, and the tag keeps what it had.
    """
    contents = read_chart(chart.data)  # the archive, not the dataclass fields, is what gets pushed
    if repository.rsplit("/", 1)[-1] != contents.name:
        raise InputError(
            f"repository {repository!r} does not end with the chart name {contents.name!r}",
            "push to chart_repository(namespace, chart name), as `helm push` does",
        )
    metadata = helm_metadata(contents.metadata)
    config = _go_json(metadata)
    tag = chart_tag(contents.version)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(CONFIG_MEDIA_TYPE, config),
        "layers": [_descriptor(CHART_LAYER_MEDIA_TYPE, chart.data)],
        "annotations": _annotations(metadata),
    }
    manifest_data = _go_json(manifest)
    existing = existing_chart(registry, repository, contents.version)
    if existing is not None:
        if existing.digest != digest_of(manifest_data):
            raise ConflictError(
                f"chart {contents.name} {contents.version} is already in {registry.host}/{repository} "
                f"as {existing.digest}, other content than this package",
                f"a pushed chart is never replaced: package a new version, or use {existing.digest} as it is",
            )
        return existing
    registry.push_blob(repository, chart.data)
    registry.push_blob(repository, config)
    digest = registry.push_manifest(repository, tag, manifest_data, OCI_MANIFEST)
    return PushedChart(repository, tag, digest)


def pull_chart(registry: Registry, repository: str, reference: str) -> bytes:
    """The ``.tgz`` of a chart by version, tag or digest, after checking the manifest really is a Helm chart."""
    reference = reference if DIGEST_PATTERN.fullmatch(reference) else chart_tag(reference)
    where = f"{registry.host}/{repository}{'@' if ':' in reference else ':'}{reference}"
    try:
        manifest = registry.pull_manifest(repository, reference)
    except NotFound:
        raise NotFound(
            f"chart {where} not found", "check the chart name and version, or push the chart first"
        ) from None
    body = manifest.json()
    config_type = (body.get("config") or {}).get("mediaType")
    chart_layers = [
        layer
        for layer in body.get("layers") or []
        if isinstance(layer, dict) and layer.get("mediaType") in (CHART_LAYER_MEDIA_TYPE, LEGACY_CHART_LAYER_MEDIA_TYPE)
    ]
    if config_type != CONFIG_MEDIA_TYPE or not chart_layers:
        raise ChartError(
            f"{where} is not a Helm chart (config media type {config_type!r})",
            "point at a chart pushed by promo or `helm push`",
        )
    return registry.pull_blob(repository, chart_layers[0]["digest"])


def chart_config(registry: Registry, repository: str, reference: str) -> dict[str, Any]:
    """The config blob of a pushed chart: Chart.yaml's metadata (appVersion is the image tag), without the package."""
    reference = reference if DIGEST_PATTERN.fullmatch(reference) else chart_tag(reference)
    manifest = registry.pull_manifest(repository, reference).json()
    return json.loads(registry.pull_blob(repository, manifest["config"]["digest"]))


def helm_metadata(chart_yaml: dict[str, Any]) -> dict[str, Any]:
    """Chart.yaml as Helm loads it into ``chart.Metadata``: struct field order, empty fields dropped, strings
    sanitised as Helm's ``Validate`` does, ``apiVersion`` defaulting to v1. Its JSON is the config blob."""
    chart = {"apiVersion": "v1", **chart_yaml}
    fields = _go_struct(chart, _METADATA_FIELDS, (), "Chart.yaml")
    if "maintainers" in fields:
        fields["maintainers"] = [_go_struct(m, _MAINTAINER_FIELDS, (), "maintainer") for m in fields["maintainers"]]
    if "dependencies" in fields:
        fields["dependencies"] = [
            _go_struct(d, _DEPENDENCY_FIELDS, _DEPENDENCY_REQUIRED, "dependency") for d in fields["dependencies"]
        ]
    return fields


def _annotations(metadata: dict[str, Any]) -> dict[str, str]:
    """Helm's manifest annotations, minus the creation time, then the chart's own; Go marshals maps sorted."""
    maintainers = metadata.get("maintainers", [])
    authors = ", ".join(m.get("name", "") + (f" ({m['email']})" if "email" in m else "") for m in maintainers)
    standard = {
        "org.opencontainers.image.description": metadata.get("description", ""),
        "org.opencontainers.image.title": metadata["name"],
        "org.opencontainers.image.version": metadata["version"],
        "org.opencontainers.image.url": metadata.get("home", ""),
        "org.opencontainers.image.source": (metadata.get("sources") or [""])[0],
        "org.opencontainers.image.authors": authors,
    }
    annotations = {key: value for key, value in standard.items() if value.strip()}
    for key, value in metadata.get("annotations", {}).items():
        if key not in ("org.opencontainers.image.title", "org.opencontainers.image.version"):
            annotations[key] = value
    return dict(sorted(annotations.items()))


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}


def _go_struct(value: Any, fields: tuple[str, ...], required: tuple[str, ...], what: str) -> dict[str, Any]:
    """A Go struct's JSON: declared field order, empty fields omitted, strings sanitised, maps sorted by key."""
    if not isinstance(value, dict):
        raise ChartError(f"a {what} entry in Chart.yaml is not a mapping", "fix Chart.yaml")
    out: dict[str, Any] = {}
    for name in fields:
        item = value.get(name)
        if isinstance(item, str):
            item = _sanitize(item)
        elif isinstance(item, list):
            item = [_sanitize(i) if isinstance(i, str) else _sorted_map(i) for i in item]
        elif isinstance(item, dict):
            if not all(isinstance(v, str) for v in item.values()):
                raise ChartError(f"{what} {name} in Chart.yaml has a value that is not a string", "quote it")
            item = _sorted_map({str(k): _sanitize(v) for k, v in item.items()})
        elif item is not None and not isinstance(item, bool):
            raise ChartError(f"{what} field {name!r} in Chart.yaml is not a string", f"quote the value of {name}")
        if item or name in required:
            out[name] = item if item is not None else ""
    return out


def _sorted_map(value: Any) -> Any:
    return dict(sorted(value.items())) if isinstance(value, dict) else value


def _sanitize(text: str) -> str:
    """Helm's sanitizeString: whitespace becomes a space, other unprintable characters go."""
    return "".join(" " if char.isspace() else char for char in text if char.isspace() or char.isprintable())


_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_json(value: Any) -> bytes:
    """Go's ``json.Marshal`` encoding: compact, UTF-8 kept, ``<>&`` and U+2028/9 escaped as in HTML-safe mode."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)
    return text.encode("utf-8")
