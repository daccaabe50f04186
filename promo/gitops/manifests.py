"""Argo CD Application manifests: find and change the chart version (``targetRevision``), as pure functions on text.

A GitOps diff is read by people approving a promotion, so an edit changes exactly one scalar and nothing else:
ruamel.yaml only *locates* the value (its exact character span in the text), and the new value is spliced into the
original text in the quote style it already had. Comments, key order, indentation, CRLF line endings, document markers
and the ``status:`` block are kept byte for byte; a re-parse checks that the result reads back as the new version.

The chart version lives in the source that has a ``chart:`` key: ``spec.source`` of a single-source Application, or
the one chart entry of ``spec.sources``; or in a native OCI source (Argo CD 3.1+: ``repoURL: oci://...`` without
``chart:``), whose ``targetRevision`` is the chart's tag, which promo writes as the chart version too. Git sources
(``path:``/``ref:``) carry git revisions and are never edited.

YAML that promo cannot edit safely is refused by name, never taken for broken YAML: a file of several documents, a
key that only a merge key (``<<:``) supplies, and a targetRevision shared through an anchor and alias, where changing
one value would change every use. An anchor nobody refers to is harmless and is kept as it is.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from promo.errors import InputError, ManifestError

DEFAULT_ROOT = "registry/environments"

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A chart version or git revision: safe unquoted and inside any quote style, so splicing never needs escaping.
_REVISION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$")
# What a scalar node's text may start with before its value: an anchor (&ver) and a tag (!!str), kept by an edit.
_NODE_PROPERTIES = re.compile(r"(?:[&!]\S*\s+)*")


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


@functools.lru_cache(maxsize=256)
def read_target_revision(text: str, source: str = "<manifest>") -> str:
    """The chart version an Application deploys: the text of its chart source's ``targetRevision``.

    An empty string (``targetRevision: ""``) is the convention for "nothing deployed yet" and is returned as is.
    Remembered per text: ruamel's pure-Python composer is most of a read's cost, and one command reads the same
    manifest more than once (`promo status` reads each in the history's newest commit and in the snapshot).
    """
    simple = _simple_target_revision(text)
    return simple if simple is not None else _locate(text, source).revision.value


class _NotSimple(Exception):
    """The text uses YAML beyond the plain subset ``_simple_target_revision`` reads: the full parser decides."""


# One line of the plain subset of YAML: ``key: value``, ``key:`` opening a block, or ``- value``; values plain (no
# spaces, no trailing colon) or quoted without escapes, with an optional trailing comment. Anchors, aliases, tags,
# merge keys, flow collections, block scalars, document markers and multi-line values fall outside.
_SIMPLE_LINE = re.compile(
    r"(?P<indent> *)(?:(?P<dash>- )|(?P<key>[A-Za-z0-9_][A-Za-z0-9_./-]*):(?= |$))"
    r" *(?P<value>\"[^\"\\]*\"|'[^']*'|[A-Za-z0-9_./][^\s#]*(?<!:))?(?: +#.*)?"
)
_NULLS = frozenset({"null", "Null", "NULL"})
# Generated manifests repeat most of their lines, so each distinct line is matched once and remembered: its shape
# (indent, is a list item, key, has a value; _BLANK for a comment or blank line, False outside the subset) and value.
_Shape = tuple[int, bool, "str | None", bool]
_BLANK: _Shape = (-1, False, None, False)
_LINE_SHAPES: dict[str, "_Shape | bool"] = {}
_LINE_VALUES: dict[str, "str | None"] = {}
_LINES_REMEMBERED = 200_000


def _simple_target_revision(text: str) -> str | None:
    """The chart version of a manifest written in the plain subset of YAML generated Applications use (block mappings
    and lists of scalars, one value per line), at a fraction of ruamel's cost; None for anything else, and for
    anything the full parser would refuse or report (duplicate keys, no chart source, null), which the full parser
    then reads: the answer is always the full parser's."""
    if "\t" in text or "\r" in text:
        return None
    lines = text.split("\n")
    shape = tuple(map(_LINE_SHAPES.get, lines))  # the per-line work happens in C for every line seen before
    if None in shape:
        for line in set(lines).difference(_LINE_SHAPES):
            _learn_line(line)
        shape = tuple(map(_LINE_SHAPES.get, lines))
    where = _chart_revision_line(shape)
    if where is None:
        return None
    kind, revision = _LINE_VALUES.get(lines[where[0]]), _LINE_VALUES.get(lines[where[1]])  # None: just forgotten
    if kind is None or revision is None or _unquoted(kind) != "Application" or revision in _NULLS:
        return None
    return _unquoted(revision)


def _learn_line(line: str) -> None:
    """Match ``line`` against the subset and remember its shape and value."""
    if len(_LINE_SHAPES) >= _LINES_REMEMBERED:
        _LINE_SHAPES.clear()
        _LINE_VALUES.clear()
    stripped = line.lstrip(" ")
    shape: _Shape | bool
    value = None
    if not stripped or stripped[0] == "#":
        shape = _BLANK
    else:
        match = _SIMPLE_LINE.fullmatch(line)
        if match is None:
            shape = False
        else:
            value = match["value"]
            shape = (len(match["indent"]), match["dash"] is not None, match["key"], value is not None)
    _LINE_SHAPES[line], _LINE_VALUES[line] = shape, value


@functools.lru_cache(maxsize=64)
def _chart_revision_line(shape: tuple[_Shape | bool, ...]) -> tuple[int, int] | None:
    """Which lines hold ``kind`` and the chart source's ``targetRevision``, when lines of this shape are a
    well-formed document with one ``spec.source`` holding ``chart`` and both values. Manifests generated from one
    template share their shape, so each shape is checked once."""
    if False in shape:
        return None
    numbers = [number for number, line in enumerate(shape) if line is not _BLANK]
    lines = [shape[number] for number in numbers]
    try:
        root, end = _simple_block(lines, 0, 0) if lines else ({}, 0)
    except _NotSimple:
        return None
    kind = root.get("kind") if isinstance(root, dict) and end == len(lines) else None
    spec = root.get("spec") if isinstance(kind, int) else None
    source = spec.get("source") if isinstance(spec, dict) and "sources" not in spec else None
    if not isinstance(source, dict) or "chart" not in source or not isinstance(source.get("targetRevision"), int):
        return None
    return numbers[kind], numbers[source["targetRevision"]]


def _simple_block(lines: Sequence[tuple[int, bool, str | None, bool]], start: int, indent: int) -> tuple[object, int]:
    """The mapping (dict) or list starting at ``lines[start]``, whose lines sit at ``indent``, and the index after it;
    a scalar is the index of its line. Refuses (``_NotSimple``) what YAML reads otherwise or rejects: a repeated key,
    a null value, a deeper line after a value (a multi-line scalar), a dedent to no open level."""
    if lines[start][1]:
        return _simple_list(lines, start, indent)
    mapping: dict[str, object] = {}
    index = start
    while index < len(lines):
        at, dash, key, value = lines[index]
        if at < indent:
            break
        if at > indent or dash or key is None or key in mapping:
            raise _NotSimple
        index += 1
        if value:
            if index < len(lines) and lines[index][0] > indent:
                raise _NotSimple
            mapping[key] = index - 1
        elif index < len(lines) and (lines[index][0] > indent or (lines[index][0] == indent and lines[index][1])):
            mapping[key], index = _simple_block(lines, index, lines[index][0])
        else:
            raise _NotSimple
    return mapping, index


def _simple_list(lines: Sequence[tuple[int, bool, str | None, bool]], start: int, indent: int) -> tuple[list, int]:
    items, index = [], start
    while index < len(lines) and lines[index][0] == indent and lines[index][1]:
        index += 1
        if not lines[index - 1][3] or (index < len(lines) and lines[index][0] > indent):
            raise _NotSimple
        items.append(index - 1)
    return items, index


def _unquoted(value: str) -> str:
    return value[1:-1] if value[:1] in ("'", '"') else value


def set_target_revision(text: str, version: str, source: str = "<manifest>") -> str:
    """``text`` with the chart source's ``targetRevision`` set to ``version``; only the value's bytes change."""
    if not isinstance(version, str) or not _REVISION.fullmatch(version):
        raise InputError(
            f"version {version!r} cannot be written to {source}",
            "pass a chart version such as 1.2.0 or 1.2.0-rc.abc1234 (letters, digits, '.', '-', '+', '_')",
        )
    location = _locate(text, source)
    _check_not_shared(location, source)
    node = location.revision
    if node.style not in (None, "'", '"'):
        raise ManifestError(
            f"{source}: targetRevision is a block scalar ({node.style}), which promo does not rewrite",
            "write it on one line, e.g. targetRevision: 1.2.0",
        )
    quote = node.style or ""
    start, end = node.start_mark.index, node.end_mark.index
    start = _NODE_PROPERTIES.match(text, start, end).end()
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


@dataclass(frozen=True)
class _Location:
    """Where the chart version is: its value node, the key naming it, and the nodes the document reaches it through
    (spec, spec.sources when there, the chart source, the value), with the document itself to count their uses."""

    document: Node
    key: ScalarNode
    path: tuple[Node, ...]

    @property
    def revision(self) -> ScalarNode:
        return self.path[-1]


def _locate(text: str, source: str) -> _Location:
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
    sources, chart_source = _chart_source(spec, source)
    revision = _get(chart_source, "targetRevision", source)
    if not isinstance(revision, ScalarNode) or revision.tag.endswith(":null"):
        raise ManifestError(
            f"{source}: the chart source has no targetRevision",
            'add targetRevision: <chart version> next to its chart: key (targetRevision: "" while nothing is deployed)',
        )
    key = next(k for k, value in chart_source.value if value is revision and k.value == "targetRevision")
    return _Location(root, key, (spec, *sources, chart_source, revision))


def _check_not_shared(location: _Location, source: str) -> None:
    """Refuse an edit that would reach beyond this targetRevision: a node on its path that an alias also uses."""
    uses = _uses(location.document)
    revision = location.revision
    if revision.start_mark.index < location.key.end_mark.index:  # the value was written before its key: an alias
        raise ManifestError(
            f"{source}: targetRevision is the alias *{revision.anchor} of the value at line "
            f"{revision.start_mark.line + 1}, which promo cannot change without changing every use of it",
            "write the chart version on targetRevision itself, e.g. targetRevision: 1.2.0",
        )
    if uses[id(revision)] > 1:
        raise ManifestError(
            f"{source}: targetRevision's value is anchored (&{revision.anchor}) and used again through "
            f"*{revision.anchor}, so changing it would change those uses too",
            f"write the value where *{revision.anchor} is used, or give that key its own anchor",
        )
    for node in location.path[:-1]:
        if uses[id(node)] > 1:
            raise ManifestError(
                f"{source}: the chart version sits in a mapping shared through a YAML anchor and alias "
                f"(&{node.anchor}, line {node.start_mark.line + 1}), so changing it would change every use",
                "write spec.source (or the chart entry of spec.sources) out in full, without anchors and aliases",
            )


def _uses(document: Node) -> Counter[int]:
    """How many times each node (by id) is reached from the document: more than once means an alias shares it."""
    uses: Counter[int] = Counter()
    pending = [document]
    while pending:
        node = pending.pop()
        uses[id(node)] += 1
        if uses[id(node)] > 1:
            continue  # its children were counted on the first visit
        if isinstance(node, MappingNode):
            pending.extend(part for pair in node.value for part in pair)
        elif isinstance(node, SequenceNode):
            pending.extend(node.value)
    return uses


def _chart_source(spec: MappingNode, source: str) -> tuple[tuple[Node, ...], MappingNode]:
    """The chart source, and the ``spec.sources`` list it is in (none for ``spec.source``)."""
    single, several = _get(spec, "source", source), _get(spec, "sources", source)
    if single is not None and several is not None:
        raise ManifestError(
            f"{source} has both spec.source and spec.sources", "keep one: spec.sources for a multi-source Application"
        )
    if several is not None:
        if not isinstance(several, SequenceNode):
            raise ManifestError(f"{source}: spec.sources is not a list", "make spec.sources a list of sources")
        candidates = [item for item in several.value if isinstance(item, MappingNode)]
        container: tuple[Node, ...] = (several,)
    else:
        candidates = [single] if isinstance(single, MappingNode) else []
        container = ()
    charts = [item for item in candidates if _get(item, "chart", source) is not None or _is_native_oci(item, source)]
    if not charts:
        raise ManifestError(
            f"{source} has no chart source (a spec.source or spec.sources entry with a chart: key, or a native OCI "
            "one with repoURL: oci://...)",
            "deploy the app from its Helm chart: repoURL, chart and targetRevision",
        )
    if len(charts) > 1:
        named = [_get(item, "chart", source) or _get(item, "repoURL", source) for item in charts]
        names = ", ".join(repr(_scalar_value(name)) for name in named)
        raise ManifestError(
            f"{source} has several chart sources ({names}), so its chart version is ambiguous",
            "keep one chart source per Application; move other charts to their own Applications",
        )
    return container, charts[0]


def _is_native_oci(item: MappingNode, source: str) -> bool:
    """Argo CD 3.1+'s OCI source: ``repoURL: oci://...`` and no ``chart:`` (a Helm chart in an OCI registry has one)."""
    url = _get(item, "repoURL", source)
    return isinstance(url, ScalarNode) and url.value.startswith("oci://") and _get(item, "chart", source) is None


def _scalar_value(node: Node | None) -> str:
    return node.value if isinstance(node, ScalarNode) else _describe(node)


def _compose(text: str, source: str) -> Node | None:
    """The one document of ``text`` (None when empty); several documents are refused, a stray ``---`` is not."""
    try:
        documents = [document for document in YAML(typ="rt").compose_all(text) if not _is_empty(document)]
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ManifestError(f"{source} is not valid YAML: {problem}{where}", "fix the YAML syntax") from None
    if len(documents) > 1:
        raise ManifestError(
            f"{source} holds {len(documents)} YAML documents (separated by ---), so which one promo edits is ambiguous",
            "keep one Application per file; move the other documents to files of their own",
        )
    return documents[0] if documents else None


def _is_empty(document: Node) -> bool:
    return isinstance(document, ScalarNode) and document.tag.endswith(":null") and not document.value


def _get(mapping: MappingNode, key: str, source: str) -> Node | None:
    """The value under ``key``; a repeated key is refused, since Argo CD and promo could read different ones, and so
    is a key only a merge key (``<<: *defaults``) supplies, since editing it would edit the merged mapping."""
    values = [value for k, value in mapping.value if isinstance(k, ScalarNode) and k.value == key]
    if len(values) > 1:
        raise ManifestError(
            f"{source} repeats the key {key!r} (line {values[1].start_mark.line + 1})", "remove the duplicate key"
        )
    if not values and _merges(mapping, key):
        raise ManifestError(
            f"{source}: {key} comes from a YAML merge key (<<:) in the mapping at line {mapping.start_mark.line + 1}, "
            "which promo does not read or edit",
            f"write {key}: in that mapping itself (keys written there take precedence over merged ones)",
        )
    return values[0] if values else None


def _merges(mapping: MappingNode, key: str) -> bool:
    """Whether a merge key of ``mapping`` (``<<: *a`` or ``<<: [*a, *b]``) supplies ``key``, directly or nested."""
    pending, seen = [mapping], set()
    while pending:
        node = pending.pop()
        if id(node) in seen:  # an alias may lead back to a mapping already looked at
            continue
        seen.add(id(node))
        for name, value in node.value:
            if isinstance(name, ScalarNode) and _is_merge(name):
                merged = value.value if isinstance(value, SequenceNode) else [value]
                if any(isinstance(other, MappingNode) and _has(other, key) for other in merged):
                    return True
                pending.extend(other for other in merged if isinstance(other, MappingNode))
    return False


def _has(mapping: MappingNode, key: str) -> bool:
    return any(isinstance(name, ScalarNode) and name.value == key for name, _ in mapping.value)


def _is_merge(key: ScalarNode) -> bool:
    return key.tag.endswith(":merge")


def _describe(node: Node | None) -> str:
    if node is None:
        return "empty"
    return {MappingNode: "a mapping", SequenceNode: "a list"}.get(type(node), "a scalar")
