"""Helm chart packages, built the way ``helm package`` builds them but byte-for-byte reproducible.

A release moves one chart package unchanged from dev to prod, so the package must be a pure function of the
chart directory and the two versions: the same inputs give the same bytes and therefore the same digest.
Helm itself stamps every entry with the current time; here entries are sorted (Chart.yaml first, as Helm writes
it), carry mtime 0, uid/gid 0, no owner names and mode 0644, and the gzip header has mtime 0 and no file name.
Like Helm, only file entries are written, ``.helmignore`` is honoured, dotfiles directly in ``templates/`` are
left out and a UTF-8 byte order mark is stripped from every file.

Chart.yaml is not re-serialised (Helm re-marshals it and loses comments): the ``version`` and ``appVersion``
scalars are replaced in place at the positions the ruamel.yaml composer reports, so every other byte stays.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import semver
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode

from promo.errors import ChartError, InputError

CHART_FILE = "Chart.yaml"
IGNORE_FILE = ".helmignore"
# Helm's ignore.AddDefaults: dotfiles directly inside templates/ are never packaged.
DEFAULT_IGNORE_RULES = ("templates/.?*",)
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ChartPackage:
    """A packaged chart: the ``.tgz`` bytes plus the names a registry and a manifest need."""

    name: str
    version: str
    app_version: str
    data: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tgz"


@dataclass(frozen=True)
class ChartContents:
    """What a chart package holds; ``files`` is keyed by the path inside the archive (``<name>/Chart.yaml``)."""

    name: str
    version: str
    app_version: str
    metadata: dict[str, Any] = field(repr=False)
    files: dict[str, bytes] = field(repr=False)


def read_chart_metadata(chart_dir: Path) -> dict[str, Any]:
    """Parse ``chart_dir/Chart.yaml``, refusing what Helm would refuse: no mapping, no name, no version."""
    return parse_chart_yaml(_read_chart_yaml(chart_dir), str(chart_dir / CHART_FILE))


def package_chart(chart_dir: Path, *, version: str, app_version: str) -> ChartPackage:
    """Package ``chart_dir`` with ``version`` and ``appVersion`` set in its Chart.yaml, reproducibly."""
    _require_semver(version)
    raw = _read_chart_yaml(chart_dir)
    name = parse_chart_yaml(raw, str(chart_dir / CHART_FILE))["name"]
    files = {f"{name}/{rel}": data for rel, data in _chart_files(chart_dir)}
    chart_yaml = f"{name}/{CHART_FILE}"
    files[chart_yaml] = _set_scalars(raw, {"version": version, "appVersion": app_version}, str(chart_dir / CHART_FILE))
    return ChartPackage(name, version, app_version, _tar_gz(files, chart_yaml))


def read_chart(data: bytes) -> ChartContents:
    """Open a chart package; a ChartError names what makes it not a chart."""
    files = _untar(data)
    chart_yaml = _chart_yaml_path(files)
    metadata = parse_chart_yaml(files[chart_yaml], chart_yaml)
    return ChartContents(
        name=metadata["name"],
        version=metadata["version"],
        app_version=str(metadata.get("appVersion") or ""),
        metadata=metadata,
        files=files,
    )


def retag_chart(data: bytes, version: str) -> ChartPackage:
    """Repackage a chart with a new ``version``; every other byte of every file stays as it was."""
    _require_semver(version)
    contents = read_chart(data)
    files = dict(contents.files)
    chart_yaml = _chart_yaml_path(files)
    files[chart_yaml] = _set_scalars(files[chart_yaml], {"version": version}, chart_yaml)
    return ChartPackage(contents.name, version, contents.app_version, _tar_gz(files, chart_yaml))


def set_chart_yaml_version(chart_yaml: bytes, version: str, where: str = CHART_FILE) -> bytes:
    """Chart.yaml with only its ``version`` value changed (a bump on a branch); every other byte stays."""
    _require_semver(version)
    return _set_scalars(chart_yaml, {"version": version}, where)


def retag_differences(original: bytes, retagged: bytes, version: str) -> list[str]:
    """What differs between two packages besides Chart.yaml's version being ``version``: [] for a faithful retag."""
    before, after = read_chart(original).files, read_chart(retagged).files
    problems = [f"{path} added" for path in sorted(after.keys() - before.keys())]
    problems += [f"{path} removed" for path in sorted(before.keys() - after.keys())]
    chart_yaml = _chart_yaml_path(before)
    for path in sorted(before.keys() & after.keys()):
        expected = set_chart_yaml_version(before[path], version, path) if path == chart_yaml else before[path]
        if after[path] != expected:
            problems.append(f"{path} differs")
    return problems


