"""Argo CD Application manifests: find and change the chart version (``targetRevision``), as pure functions on text.

A GitOps diff is read by people approving a promotion, so an edit changes exactly one scalar and nothing else:
ruamel.yaml only *locates* the value (its exact character span in the text), and the new value is spliced into the
original text in the quote style it already had. Comments, key order, indentation, CRLF line endings, document markers
and the ``status:`` block are kept byte for byte; a re-parse checks that the result reads back as the new version.

The chart version lives in the source that has a ``chart:`` key: ``spec.source`` of a single-source Application, or
the one chart entry of ``spec.sources``. Git sources (``path:``/``ref:``) carry git revisions and are never edited.
"""

from __future__ import annotations

import difflib
import re
from pathlib import PurePosixPath

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from promo.errors import InputError, ManifestError

DEFAULT_ROOT = "registry/environments"

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A chart version or git revision: safe unquoted and inside any quote style, so splicing never needs escaping.
_REVISION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$")


def validate_name(kind: str, value: str) -> str:
    """App, environment and cluster names become path segments: only DNS labels, so none can climb out of the root."""
    if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
        raise InputError(
            f"{kind} {value!r} is not a DNS label",
            "use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit "
            "(no '/', '..', spaces or shell characters)",
        )
    return value


def manifest_path(env: str, cluster: str, app: str, root: str = DEFAULT_ROOT) -> PurePosixPath:
    """``<root>/<env>/<cluster>/<app>.yaml``: every part validated, so the result is always inside ``root``."""
    return PurePosixPath(root) / validate_name("environment", env) / validate_name("cluster", cluster) / (
        validate_name("app", app) + ".yaml"
    )


def read_target_revision(text: str, source: str = "<manifest>") -> str:
    """The chart version an Application deploys: the text of its chart source's ``targetRevision``.

    An empty string (``targetRevision: ""``) is the convention for "nothing deployed yet" and is returned as is.
    """
    return _target_revision_node(text, source).value


def set_target_revision(text: str, version: str, source: str = "<manifest>") -> str:
    """``text`` with the chart source's ``targetRevision`` set to ``version``; only the value's bytes change."""
    if not isinstance(version, str) or not _REVISION.fullmatch(version):
        raise InputError(
            f"version {version!r} cannot be written to {source}",
            "pass a chart version such as 1.2.0 or 1.2.0-rc.abc1234 (letters, digits, '.', '-', '+', '_')",
        )
    node = _target_revision_node(text, source)
    if node.style not in (None, "'", '"'):
        raise ManifestError(
            f"{source}: targetRevision is a block scalar ({node.style}), which promo does not rewrite",
            "write it on one line, e.g. targetRevision: 1.2.0",
        )
    quote = node.style or ""
    start, end = node.start_mark.index, node.end_mark.index
    edited = f"{text[:start]}{quote}{version}{quote}{text[end:]}"
    if read_target_revision(edited, source) != version:  # a splice that does not read back is a bug, never written
        raise ManifestError(f"{source}: the edited targetRevision does not read back as {version}", "report this file")
    return edited


def diff_manifest(path: str, before: str, after: str) -> str:
    """A unified diff for approval screens (line endings normalised for display); empty when nothing changes."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=f"a/{path}", tofile=f"b/{path}", lineterm=""
    )
    return "".join(f"{line}\n" for line in lines)


def _target_revision_node(text: str, source: str) -> ScalarNode:
    root = _compose(text, source)
    if not isinstance(root, MappingNode):
        raise ManifestError(
            f"{source} is not an Argo CD Application: the document is {_describe(root)}, not a mapping",
            "keep one Application (apiVersion, kind, metadata, spec) per manifest file",
        )
    kind = _get(root, "kind", source)
    if not (isinstance(kind, ScalarNode) and kind.value == "Application"):
        found = kind.value if isinstance(kind, ScalarNode) else _describe(kind)
        raise ManifestError(
            f"{source} is not an Argo CD Application (kind: {found})", "point promo at the app's Application manifest"
        )
    spec = _get(root, "spec", source)
    if not isinstance(spec, MappingNode):
        raise ManifestError(f"{source} has no spec mapping", "add spec.source (or spec.sources) with the chart")
    chart_source = _chart_source(spec, source)
    revision = _get(chart_source, "targetRevision", source)
    if not isinstance(revision, ScalarNode) or revision.tag.endswith(":null"):
        raise ManifestError(
            f"{source}: the chart source has no targetRevision",
            'add targetRevision: <chart version> next to its chart: key (targetRevision: "" while nothing is deployed)',
        )
    return revision


def _chart_source(spec: MappingNode, source: str) -> MappingNode:
    single, several = _get(spec, "source", source), _get(spec, "sources", source)
    if single is not None and several is not None:
        raise ManifestError(
            f"{source} has both spec.source and spec.sources", "keep one: spec.sources for a multi-source Application"
        )
    if several is not None:
        if not isinstance(several, SequenceNode):
            raise ManifestError(f"{source}: spec.sources is not a list", "make spec.sources a list of sources")
        candidates = [item for item in several.value if isinstance(item, MappingNode)]
    else:
        candidates = [single] if isinstance(single, MappingNode) else []
    charts = [item for item in candidates if _get(item, "chart", source) is not None]
    if not charts:
        raise ManifestError(
            f"{source} has no chart source (a spec.source or spec.sources entry with a chart: key)",
            "deploy the app from its Helm chart: repoURL, chart and targetRevision",
        )
    if len(charts) > 1:
        names = ", ".join(repr(_get(item, "chart", source).value) for item in charts)
        raise ManifestError(
            f"{source} has several chart sources ({names}), so its chart version is ambiguous",
            "keep one chart source per Application; move other charts to their own Applications",
        )
    return charts[0]


def _compose(text: str, source: str) -> Node | None:
    try:
        return YAML(typ="rt").compose(text)
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ManifestError(f"{source} is not valid YAML: {problem}{where}", "fix the YAML syntax") from None


def _get(mapping: MappingNode, key: str, source: str) -> Node | None:
    """The value under ``key``; a repeated key is refused, since Argo CD and promo could read different ones."""
    values = [value for k, value in mapping.value if isinstance(k, ScalarNode) and k.value == key]
    if len(values) > 1:
        raise ManifestError(
            f"{source} repeats the key {key!r} (line {values[1].start_mark.line + 1})", "remove the duplicate key"
        )
    return values[0] if values else None


def _describe(node: Node | None) -> str:
    if node is None:
        return "empty"
    return {MappingNode: "a mapping", SequenceNode: "a list"}.get(type(node), "a scalar")
