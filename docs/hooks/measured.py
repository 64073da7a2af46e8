"""MkDocs hook: the measured tables, rendered at build time from the JSON each benchmark writes.

A page asks for a table with a fenced block of language `measured` holding a small YAML spec; the
numbers come from `benchmarks/results/<source>.json`, never from the page, so a benchmark run again
changes the site without anyone copying a figure. Two forms:

    ```measured
    source: decode_techniques          # benchmarks/results/decode_techniques.json
    rows: techniques                   # a dotted path to a dict (a row per item) or a list (a row per element),
                                       # or a mapping "row label: dotted path" (a row per entry; the path
                                       # may name another file: "loop_orchestration_before:summary")
    labels: {no_cache: no cache}       # optional: how a row's key is shown (default: the key itself)
    columns:                           # header (a template on the file): a str.format template on the row
      technique: "{_label}"
      speed-up: "{speedup:.2f} [{speedup_ci_low:.2f}, {speedup_ci_high:.2f}]"
    ```

    ```measured
    source: throughput
    figures:                           # a vertical table, "measure | value": label -> template, both on the file
      warm speed-up, 2 workers: "{workers[warm][speedup][2][geometric_mean]:.2f}×"
    ```

    ```measured
    source: sandbox_overhead
    all: true                          # every figure in the file, path and value, in a folded block
    ```

Templates see the row's fields, `_key`, `_label`, `_row` (the row itself, for a key with a dot:
`{_row[n_tau_0.9]}`) and `_root` (the whole file); nested fields read as
`{a[b][c]}`; a null value prints as "–", and so does a missing field marked optional (`{a[b]?}`, else a
missing field fails the build); `{xs!m}` is the median of a list and `{xs!n}` its length; `$key` is
replaced by the row's key before formatting, so a row can reach across the file
(`{_root[other][$key][value]}`). It owns the rendering only; what each benchmark
measures and writes is the benchmark's. It also lays each benchmark's plots (`benchmarks/results/*.png`)
into the site at `benchmarks/results/`, and fails the build (a warning, which `--strict` makes an error)
when a spec names a missing file or field, or when a results file is rendered by no page.
"""
from __future__ import annotations

import json
import logging
import re
import statistics
import string
from pathlib import Path
from typing import Any

import yaml
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.measured")

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
SITE_DIR = "benchmarks/results"          # where the plots land in the site, beside the benchmark pages