def _require_semver(version: str) -> None:
    if not semver.Version.is_valid(version):
        raise InputError(
            f"chart version {version!r} is not SemVer 2.0",
            "use MAJOR.MINOR.PATCH with an optional -prerelease and +build, e.g. 1.4.2 or 1.4.2-rc.1",
        )


def _read_chart_yaml(chart_dir: Path) -> bytes:
    path = chart_dir / CHART_FILE
    try:
        return path.read_bytes().removeprefix(_BOM)
    except OSError as exc:
        raise ChartError(
            f"cannot read {path}: {exc.strerror or exc}",
            "point at a Helm chart directory, the one that holds Chart.yaml",
        ) from None


def _chart_yaml_path(files: dict[str, bytes]) -> str:
    """``<top>/Chart.yaml`` of an unpacked archive whose files all sit in one top directory, as Helm requires."""
    tops = {path.split("/", 1)[0] for path in files}
    if len(tops) != 1 or any("/" not in path for path in files):
        raise ChartError(
            "the archive is not a Helm chart: its files are not all inside one top directory",
            "package the chart with `promo` or `helm package`",
        )
    chart_yaml = f"{tops.pop()}/{CHART_FILE}"
    if chart_yaml not in files:
        raise ChartError(
            f"the archive is not a Helm chart: it has no {chart_yaml}",
            "package the chart with `promo` or `helm package`",
        )
    return chart_yaml


def parse_chart_yaml(data: bytes, where: str) -> dict[str, Any]:
    """Chart.yaml's metadata from its bytes (a file, a package member or a blob read from git)."""
    try:
        metadata = YAML(typ="safe", pure=True).load(data.decode("utf-8"))
    except (UnicodeDecodeError, YAMLError) as exc:
        problem = " ".join(str(exc).split())
        raise ChartError(f"{where} is not valid YAML: {problem}", f"fix the syntax of {where}") from None
    if not isinstance(metadata, dict):
        raise ChartError(f"{where} is not a YAML mapping", "write Chart.yaml as `key: value` lines")
    for key in ("name", "version"):
        value = metadata.get(key)
        if not isinstance(value, str) or not value:
            raise ChartError(
                f"{where} has no {key}" if value is None else f"{where} has a {key} that is not a string",
                f"set `{key}:` to a string in {where} (quote it if it looks like a number)",
            )
    if "/" in metadata["name"] or metadata["name"] in (".", ".."):
        raise ChartError(f"{where} has an invalid name {metadata['name']!r}", "use a chart name without '/'")
    return metadata


def _chart_files(chart_dir: Path) -> list[tuple[str, bytes]]:
    """The (relative path, bytes) pairs Helm's directory loader keeps, in walk order."""
    rules = _IgnoreRules.read(chart_dir / IGNORE_FILE)
    found: list[tuple[str, bytes]] = []

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = prefix + entry.name
            is_dir = entry.is_dir()  # follows symlinks, as Helm's sympath.Walk does
            if rules.ignores(rel, is_dir=is_dir):
                continue
            if is_dir:
                walk(Path(entry.path), rel + "/")
            elif rel == CHART_FILE:
                continue  # read and edited on its own
            elif entry.is_file():
                found.append((rel, Path(entry.path).read_bytes().removeprefix(_BOM)))
            else:
                raise ChartError(
                    f"cannot package {entry.path}: it is not a regular file",
                    f"remove it from the chart or list it in {IGNORE_FILE}",
                )

    walk(chart_dir, "")
    return found


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    must_dir: bool
    whole_path: bool


class _IgnoreRules:
    """Helm's ``pkg/ignore``: Go ``filepath.Match`` globs, ``dir/`` rules, ``/rooted`` rules.

    A rule without ``/`` matches the base name, one with ``/`` matches the whole relative path. Helm rejects
    ``**``; its ``!`` negation does not mean what gitignore means (it ignores every path the rule does not
    match), so both are refused rather than silently packaging the wrong files.
    """

    def __init__(self, rules: list[_Rule]) -> None:
        self._rules = rules

    @classmethod
    def read(cls, path: Path) -> _IgnoreRules:
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        return cls([rule for line in [*lines, *DEFAULT_IGNORE_RULES] if (rule := _parse_rule(line, path))])

    def ignores(self, rel: str, *, is_dir: bool) -> bool:
        for rule in self._rules:
            if rule.must_dir and not is_dir:
                continue
            if rule.regex.fullmatch(rel if rule.whole_path else rel.rsplit("/", 1)[-1]):
                return True
        return False


def _parse_rule(line: str, where: Path) -> _Rule | None:
    raw = line.strip()
    if not raw or raw.startswith("#"):
        return None
    if "**" in raw or raw.startswith("!"):
        raise ChartError(
            f"{where} has the rule {raw!r}: Helm does not support '**' or '!' negation",
            "list the paths to leave out with plain globs (*, ?, [a-z]) and dir/ rules",
        )
    rule = raw.removesuffix("/")
    whole_path = "/" in rule
    try:
        regex = _go_glob(rule.removeprefix("/"))
    except ValueError as exc:
        raise ChartError(f"{where} has the malformed rule {raw!r}: {exc}", "fix or remove that line") from None
    return _Rule(regex, must_dir=raw.endswith("/"), whole_path=whole_path)


def _go_glob(pattern: str) -> re.Pattern[str]:
    """Translate Go's ``filepath.Match`` syntax: ``*`` and ``?`` stop at ``/``, classes negate with ``^``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            if i == len(pattern):
                raise ValueError("trailing backslash")
            out.append(re.escape(pattern[i]))
            i += 1
        elif char == "[":
            negate = pattern[i : i + 1] == "^"
            start = i + negate
            end = pattern.find("]", start)
            if end <= start:
                raise ValueError("unterminated or empty character class")
            body = pattern[start:end].replace("[", r"\[")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(char))
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise ValueError(str(exc)) from None


def _set_scalars(chart_yaml: bytes, values: dict[str, str], where: str) -> bytes:
    """Replace (or add) top-level string scalars in Chart.yaml without touching any other byte."""
    text = chart_yaml.decode("utf-8")
    root = YAML(typ="rt").compose(text)
    if not isinstance(root, MappingNode):
        raise ChartError(f"{where} is not a YAML mapping", "write Chart.yaml as `key: value` lines")
    nodes = {key.value: (key, value) for key, value in root.value if isinstance(key, ScalarNode)}
    edits: list[tuple[int, int, str]] = []
    for name, new in values.items():
        if name in nodes:
            value = nodes[name][1]
            if not isinstance(value, ScalarNode) or value.start_mark.line != value.end_mark.line:
                raise ChartError(f"{where} has a {name} that is not a one-line string", f"write `{name}: X.Y.Z`")
            edits.append((value.start_mark.index, value.end_mark.index, _scalar(new, value.style)))
        else:
            key, value = nodes["version"]
            if root.flow_style:
                raise ChartError(f"{where} is a flow mapping ({{...}})", "write Chart.yaml as `key: value` lines")
            line_end = text.find("\n", value.end_mark.index)
            at = len(text) if line_end < 0 else line_end + 1
            prefix = "" if text.endswith("\n") or line_end >= 0 else "\n"
            edits.append((at, at, f"{prefix}{' ' * key.start_mark.column}{name}: {_scalar(new, None)}\n"))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text.encode("utf-8")


def _scalar(value: str, style: str | None) -> str:
    """Render ``value`` as a YAML string scalar, keeping the original quoting style where it is safe."""
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style is None and _loads_as(f"k: {value}", {"k": value}):
        return value
    return json.dumps(value)


def _loads_as(text: str, expected: object) -> bool:
    try:
        return YAML(typ="safe", pure=True).load(text) == expected
    except YAMLError:
        return False


def _tar_gz(files: dict[str, bytes], chart_yaml: str) -> bytes:
    """A gzipped tar of file entries only, Chart.yaml first, with every varying header field fixed."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(files, key=lambda p: (p != chart_yaml, p)):
                info = tarfile.TarInfo(path)
                info.size = len(files[path])
                info.mode = 0o644
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(files[path]))
    return buffer.getvalue()


def _untar(data: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                if member.isdir():
                    continue
                path = member.name.removeprefix("./")
                if not member.isfile() or path.startswith("/") or ".." in path.split("/"):
                    raise ChartError(
                        f"the archive is not a Helm chart: {member.name!r} is a link, a device or outside the chart",
                        "package the chart with `promo` or `helm package`",
                    )
                extracted = tar.extractfile(member)
                files[path] = extracted.read() if extracted else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ChartError(
            f"the archive is not a gzipped tar file ({exc})", "package the chart with `promo` or `helm package`"
        ) from None
    if not files:
        raise ChartError("the archive holds no files", "package the chart with `promo` or `helm package`")
    return files