_BLOCK = re.compile(r"^```measured[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_rendered: set[str] = set()


class _Node(dict):
    """A JSON object for str.format: `{x[1]}` finds the key "1" (format passes digits as an int)."""

    def __getitem__(self, key: Any) -> Any:
        if not dict.__contains__(self, key) and dict.__contains__(self, str(key)):
            key = str(key)
        return _wrap(dict.__getitem__(self, key))


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return _Node(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return "–"
        return super().format_field(value, format_spec)

    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        return kwargs[str(key)] if isinstance(key, int) else kwargs[key]

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        if field_name.endswith("?"):                 # optional: a field this row lacks prints as "–"
            try:
                return super().get_field(field_name[:-1], args, kwargs)
            except (KeyError, IndexError):
                return None, field_name
        return super().get_field(field_name, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion == "m":                        # the median of a list of numbers
            return None if value is None else statistics.median(value)
        if conversion == "n":                        # how many
            return None if value is None else len(value)
        return super().convert_field(value, conversion)


_FORMAT = _Formatter()


class SpecError(ValueError):
    """A spec that names a file, path or field the results do not have."""


def load(source: str) -> Any:
    path = RESULTS / f"{source.removesuffix('.json')}.json"
    if not path.exists():
        raise SpecError(f"no results file {path.relative_to(ROOT)}")
    _rendered.add(path.name)
    return _wrap(json.loads(path.read_text()))


def at(data: Any, dotted: str) -> Any:
    node = data
    for part in dotted.split(".") if dotted else []:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError):
            raise SpecError(f"no field {dotted!r} (stopped at {part!r})") from None
    return node


def _row_at(data: Any, path: str) -> Any:
    """A row's object: a dotted path in this file, or `other_source:dotted.path` in another results file."""
    if ":" in path:
        source, _, path = path.partition(":")
        data = load(source)
    return at(data, path)


def _cell(template: str, row: _Node) -> str:
    if "_key" in row:                                # `$key` in a template: this row's key, e.g. in a path
        template = str(template).replace("$key", str(row["_key"]))
    try:
        text = _FORMAT.vformat(str(template), (), row)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SpecError(f"column {template!r}: {type(exc).__name__}: {exc}") from None
    return text


def _rows(spec: dict[str, Any], data: Any) -> list[_Node]:
    labels = spec.get("labels") or {}
    rows = spec["rows"]
    if isinstance(rows, dict):                       # label -> dotted path
        items = [(label, _row_at(data, path)) for label, path in rows.items()]
    else:
        found = at(data, rows)
        if isinstance(found, dict):
            keys = spec.get("keys") or list(found)
            items = [(str(k), at(found, str(k))) for k in keys]
        elif isinstance(found, list):
            items = [(str(i), v) for i, v in enumerate(found)]
        else:
            raise SpecError(f"rows {rows!r} is neither an object nor a list")
    out = []
    for key, value in items:
        row = _Node(value) if isinstance(value, dict) else _Node(_value=value)
        row.update(_key=key, _label=labels.get(key, key), _root=data, _row=_Node(row))
        out.append(row)
    return out


def table(spec: dict[str, Any]) -> str:
    data = load(spec["source"])
    if spec.get("all"):
        return everything(spec["source"], data)
    if "figures" in spec:                            # a vertical table: label -> template on the whole file
        header = spec.get("header", ["measure", "value"])
        rows = [_Node(_label=_cell(label, data), _value=_cell(t, data)) for label, t in spec["figures"].items()]
        return _render({header[0]: "{_label}", header[1]: "{_value}"}, rows, spec["source"], data)
    columns: dict[str, str] = spec["columns"]
    return _render(columns, _rows(spec, data) if "rows" in spec else [_Node(data, _key="", _label="", _root=data)],
                   spec["source"], data)


def _render(columns: dict[str, str], rows: list[_Node], source: str, data: Any) -> str:
    """A markdown table; headers are templates too, on the whole file (`_root` is the file as well)."""
    headers = [_cell(h, _Node(data, _root=data)) for h in columns]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        cells = (_cell(t, row).replace("|", "\\|").replace("\n", " ") for t in columns.values())
        lines.append("| " + " | ".join(cells) + " |")
    note = f"*Generated from `benchmarks/results/{source.removesuffix('.json')}.json`.*"
    return "\n".join(lines) + "\n\n" + note


def _flat(node: Any, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flat(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list) and node and all(isinstance(v, (dict, list)) for v in node):
        for i, value in enumerate(node):
            yield from _flat(value, f"{prefix}[{i}]")
    else:
        yield prefix, node


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        shown = ", ".join(_show(v) for v in value[:10])
        return f"[{shown}{', …' if len(value) > 10 else ''}] ({len(value)} values)" if len(value) > 10 else f"[{shown}]"
    return "–" if value is None else str(value)


def everything(source: str, data: Any) -> str:
    name = source.removesuffix(".json")
    lines = [f'??? info "Every figure in benchmarks/results/{name}.json"', "",
             "    | field | value |", "    | --- | --- |"]
    for path, value in _flat(data):
        lines.append(f"    | `{path}` | {_show(value).replace('|', '/')} |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    def render(match: re.Match) -> str:
        try:
            return table(yaml.safe_load(match.group(1)))
        except SpecError as exc:
            log.warning("%s: measured block: %s", page.file.src_uri, exc)
            return f"!!! failure \"measured table not rendered\"\n    {exc}\n"
    return _BLOCK.sub(render, markdown)


def on_files(files: Files, config) -> Files:
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"{SITE_DIR}/{png.name}", abs_src_path=str(png)))
    return files


def on_pre_build(config) -> None:
    _rendered.clear()


def on_post_build(config) -> None:
    for path in sorted(RESULTS.glob("*.json")):
        if path.name not in _rendered and not path.stem.endswith("_quick"):    # --quick outputs: git-ignored smoke tests
            log.warning("benchmarks/results/%s is shown on no page: add a measured block for it", path.name)
